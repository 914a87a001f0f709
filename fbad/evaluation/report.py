"""A metrics dict as a console table."""

from __future__ import annotations

from collections.abc import Mapping

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
