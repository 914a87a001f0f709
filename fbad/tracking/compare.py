"""Rank the training runs of one MLflow experiment (a sweep's trials, a multirun) by a metric.

Only training parent runs are ranked (one per `fbad train` call or sweep trial; not the per-plane
runs and not the sweep's own run). Key parameters are the sweep's choices (`trial.*` params) where
they exist, else the config keys that differ between the runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import mlflow
import pandas as pd

from fbad.errors import UserError

CANDIDATE_PARAMS = ("dataset.name", "enhancement.name", "segmentation.name", "align.name", "preprocess.image_size",
                    "model.name", "model.widths", "model.latent_dim", "model.bottleneck", "model.loss", "model.lr",
                    "data.batch_size", "threshold.name", "trainer.max_epochs", "seed")
EXTRA_METRICS = ("val_auroc_mean", "best_val_mse_mean", "test_auroc_mean", "test_auprc_mean", "test_f1_mean",
                 "test_sensitivity_mean", "test_specificity_mean")


class CompareError(UserError):
    """Nothing to compare: unknown experiment, no finished runs, or a metric that no run has."""


def default_mode(metric: str) -> str:
    """Errors and losses are better low; everything else (AUROC, F1, ...) high."""
    return "min" if any(w in metric for w in ("mse", "loss", "error")) else "max"


def compare_runs(experiment: str, metric: str = "val_auroc_mean", mode: str | None = None, top: int | None = 10,
                 params: Sequence[str] | None = None) -> tuple[pd.DataFrame, dict[str, int]]:
    """The best `top` finished runs (all with top=None) and how many runs of each status the experiment holds."""
    exp = mlflow.MlflowClient().get_experiment_by_name(experiment)
    if exp is None:
        names = sorted(e.name for e in mlflow.MlflowClient().search_experiments())
        raise CompareError(f"no MLflow experiment {experiment!r} in {mlflow.get_tracking_uri()}; there are {names}")
    runs = mlflow.search_runs([exp.experiment_id], output_format="pandas")
    if runs.empty:
        raise CompareError(f"experiment {experiment!r} has no runs")
    runs = runs[(_col(runs, "tags.fbad.command") == "train") & _col(runs, "tags.plane").isna()]
    statuses = {str(k): int(v) for k, v in runs["status"].value_counts().items()}
    done = runs[runs["status"] == "FINISHED"]
    col = f"metrics.{metric}"
    if col not in done or done[col].isna().all():
        have = sorted(c.removeprefix("metrics.") for c in done.columns
                      if c.startswith("metrics.") and "/" not in c and done[c].notna().any())
        raise CompareError(f"no finished run of {experiment!r} has metric {metric!r}; metrics: {have}")
    mode = mode or default_mode(metric)
    if mode not in ("max", "min"):
        raise CompareError(f"mode={mode!r}: expected max or min")
    done = done.sort_values(col, ascending=mode == "min", na_position="last")
    if top:
        done = done.head(int(top))
    keys = list(params) if params else _key_params(runs)
    table = pd.DataFrame({
        "rank": range(1, len(done) + 1),
        "run": done.get("tags.mlflow.runName", pd.Series(index=done.index, dtype=object)).values,
        "run_id": done["run_id"].values,
    })
    if "tags.fbad.trial" in done and done["tags.fbad.trial"].notna().any():
        table.insert(2, "trial", done["tags.fbad.trial"].values)
    for k in keys:
        table[k.removeprefix("trial.")] = _col(done, f"params.{k}").values
    for m in dict.fromkeys([metric, *EXTRA_METRICS]):
        if f"metrics.{m}" in done:
            table[m] = done[f"metrics.{m}"].values
    return table, statuses


def _col(df: pd.DataFrame, name: str) -> pd.Series:
    return df[name] if name in df else pd.Series([None] * len(df), index=df.index, dtype=object)


def _key_params(runs: pd.DataFrame) -> list[str]:
    trial = sorted(c.removeprefix("params.") for c in runs.columns if c.startswith("params.trial."))
    if trial:
        return trial
    varying = [k for k in CANDIDATE_PARAMS if f"params.{k}" in runs and runs[f"params.{k}"].nunique() > 1]
    return varying or [k for k in ("model.name", "enhancement.name") if f"params.{k}" in runs]


def format_value(v: object) -> str:
    """Four significant digits for numbers (also numbers that MLflow keeps as param strings)."""
    if isinstance(v, str):
        try:
            f = float(v)
        except ValueError:
            return v
        return v if f.is_integer() and "." not in v else f"{f:.4g}"
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:.4g}"
    return "-" if v is None else str(v)
