"""Test-only pieces used through the real config (`+callbacks.x={_target_: helpers....}`)."""

from __future__ import annotations

import pytorch_lightning as pl


class InterruptAfter(pl.Callback):
    """Press Ctrl-C after `epochs` finished epochs, the way a user stops a run."""

    def __init__(self, epochs: int):
        self.epochs = epochs

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch + 1 >= self.epochs:
            raise KeyboardInterrupt
