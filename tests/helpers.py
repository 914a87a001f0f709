"""Test-only pieces: `fbad(...)` runs the console command as a user does; callbacks used through the real
config (`+callbacks.x={_target_: helpers....}`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytorch_lightning as pl


class InterruptAfter(pl.Callback):
    """Press Ctrl-C early in the epoch after `epochs` finished ones, the way a user stops a run; with `plane`,
    only in that plane's training; with `env`, only while that environment variable is set (a resumed run
    carries the same config, callbacks included, and must run through)."""

    def __init__(self, epochs: int, plane: str | None = None, env: str | None = None):
        self.epochs, self.plane, self.env = epochs, plane, env

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx) -> None:
        if self.env is not None and not os.environ.get(self.env):
            return
        if self.plane is not None and pl_module.hparams.get("plane") != self.plane:
            return
        if trainer.current_epoch >= self.epochs:
            raise KeyboardInterrupt


def fbad(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "FBAD_OUTPUTS": str(cwd / "outputs"), "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-m", "fbad.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"fbad {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc
