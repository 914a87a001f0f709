"""A metrics dict as a console table."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def print_metrics(metrics: Mapping[str, float], title: str) -> None:
    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        table.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
    console = Console()
    console.print(title, style="bold", soft_wrap=True)
    console.print(table)


def print_table(df: Any, title: str) -> None:
    """A small DataFrame as a console table (numbers right-aligned)."""
    from pandas.api.types import is_numeric_dtype

    table = Table()
    for col in df.columns:
        table.add_column(str(col), justify="right" if is_numeric_dtype(df[col]) else "left")
    for row in df.itertuples(index=False):
        table.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row))
    console = Console(width=None if Console().is_terminal else 200)  # a log file has room: never cut columns
    console.print(title, style="bold", soft_wrap=True)
    console.print(table)


def save_and_log(cfg: Any, command: str, run_name: str, params: Mapping[str, Any], summary: Mapping[str, float],
                 per_image: Any, skipped: Any, extra_metrics: Mapping[str, float] | None = None) -> None:
    """The eval commands' shared ending: files under cfg.out, one MLflow run with metrics and files."""
    import json

    import mlflow

    from fbad.tracking.mlflow_utils import command_run, setup_experiment

    out = Path(cfg.out)
    per_image.to_csv(out / "per_image.csv", index=False)
    (out / "summary.json").write_text(json.dumps(dict(summary), indent=2))
    if len(skipped):
        skipped.write(out)
    setup_experiment(cfg.paths.mlflow_uri, cfg.logger.experiment, cfg.paths.mlflow_artifacts)
    with command_run(command, out, params, run_name, skipped=len(skipped)):
        mlflow.log_metrics({k: v for k, v in summary.items() if v == v})  # NaN: undefined, left out
        mlflow.log_metrics(dict(extra_metrics or {}))
        for path in sorted(out.iterdir()):
            if path.suffix in (".csv", ".json", ".png") and path.name != "skipped.csv":
                mlflow.log_artifact(str(path))
