"""`fbad data index`: a dataset's records with fbad's split, as a table and a CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from fbad.data.readers import read_dataset
from fbad.data.splits import split_records


def index_frame(dataset_cfg: Any, val_fraction: float = 0.2, seed: int = 0) -> tuple[pd.DataFrame, Any]:
    result = read_dataset(dataset_cfg)
    splits = split_records(result.records, val_fraction=val_fraction, seed=seed)
    fbad_split = {id(r): name for name in ("train", "val", "test", "excluded") for r in getattr(splits, name)}
    rows = [{**r.to_row(), "fbad_split": fbad_split.get(id(r), "")} for r in result.records]
    return pd.DataFrame(rows), result.skipped


def index_dataset(dataset_cfg: Any, out: Path, val_fraction: float = 0.2, seed: int = 0,
                  echo: bool = True) -> pd.DataFrame:
    """Write index.csv (and skipped.csv when anything was skipped) under `out`; print the counts."""
    df, skipped = index_frame(dataset_cfg, val_fraction, seed)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "index.csv", index=False)
    if len(skipped):
        skipped.write(out)
    if echo:
        print_counts(df, title=f"{dataset_cfg.name}: {len(df)} images, {len(skipped)} skipped")
        print(f"index written to {out / 'index.csv'}" + (f"; skipped files listed in {out / 'skipped.csv'}"
                                                         if len(skipped) else ""))
    return df


def print_counts(df: pd.DataFrame, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    cols = ["plane", "label", "split", "fbad_split"]
    counts = df.groupby(cols).size().reset_index(name="images") if len(df) else pd.DataFrame(columns=cols)
    for c in [*cols, "images"]:
        table.add_column(c, justify="right" if c == "images" else "left")
    for row in counts.itertuples(index=False):
        table.add_row(*(str(v) for v in row))
    if len(df):
        table.add_section()
        table.add_row("total", "", "", "", str(len(df)))
    Console().print(table)
