"""One trial: the space's choices -> `fbad train`'s config (composed, as the command would) -> its summary metric."""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from fbad.config import compose
from fbad.sweep import SweepError, tracking
from fbad.sweep.pruning import EPOCH_METRIC, OptunaReporter
from fbad.sweep.space import Param, SpaceError, suggest
from fbad.training.anomaly import run_training

log = logging.getLogger(__name__)


class ObjectiveMissing(RuntimeError):
    """The training summary lacks the objective metric (e.g. validation without labelled anomalies)."""


@dataclass
class Objective:
    """Callable for `study.optimize`: composes, trains, tracks and returns the objective value(s)."""

    space: list[Param]
    base_overrides: list[str]
    metrics: list[str]
    report: str | None          # per-epoch metric for the pruner, None = no pruning
    run_dir: Path
    experiment_id: str
    parent_run_id: str
    study_name: str

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:

        run_id = tracking.create_trial_run(self.experiment_id, self.parent_run_id, self.study_name, trial)
        try:
            choices, overrides = self._suggest(trial)
            tracking.log_choices(run_id, choices)
            all_overrides = [*self.base_overrides, *overrides]
            trial.set_user_attr("overrides", all_overrides)
            log.info("trial %d: %s", trial.number, " ".join(overrides) or "(no overrides)")
            cfg = compose("train", all_overrides)
            callbacks = [OptunaReporter(trial, self.report)] if self.report else []
            summary = run_training(cfg, self.run_dir / f"trial_{trial.number:04d}", callbacks=callbacks,
                                   run_id=run_id)
            values = self._values(summary)
        except optuna.TrialPruned as exc:
            tracking.end_trial_run(run_id, "PRUNED", str(exc))
            raise
        except (KeyboardInterrupt, SystemExit) as exc:
            # Lightning turns Ctrl-C into SystemExit(1) after its graceful shutdown; Optuna fails a trial on
            # KeyboardInterrupt only (SystemExit would leave it RUNNING until another worker's heartbeat check)
            trial.set_user_attr("error", "interrupted")
            tracking.end_trial_run(run_id, "FAIL", "interrupted (Ctrl-C or SIGTERM)")
            raise KeyboardInterrupt from exc
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}".strip()
            trial.set_user_attr("error", message[:2000])
            tracking.end_trial_run(run_id, "FAIL", message + "\n" + traceback.format_exc(limit=-3))
            raise
        tracking.end_trial_run(run_id, "COMPLETE")
        return values[0] if len(values) == 1 else tuple(values)

    def _suggest(self, trial: optuna.Trial) -> tuple[dict[str, Any], list[str]]:
        try:
            return suggest(trial, self.space)
        except ValueError as exc:  # e.g. a categorical whose choices differ from the study's earlier trials
            raise SpaceError(f"{exc} The space differs from the one study {self.study_name!r} was run with: "
                             f"keep it, or start a new study (study=…)") from exc

    def _values(self, summary: dict[str, float]) -> list[float]:
        missing = [m for m in self.metrics if m not in summary]
        if missing:
            hint = " (validation has no labelled anomalies? use objective.metric=best_val_mse_mean " \
                   "objective.direction=minimize)" if "val_auroc_mean" in missing else ""
            raise ObjectiveMissing(f"objective {missing} not in the training summary {sorted(summary)}{hint}")
        return [float(summary[m]) for m in self.metrics]


def epoch_metric(metrics: list[str], report: str | None) -> str | None:
    """What the pruner sees each epoch: explicit, or the per-epoch twin of a single objective (auto)."""
    if report in (None, "none", False):
        return None
    if report != "auto":
        if report not in EPOCH_METRIC.values():
            raise SweepError(f"objective.report={report!r}: expected auto, none, {', '.join(EPOCH_METRIC.values())}")
        return str(report)
    if len(metrics) != 1:
        return None  # Optuna prunes single-objective studies only
    return EPOCH_METRIC.get(metrics[0])


def check_metrics(metrics: list[str], directions: list[str]) -> None:
    """Refuse to optimise on the test split, and directions that are not maximize/minimize."""
    if len(metrics) != len(directions):
        raise SweepError(f"objective: {len(metrics)} metric(s) but {len(directions)} direction(s)")
    for m in metrics:
        if m.startswith("test_") or "/test_" in m:
            raise SweepError(f"objective metric {m!r} is measured on the test split: optimise on validation "
                             f"(val_auroc_mean, val_f1_mean, best_val_mse_mean) and keep test for the end")
    bad = [d for d in directions if d not in ("maximize", "minimize")]
    if bad:
        raise SweepError(f"objective direction {bad}: expected maximize or minimize")


THRESHOLD_DEPENDENT = ("f1", "sensitivity", "specificity", "precision", "accuracy")


def check_threshold_objective(metrics: list[str], space: list[Any], train_overrides: list[str]) -> None:
    """Refuse a threshold-dependent validation objective when trials may use `threshold=max_f1`: that strategy
    fits the threshold to the validation split's labelled anomalies, so the objective would score the fit on the
    images it was fitted to and max_f1 would win by construction."""
    if not any(k in m for m in metrics for k in THRESHOLD_DEPENDENT):
        return
    in_space = any(p.name == "threshold" and "max_f1" in str(p.spec) for p in space)
    in_train = any(o.replace(" ", "").lstrip("+") == "threshold=max_f1" for o in train_overrides)
    if in_space or in_train:
        raise SweepError(f"objective {metrics} depends on the threshold, and threshold=max_f1 fits that threshold "
                         "on the same validation images: drop max_f1 from the space (or from `train`), or optimise "
                         "a threshold-free metric (val_auroc_mean, val_auprc_mean)")


def as_list(value: Any) -> list[str]:
    from omegaconf import ListConfig

    return [str(v) for v in value] if isinstance(value, list | tuple | ListConfig) else [str(value)]
