"""Per-epoch training curves to MLflow: the one Lightning piece of tracking, apart so that commands that log
runs but train nothing (predict, publish, eval-*) do not import Lightning."""

from __future__ import annotations

import mlflow
import pytorch_lightning as pl
from mlflow.tracking import MlflowClient


class EpochMetricsLogger(pl.Callback):
    """Per-epoch metrics to the plane's child run (plain names) and to the parent (`<plane>/name`)."""

    def __init__(self, child_run_id: str, parent_run_id: str | None, plane: str,
                 names: tuple[str, ...] = ("train_mse", "val_mse", "train_loss", "val_loss")):
        self.child, self.parent, self.plane, self.names = child_run_id, parent_run_id, plane, names
        self.history: dict[str, list[float]] = {n: [] for n in names}

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        from mlflow.entities import Metric

        step = trainer.current_epoch
        now = mlflow.utils.time.get_current_time_millis()
        metrics = []
        for name in self.names:
            value = trainer.callback_metrics.get(name)
            if value is None:
                continue
            v = float(value)
            self.history[name].append(v)
            metrics.append(Metric(name, v, now, step))
        client = MlflowClient()
        client.log_batch(self.child, metrics=metrics)
        if self.parent:
            client.log_batch(self.parent, metrics=[Metric(f"{self.plane}/{m.key}", m.value, now, step)
                                                   for m in metrics])
