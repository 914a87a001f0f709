"""`SegModule`: the Lightning wrapper of the head U-Net (Dice + BCE loss, Dice on the validation images)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from fbad.segmentation.learned.net import UNet


def soft_dice(prob: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Per-image soft Dice (N,) of probabilities against (soft) targets."""
    inter = (prob * target).flatten(1).sum(1)
    total = prob.flatten(1).sum(1) + target.flatten(1).sum(1)
    return (2 * inter + eps) / (total + eps)


def hard_dice(prob: torch.Tensor, target: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Per-image Dice (N,) of the thresholded prediction against the thresholded target."""
    p, t = prob > threshold, target > 0.5
    inter = (p & t).flatten(1).sum(1).float()
    total = (p.flatten(1).sum(1) + t.flatten(1).sum(1)).float()
    return torch.where(total > 0, 2 * inter / total.clamp_min(1), torch.ones_like(total))


class SegModule(pl.LightningModule):
    """U-Net head segmentation: loss = bce_weight * BCE + dice_weight * (1 - soft Dice); `val_dice` at 0.5."""

    def __init__(self, widths: Sequence[int] = (16, 32, 64, 128), lr: float = 3e-3, weight_decay: float = 1e-4,
                 bce_weight: float = 1.0, dice_weight: float = 1.0, schedule: str = "onecycle"):
        super().__init__()
        self.save_hyperparameters()
        self.net = UNet(widths)
        self.lr, self.weight_decay, self.schedule = float(lr), float(weight_decay), schedule
        self.bce_weight, self.dice_weight = float(bce_weight), float(dice_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        bce = F.binary_cross_entropy_with_logits(logits, target)
        dice = 1.0 - soft_dice(torch.sigmoid(logits), target).mean()
        return self.bce_weight * bce + self.dice_weight * dice

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.loss(self(batch["image"]), batch["mask"])
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(batch["image"]))
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits = self(batch["image"])
        n = len(batch["image"])
        self.log("val_loss", self.loss(logits, batch["mask"]), on_step=False, on_epoch=True, batch_size=n)
        dice = hard_dice(torch.sigmoid(logits), batch["mask"]).mean()
        self.log("val_dice", dice, on_step=False, on_epoch=True, prog_bar=True, batch_size=n)

    def configure_optimizers(self) -> Any:
        opt = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        if self.schedule == "onecycle":
            total = max(1, int(self.trainer.estimated_stepping_batches))
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=total, pct_start=0.15)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
        if self.schedule == "constant":
            return opt
        raise ValueError(f"unknown schedule {self.schedule!r}; expected onecycle or constant")
