"""Lightning wrapper of `PlaneNet`: cross-entropy (optionally class-weighted), accuracy per epoch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from fbad.planes.net import PlaneNet


class PlaneModule(pl.LightningModule):
    """Logs `train_loss`, `train_acc`, `val_loss`, `val_acc` once per epoch.

    `class_weights` (one per class) counter class imbalance: FETAL_PLANES_DB has three times more non-brain
    images than brain ones, which would otherwise push every doubtful frame to `unsupported`.
    """

    class_weights: torch.Tensor | None  # a buffer (None: unweighted)

    def __init__(self, n_classes: int, widths: Sequence[int] = (8, 16, 32, 64, 128), convs_per_block: int = 2,
                 dropout: float = 0.2, lr: float = 3e-3, weight_decay: float = 1e-4, schedule: str = "onecycle",
                 label_smoothing: float = 0.0, class_weights: Sequence[float] | None = None):
        super().__init__()
        self.save_hyperparameters()
        if schedule not in ("onecycle", "constant"):
            raise ValueError(f"unknown schedule {schedule!r}; expected onecycle or constant")
        self.net = PlaneNet(n_classes, widths, convs_per_block, dropout)
        self.lr, self.weight_decay, self.schedule = float(lr), float(weight_decay), schedule
        self.label_smoothing = float(label_smoothing)
        weights = None if class_weights is None else torch.tensor([float(w) for w in class_weights])
        if weights is not None and len(weights) != n_classes:
            raise ValueError(f"class_weights has {len(weights)} entries for {n_classes} classes")
        self.register_buffer("class_weights", weights, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        logits = self(batch["image"])
        y = batch["label"]
        loss = F.cross_entropy(logits, y, weight=self.class_weights, label_smoothing=self.label_smoothing)
        acc = (logits.argmax(1) == y).float().mean()
        n = len(y)
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, prog_bar=stage == "val", batch_size=n)
        self.log(f"{stage}_acc", acc, on_step=False, on_epoch=True, prog_bar=True, batch_size=n)
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def configure_optimizers(self) -> Any:
        opt = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        if self.schedule == "constant":
            return opt
        total = max(1, int(self.trainer.estimated_stepping_batches))
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=total, pct_start=0.2)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
