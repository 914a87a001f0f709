"""The console summary at the end of `fbad train`."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.table import Table


def _fmt(v: float | None, digits: int = 4) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}g}"


def print_summary(results: dict[str, Any], prepared: Any, parent_run_id: str, cfg: Any) -> None:
    table = Table(title="fbad train: per-plane summary")
    # best val: the monitored validation figure (MSE of a reconstruction model, the loss of nsa, the mean
    # normal score of a closed-form map model)
    for col in ("plane", "train", "val", "test", "best val", "threshold", "AUROC", "F1", "flagged"):
        table.add_column(col, justify="left" if col == "plane" else "right")
    for name, r in results.items():
        c = r.counts
        table.add_row(name, str(c["train"]), str(c["val"]), str(c["test"]), _fmt(r.best_val_mse),
                      _fmt(r.threshold.value), _fmt(r.test.get("auroc"), 3), _fmt(r.test.get("f1"), 3),
                      f"{r.flagged}/{c['test']}" if c["test"] else "-")
    console = Console()
    console.print(table)
    if len(prepared.skipped):
        console.print(f"[yellow]{len(prepared.skipped)} images skipped (listed in skipped.csv)[/yellow]")
    uri = cfg.paths.mlflow_uri
    console.print(f"MLflow run {parent_run_id} (experiment '{cfg.logger.experiment}')")
    console.print(f"open the UI: mlflow ui --backend-store-uri {uri} --host 127.0.0.1")
