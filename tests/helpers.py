"""Test-only pieces used through the real config (`+callbacks.x={_target_: helpers....}`)."""

from __future__ import annotations

import pytorch_lightning as pl


class InterruptAfter(pl.Callback):
    """Press Ctrl-C early in the epoch after `epochs` finished ones, the way a user stops a run."""

    def __init__(self, epochs: int):
        self.epochs = epochs

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx) -> None:
        if trainer.current_epoch >= self.epochs:
            raise KeyboardInterrupt
