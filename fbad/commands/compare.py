"""`fbad compare experiment=<name> [top=N] [metric=…] [mode=max|min]`: the best runs as a table and a CSV."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from fbad.config import CONF_DIR, alias_overrides
from fbad.errors import report_user_errors


def main() -> None:
    # `experiment` alone names the preset group in Hydra; the command takes it as a plain name
    sys.argv = alias_overrides(sys.argv, {"experiment": "experiment_name"})
    _app()


@hydra.main(config_path=CONF_DIR, config_name="compare", version_base="1.3")
@report_user_errors
def _app(cfg: DictConfig) -> None:
    import mlflow
    from rich.console import Console
    from rich.table import Table

    from fbad.tracking.compare import compare_runs, format_value

    mlflow.set_tracking_uri(cfg.paths.mlflow_uri)
    table, statuses = compare_runs(cfg.experiment_name, cfg.metric, cfg.mode, cfg.top,
                                   list(cfg.params) if cfg.params else None)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    csv = out / "compare.csv"
    table.to_csv(csv, index=False)

    counts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(statuses.items()))
    view = Table(title=f"{cfg.experiment_name}: best {len(table)} by {cfg.metric} ({counts})")
    for c in table.columns:
        view.add_column(c, justify="left" if c in ("run", "run_id") else "right", no_wrap=True)
    for row in table.itertuples(index=False):
        view.add_row(*[format_value(v)[:8] if c == "run_id" else format_value(v)
                       for c, v in zip(table.columns, row, strict=True)])
    console = Console()
    if not console.is_terminal:  # a log or a pipe: no terminal width to respect
        console = Console(width=1000)
    console.print(view)
    console.print(f"written to {csv}")


if __name__ == "__main__":
    main()
