"""Per-epoch validation values to Optuna from inside Lightning, so a pruner can stop a poor trial early.

optuna-integration's PyTorchLightningPruningCallback targets the `lightning` namespace; fbad trains with
`pytorch_lightning`, and a trial trains one model per plane, so this reporter is fbad's own: its step
keeps increasing across the planes of a trial (plane k, epoch e -> k * max_epochs + e).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import numpy as np
import optuna
import pytorch_lightning as pl

from fbad.training.anomaly import RunStopped

if TYPE_CHECKING:
    from fbad.anomaly.module import AutoencoderModule

# objective metric of the training summary -> the per-epoch value that tracks it (and shares its direction)
EPOCH_METRIC = {"val_auroc_mean": "val_auroc", "best_val_mse_mean": "val_mse"}


class TrialPrunedStop(RunStopped, optuna.TrialPruned):
    """Optuna sees a pruned trial; fbad's training ends the trial's MLflow runs KILLED, not FAILED."""


class OptunaReporter(pl.Callback):
    """Report `metric` (val_mse from the module's logs, or val_auroc scored here) each epoch; prune on request."""

    def __init__(self, trial: optuna.Trial, metric: str):
        if metric not in ("val_mse", "val_auroc"):
            raise ValueError(f"per-epoch metric {metric!r}: expected val_mse or val_auroc")
        self.trial, self.metric = trial, metric
        self._offset = self._next_offset = 0
        self._scores: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._offset = self._next_offset
        epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else 1000
        self._next_offset += epochs

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._scores, self._labels = [], []

    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                                batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if self.metric == "val_auroc":
            scores, _, _ = cast("AutoencoderModule", pl_module).score_batch(batch)  # what fbad trains
            self._scores.append(scores.float().cpu().numpy())
            self._labels.append(batch["label"].cpu().numpy())

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = self._value(trainer, pl_module)
        if value is None or not np.isfinite(value):
            return
        step = self._offset + trainer.current_epoch
        self.trial.report(value, step)
        if self.trial.should_prune():
            raise TrialPrunedStop(f"pruned at step {step} ({self.metric}={value:.4g})")

    def _value(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> float | None:
        if self.metric == "val_mse":
            v = trainer.callback_metrics.get("val_mse")
            return None if v is None else float(v)
        if not self._scores:
            return None
        from sklearn.metrics import roc_auc_score

        scores, labels = np.concatenate(self._scores), np.concatenate(self._labels)
        scores, labels = scores[labels >= 0], labels[labels >= 0]  # unlabelled images measure nothing
        if labels.size == 0 or labels.min() == labels.max():  # one class (or none): AUROC undefined this epoch
            return None
        below = getattr(getattr(pl_module, "spec", None), "direction", "above") == "below"
        return float(roc_auc_score(labels, -scores if below else scores))
