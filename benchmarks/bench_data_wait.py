"""Share of training step time spent waiting for data, through the real DataModule and Trainer.

    python benchmarks/bench_data_wait.py [--epochs 3] [--plane trans_thalamic] [overrides ...]

Data wait = time from the end of one batch to the start of the next (the loader fetching, collating and
augmenting); step = the rest. Printed for conv_ae and seed_ae at the default input size.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import pytorch_lightning as pl
from omegaconf import OmegaConf

from fbad.anomaly.datamodule import PlaneDataModule, prepare_data
from fbad.anomaly.module import AutoencoderModule
from fbad.config import compose
from fbad.data.records import Plane


class WaitTimer(pl.Callback):
    def __init__(self) -> None:
        self.wait = self.step = 0.0
        self.images = 0
        self._end: float | None = None
        self._start = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._end = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()
        self.wait += self._start - self._end

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._end = time.perf_counter()
        self.step += self._end - self._start
        self.images += len(batch["image"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--plane", default="trans_thalamic")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    os.environ.setdefault("FBAD_OUTPUTS", tempfile.mkdtemp())
    cfg = compose("train", list(args.overrides))
    prepared = prepare_data(cfg.dataset, cfg.preprocess, cfg.paths.cache_dir, progress=False)
    print(f"input {cfg.preprocess.image_size}px, batch {cfg.data.batch_size}, num_workers {cfg.data.num_workers}, "
          f"augmentation {len(cfg.data.augment)} steps, {args.epochs} epochs, plane {args.plane}")
    print(f"{'model':<10} {'train img/s':>12} {'data wait %':>12}")
    for model in ("conv_ae", "seed_ae"):
        mcfg = compose("train", [*args.overrides, f"model={model}"]).model
        module = AutoencoderModule(OmegaConf.to_container(mcfg, resolve=True))
        dm = PlaneDataModule(prepared, Plane.parse(args.plane), batch_size=cfg.data.batch_size,
                             num_workers=cfg.data.num_workers, augment=cfg.data.augment)
        timer = WaitTimer()
        trainer = pl.Trainer(max_epochs=args.epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                             callbacks=[timer])
        trainer.fit(module, datamodule=dm)
        total = timer.wait + timer.step
        print(f"{model:<10} {timer.images / total:>12.1f} {100 * timer.wait / total:>11.1f}%")


if __name__ == "__main__":
    main()
