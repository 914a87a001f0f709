"""The console summary at the end of `fbad train`."""

from __future__ import annotations

import math
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table


def _fmt(v: float | None, digits: int = 4) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}g}"


def print_summary(results: dict[str, Any], prepared: Any, parent_run_id: str, cfg: Any) -> None:
    """Planes as columns, figures as rows: stays whole at 80 columns (a log file, a narrow terminal) for the
    three planes, where a row per plane needed about 95."""
    table = Table(title="fbad train: per-plane summary", box=box.SIMPLE_HEAD)
    table.add_column("", justify="left")
    for name in results:
        table.add_column(name, justify="right")
    rows: dict[str, list[str]] = {k: [] for k in ("train images", "val images", "test images", "best val",
                                                  "threshold", "test AUROC", "test F1", "flagged")}
    for r in results.values():
        c = r.counts
        # best val: the monitored validation figure (MSE of a reconstruction model, the loss of nsa, the mean
        # normal score of a closed-form map model)
        for key, value in zip(rows, (str(c["train"]), str(c["val"]), str(c["test"]), _fmt(r.best_val_mse),
                                     _fmt(r.threshold.value), _fmt(r.test.get("auroc"), 3), _fmt(r.test.get("f1"), 3),
                                     f"{r.flagged}/{c['test']}" if c["test"] else "-"), strict=True):
            rows[key].append(value)
    for key, values in rows.items():
        table.add_row(key, *values)
    console = Console()
    console.print(table)
    if len(prepared.skipped):
        console.print(f"[yellow]{len(prepared.skipped)} images skipped (listed in skipped.csv)[/yellow]")
    uri = cfg.paths.mlflow_uri
    console.print(f"MLflow run {parent_run_id} (experiment '{cfg.logger.experiment}')")
    console.print(f"open the UI: mlflow ui --backend-store-uri {uri} --host 127.0.0.1", soft_wrap=True)
    link = run_link(parent_run_id)
    if link:
        console.print(f"then the run: {link}", soft_wrap=True)


def run_link(run_id: str, base: str = "http://127.0.0.1:5000") -> str | None:
    """The run's page in the MLflow UI (`#/experiments/<id>/runs/<id>`): lands on the run, not on the
    experiment's traces view. None when the run cannot be read from the current tracking store."""
    import mlflow

    try:
        experiment_id = mlflow.get_run(run_id).info.experiment_id
    except Exception:  # noqa: BLE001 - a missing link must never fail a finished training
        return None
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}"
