"""The one LightningModule: trains any reconstruction model of the `model` group and carries its threshold.

The threshold and its direction are buffers, so they travel inside the checkpoint (and any export).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch

from fbad.anomaly.scoring import ScoreSpec, anomaly_map, score_images
from fbad.models import build_model, split_model_config
from fbad.models.losses import masked_mean, reconstruction_loss


class AutoencoderModule(pl.LightningModule):
    """Reconstruction training on normal images; `val_mse` is measured on normal validation images only."""

    threshold: torch.Tensor  # buffers
    threshold_below: torch.Tensor

    def __init__(self, model: Mapping[str, Any], score: Mapping[str, Any] | None = None, plane: str = "all"):
        super().__init__()
        self.save_hyperparameters()
        _, _, train = split_model_config(model)
        self.net = build_model(model)
        self.loss_name = train.get("loss", "mse")
        self.ssim_weight = float(train.get("ssim_weight", 0.5))
        self.lr = float(train.get("lr") or 1e-3)
        self.weight_decay = float(train.get("weight_decay") or 0.0)
        self.spec = ScoreSpec.from_config(score)
        self.register_buffer("threshold", torch.tensor(math.nan))
        self.register_buffer("threshold_below", torch.tensor(self.spec.direction == "below"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        x, mask = batch["image"], batch["mask"]
        recon = self(x)
        loss = reconstruction_loss(self.loss_name, recon, x, mask, ssim_weight=self.ssim_weight)
        with torch.no_grad():
            mse = masked_mean((recon - x) ** 2, mask)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(x))
        self.log("train_mse", mse, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(x))
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        normal = batch["label"] != 1  # normal or unlabelled: the images the model is meant to reconstruct
        if not normal.any():
            return
        x, mask = batch["image"][normal], batch["mask"][normal]
        mse = masked_mean((self(x) - x) ** 2, mask)
        self.log("val_mse", mse, on_step=False, on_epoch=True, prog_bar=True, batch_size=int(normal.sum()))

    @torch.no_grad()
    def score_batch(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(image scores, per-pixel anomaly maps masked to the brain, reconstructions)."""
        x, mask = batch["image"].to(self.device), batch["mask"].to(self.device)
        recon = self(x)
        scores = score_images(recon, x, mask, self.spec)
        kind = self.spec.map_kind if self.spec.method == "error" else "sq"
        return scores, anomaly_map(recon, x, kind) * mask, recon

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
