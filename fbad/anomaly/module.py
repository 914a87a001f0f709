"""The one LightningModule: trains any reconstruction model of the `model` group and carries its threshold.

The threshold and its direction are buffers, so they travel inside the checkpoint (and any export).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from fbad.anomaly.scorer import Scoring
from fbad.models import split_model_config
from fbad.models.losses import masked_mean, reconstruction_loss


class AutoencoderModule(Scoring, pl.LightningModule):
    """Reconstruction training on normal images; `val_mse` is measured on normal validation images only.

    It also serves (scores, thresholds, exports) every model of the `model` group, map models included: only
    their training differs (`SyntheticAnomalyModule`; PCA and PatchCore are fitted in closed form)."""

    monitor, train_monitor = "val_mse", "train_mse"  # what checkpoints and early stopping watch

    def __init__(self, model: Mapping[str, Any], score: Mapping[str, Any] | None = None, plane: str = "all"):
        super().__init__()
        self.save_hyperparameters()
        _, _, train = split_model_config(model)
        self._init_scoring(model, score)
        self.loss_name = train.get("loss", "mse")
        self.ssim_weight = float(train.get("ssim_weight", 0.5))
        self.lr = float(train.get("lr") or 1e-3)
        self.weight_decay = float(train.get("weight_decay") or 0.0)

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

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)


class SyntheticAnomalyModule(AutoencoderModule):
    """Trains a map model (`nsa`) on normal frames with synthetic anomalies blended in (`model.synthesis`, see
    `fbad.anomaly.synthetic`): binary cross-entropy plus soft Dice against the blended pieces' masks. The
    validation frames get their own synthetic anomalies, the same ones every epoch, for `val_loss`."""

    monitor, train_monitor = "val_loss", "train_loss"

    def __init__(self, model: Mapping[str, Any], score: Mapping[str, Any] | None = None, plane: str = "all",
                 seed: int = 0):
        super().__init__(model, score, plane)
        _, _, train = split_model_config(model)
        self.synthesis = dict(train.get("synthesis") or {})
        self.seed = int(seed)
        import inspect

        from fbad.anomaly.synthetic import synthesize_batch

        known = set(inspect.signature(synthesize_batch).parameters) - {"images", "masks", "rng"}
        if set(self.synthesis) - known:  # before training, not at its first step
            raise ValueError(f"unknown model.synthesis keys {sorted(set(self.synthesis) - known)}; "
                             f"expected some of {sorted(known)}")
        if not hasattr(self.net, "logits"):
            raise ValueError(f"{type(self.net).__name__} has no logits(): it cannot be trained on synthetic anomalies")

    def _synthesize(self, batch: Mapping[str, Any], *key: int) -> tuple[torch.Tensor, torch.Tensor]:
        from fbad.anomaly.synthetic import synthesize_batch

        x, mask = batch["image"], batch["mask"]
        rng = np.random.default_rng([self.seed, *key])
        images, target = synthesize_batch(x[:, 0].cpu().numpy(), mask[:, 0].cpu().numpy(), rng, **self.synthesis)
        return torch.from_numpy(images)[:, None].to(x), torch.from_numpy(target)[:, None].to(x)

    def _loss(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = cast(Any, self.net).logits(x)  # checked in __init__
        bce = F.binary_cross_entropy_with_logits(logits, target)
        p = torch.sigmoid(logits)
        dice = 1.0 - (2.0 * (p * target).sum() + 1.0) / (p.sum() + target.sum() + 1.0)
        return bce + dice

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        x, target = self._synthesize(batch, self.current_epoch, batch_idx)
        loss = self._loss(x, target)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(x))
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        normal = batch["label"] != 1
        if not normal.any():
            return
        x, target = self._synthesize({k: batch[k][normal] for k in ("image", "mask")}, 1_000_003, batch_idx)
        self.log("val_loss", self._loss(x, target), on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=int(normal.sum()))


# the LightningModule that trains a model, where it is not the reconstruction default
TRAINING_MODULES: dict[str, type[SyntheticAnomalyModule]] = {"nsa": SyntheticAnomalyModule}
