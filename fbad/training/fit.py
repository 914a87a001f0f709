"""The one Lightning fit of fbad: the Trainer every training builds from its config, early stopping, and
`KeepBest` (the best epoch's weights kept in memory) for the trainings that need no checkpoint files."""

from __future__ import annotations

import copy
import logging
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import EarlyStopping

from fbad.errors import UserError


class KeepBest(pl.Callback):
    """The weights of `pl_module.net` at the epoch with the best `monitor` (mode 'min' or 'max')."""

    def __init__(self, monitor: str, mode: str = "min"):
        if mode not in ("min", "max"):
            raise ValueError(f"mode={mode!r}: expected min or max")
        self.monitor, self.mode = monitor, mode
        self.best = float("inf") if mode == "min" else -float("inf")
        self.state: dict[str, torch.Tensor] | None = None
        self.epoch = -1

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        v: torch.Tensor | float | None = trainer.callback_metrics.get(self.monitor)
        if v is None:
            return
        v = float(v)
        if (v < self.best) if self.mode == "min" else (v > self.best):
            self.best, self.epoch = v, trainer.current_epoch
            # nn.Module.__getattr__ is typed Tensor | Module; `net` is the module's network
            self.state = copy.deepcopy(cast(torch.nn.Module, pl_module.net).state_dict())


def early_stopping(cfg: DictConfig, monitor: str, mode: str = "min") -> list[pl.Callback]:
    """`[EarlyStopping]` from `cfg.early_stopping` (patience 0: none)."""
    es = cfg.early_stopping
    if not es.patience:
        return []
    return [EarlyStopping(monitor=monitor, mode=mode, patience=int(es.patience), min_delta=float(es.min_delta))]


progress_log = logging.getLogger("fbad.progress")
# Lightning's console chatter that says nothing about this run: its cloud-logger tip, "GPU available: False",
# "`Trainer.fit` stopped", and a deprecation inside Lightning itself (not fbad's to fix)
_LIGHTNING_LOGGERS = ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero",
                      "lightning_fabric.utilities.rank_zero")
_HARMLESS = (r".*isinstance\(treespec, LeafSpec\).*", r".*does not have many workers.*",
             r".*The number of training batches .* is smaller than the logging interval.*")


def quiet_lightning(verbose: bool) -> None:
    """Lightning's tips, hardware lines and known-harmless warnings off unless `verbose` (the default config
    key `verbose=true` brings them back)."""
    for name in _LIGHTNING_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)
    for pattern in _HARMLESS:
        warnings.filterwarnings("default" if verbose else "ignore", message=pattern)


def on_terminal() -> bool:
    return sys.stderr.isatty()


class EpochLog(pl.Callback):
    """One plain log line per epoch (epoch, the logged metrics, elapsed, ETA): progress that a log file or a
    batch system's output shows, where a redrawn progress bar cannot."""

    def __init__(self, what: str = "training"):
        self.what, self.t0 = what, 0.0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """After the epoch's validation pass (Lightning 2 runs it before this hook): both sides' metrics."""
        done, total = trainer.current_epoch + 1, int(trainer.max_epochs or 0)
        elapsed = time.perf_counter() - self.t0
        metrics = " ".join(f"{k} {float(v):.4g}" for k, v in sorted(trainer.callback_metrics.items())
                           if getattr(v, "numel", lambda: 1)() == 1)
        eta = elapsed / done * (total - done) if total else float("nan")
        progress_log.info("%s epoch %d/%d  %s  elapsed %s, ETA %s", self.what, done, total, metrics,
                          _clock(elapsed), _clock(eta))


def _clock(seconds: float) -> str:
    if seconds != seconds:
        return "?"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m} min {s:02d} s" if m else f"{s} s"


