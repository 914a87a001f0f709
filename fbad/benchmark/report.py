"""The benchmark's table (console, CSV, markdown for the README), per-class AUROCs and ROC curves per suite."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve

from fbad.benchmark.metrics import PairResult
from fbad.evaluation.report import print_table
from fbad.tracking import plots

COLUMNS = ("auroc", "auprc", "sens_at_spec90", "sens_at_spec95", "sensitivity", "specificity", "f1",
           "pixel_auroc", "n_normal", "n_abnormal", "n_failed")
BASELINE = "image_stats"


def table(results: Sequence[PairResult]) -> pd.DataFrame:
    """One row per (suite, method) with the main figures and, per suite, the margin of AUROC over the
    image-statistics baseline of the same run."""
    rows = []
    for r in results:
        rows.append({"suite": r.suite, "method": r.method, **{c: r.figures.get(c, np.nan) for c in COLUMNS},
                     "seconds": round(r.seconds, 1)})
    df = pd.DataFrame(rows)
    for c in ("n_normal", "n_abnormal", "n_failed"):
        if c in df:
            df[c] = df[c].astype("Int64")
    if len(df):
        base = df[df["method"] == BASELINE].set_index("suite")["auroc"]
        df["auroc_vs_image_stats"] = df["auroc"] - df["suite"].map(base)
    return df


def per_class(results: Sequence[PairResult]) -> pd.DataFrame:
    """AUROC of each abnormal class against all normal test frames: suite, class, one column per method."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for r in results:
        for k, v in r.figures.items():
            if k.startswith("auroc/"):
                rows.setdefault((r.suite, k.removeprefix("auroc/")), {})[r.method] = v
    return pd.DataFrame([{"suite": s, "class": c, **m} for (s, c), m in sorted(rows.items())])


def markdown(df: pd.DataFrame) -> str:
    """A GitHub markdown table (numbers to 3 decimals), as the README shows it."""
    cols = list(df.columns)
    fmt = [(f"{v:.3f}" if isinstance(v, float) and np.isfinite(v) else ("" if isinstance(v, float) or v is pd.NA
            else str(v))) for v in df.to_numpy().ravel()]
    cells = np.array(fmt, dtype=object).reshape(len(df), len(cols)) if len(df) else np.zeros((0, len(cols)))
    lines = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines) + "\n"


def roc_figure(results: Sequence[PairResult], suite: str) -> Any:
    """ROC curves of every method on one suite."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    for r in results:
        if r.suite != suite:
            continue
        df = r.scores[~r.scores["failed"] & (r.scores["label"] >= 0)]
        if df["label"].nunique() < 2:
            continue
        fpr, tpr, _ = roc_curve(df["label"], df["score"])
        ax.plot(fpr, tpr, label=f"{r.method} ({r.figures.get('auroc', float('nan')):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC, {suite}")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def write_report(results: Sequence[PairResult], run_dir: Path, cfg: Any) -> list[Path]:
    """benchmark.csv, benchmark.md, per_class.csv and roc_<suite>.png under `run_dir`; prints the table."""
    df, classes = table(results), per_class(results)
    paths = [run_dir / "benchmark.csv", run_dir / "benchmark.md", run_dir / "per_class.csv"]
    df.to_csv(paths[0], index=False)
    text = "## fbad benchmark\n\n" + markdown(df)
    if len(classes):
        text += "\n### AUROC per abnormal class\n\n" + markdown(classes)
    paths[1].write_text(text)
    classes.to_csv(paths[2], index=False)
    for suite in dict.fromkeys(r.suite for r in results):
        fig = roc_figure(results, suite)
        path = run_dir / f"roc_{suite}.png"
        fig.savefig(path, dpi=110)
        plots.close(fig)
        paths.append(path)
    shown = df[["suite", "method", "auroc", "auprc", "sens_at_spec90", "sens_at_spec95", "f1", "pixel_auroc",
                "n_failed", "auroc_vs_image_stats"]] if len(df) else df
    print_table(shown.round(3), title=f"fbad benchmark ({len(results)} runs); full table: {paths[0]}")
    return paths