def build_trainer(cfg: DictConfig, callbacks: Sequence[pl.Callback], root_dir: Path, what: str = "training",
                  **kwargs: Any) -> pl.Trainer:
    """A Trainer from `cfg.trainer` (accelerator, devices, precision, max_epochs, strategy, ...), never logging
    through Lightning's loggers (fbad logs to MLflow itself) and without a sanity validation pass. With
    `progress` on, a terminal gets Lightning's bar and anything else (a file, a pipe) one log line per epoch;
    the model summary and Lightning's tips only with `verbose`."""
    verbose = bool(cfg.get("verbose", False))
    quiet_lightning(verbose)
    trainer_kwargs = cast(dict[str, Any], OmegaConf.to_container(cfg.trainer, resolve=True))
    name = trainer_kwargs.pop("name", None)
    if trainer_kwargs.get("accelerator") in ("gpu", "cuda") and not torch.cuda.is_available():
        raise UserError(f"trainer={name or 'gpu'} asks for a CUDA GPU, and torch sees none here "
                        f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); use trainer=cpu")
    bar = bool(cfg.progress) and on_terminal()
    extra = [EpochLog(what)] if bool(cfg.progress) and not bar else []
    options: dict[str, Any] = {"logger": False, "default_root_dir": str(root_dir), "num_sanity_val_steps": 0,
                               "enable_progress_bar": bar, "enable_model_summary": verbose, **kwargs}
    return pl.Trainer(**trainer_kwargs, callbacks=[*callbacks, *extra], **options)


@dataclass
class FitResult:
    epochs: int  # epochs run
    kept_epoch: int  # the epoch whose weights the module holds now
    monitored: float  # its monitored value


def fit_keep(cfg: DictConfig, module: pl.LightningModule, train_ds: torch.utils.data.Dataset,
             val_ds: torch.utils.data.Dataset, run_dir: Path, *, monitor: str, mode: str,
             callbacks: Sequence[pl.Callback] = (), val_batch_size: int | None = None,
             sample_weights: Sequence[float] | None = None, what: str = "training") -> FitResult:
    """Seeded shuffled fit (optionally early-stopped on `monitor`); with `cfg.keep: best` the best epoch's
    weights are put back into `module.net`, with `keep: last` the final ones stay. With `sample_weights`
    each epoch draws len(train_ds) items with replacement in proportion to them (balanced sampling)."""
    if cfg.keep not in ("best", "last"):
        raise ValueError(f"keep={cfg.keep!r}: expected best or last")
    keep = KeepBest(monitor, mode)
    bs, nw = int(cfg.data.batch_size), int(cfg.data.num_workers)
    gen = torch.Generator().manual_seed(int(cfg.seed))
    n = len(train_ds)  # type: ignore[arg-type]
    sampler = None if sample_weights is None else torch.utils.data.WeightedRandomSampler(
        [float(w) for w in sample_weights], num_samples=n, replacement=True, generator=gen)
    train_dl = torch.utils.data.DataLoader(train_ds, batch_size=bs, shuffle=sampler is None, sampler=sampler,
                                           num_workers=nw, generator=gen, drop_last=n > bs,
                                           persistent_workers=nw > 0)
    val_dl = (torch.utils.data.DataLoader(val_ds, batch_size=val_batch_size or bs, shuffle=False)
              if len(val_ds) else None)  # type: ignore[arg-type]
    trainer = build_trainer(cfg, [keep, *callbacks, *early_stopping(cfg, monitor, mode)], run_dir, what=what,
                            enable_checkpointing=False)
    trainer.fit(module, train_dataloaders=train_dl, val_dataloaders=val_dl)
    if cfg.keep == "last" or keep.state is None:
        last = trainer.callback_metrics.get(monitor)
        return FitResult(trainer.current_epoch, trainer.current_epoch - 1,
                         float("nan") if last is None else float(last))
    cast(torch.nn.Module, module.net).load_state_dict(keep.state)
    return FitResult(trainer.current_epoch, keep.epoch, keep.best)
