"""Enhancement against ground truth: the phantom's noise-free image and its skull/brain masks."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from fbad.data.imageio import read_gray
from fbad.data.records import Record
from fbad.engine.parallel import safe_map
from fbad.evaluation.enhancement_metrics import enhancement_metrics
from fbad.preprocess.enhance import build_chain


class EnhanceEval:
    """Picklable per-image job: enhance one phantom image and score it against its clean version."""

    def __init__(self, ops: Sequence[Mapping[str, Any]]):
        self.ops = [dict(o) for o in ops]
        self._chain: Callable[[np.ndarray], np.ndarray] | None = None

    def __getstate__(self) -> dict:
        return {"ops": self.ops, "_chain": None}

    def enhance(self, img: np.ndarray) -> np.ndarray:
        if self._chain is None:
            self._chain = build_chain(self.ops) if self.ops else (lambda x: x)
        return self._chain(img.astype(np.float32) / 255.0)

    def __call__(self, r: Record) -> dict[str, float]:
        if r.clean_path is None:
            raise ValueError(f"{r.path}: no noise-free reference (eval-enhance needs dataset=phantom)")
        img = read_gray(r.path)
        clean = read_gray(r.clean_path).astype(np.float32) / 255.0
        # the phantom reader gives a record with a clean image its masks too
        masks = {"brain": read_gray(cast(Path, r.brain_mask_path)) > 127,
                 "skull": read_gray(cast(Path, r.skull_mask_path)) > 127}
        return enhancement_metrics(self.enhance(img), clean, masks)


def evaluate_enhancement(records: Sequence[Record], ops: Sequence[Mapping[str, Any]], workers: int | None = None,
                         progress: bool = True) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    results = safe_map(EnhanceEval(ops), list(records), workers=workers, progress=progress, desc="enhance")
    rows, skipped = [], []
    for r, (res, reason) in zip(records, results, strict=True):
        if res is None:
            skipped.append((str(r.path), reason))
        else:
            rows.append({"image": r.path.name, "plane": str(r.plane), **res})
    return pd.DataFrame(rows), skipped


def summarise(df: pd.DataFrame) -> dict[str, float]:
    """Means of every metric (infinite PSNR of an unchanged noise-free image is left out of its mean)."""
    out: dict[str, float] = {"n_images": float(len(df))}
    for col in df.columns:
        if col in ("image", "plane"):
            continue
        vals = df[col].replace([np.inf, -np.inf], np.nan)
        if vals.notna().any():
            out[f"{col}_mean"] = float(vals.mean())
    return out


def before_after_grid(records: Sequence[Record], job: EnhanceEval, n: int = 4) -> np.ndarray:
    """Rows: input, enhanced, noise-free reference, for n images across the planes."""
    picks = [records[i] for i in np.linspace(0, len(records) - 1, min(n, len(records))).astype(int)]
    cols = []
    for r in picks:
        img = read_gray(r.path)
        enh = (np.clip(job.enhance(img), 0, 1) * 255).astype(np.uint8)
        clean = read_gray(r.clean_path)
        cols.append(np.vstack([img, enh, clean]))
    return np.hstack(cols) if cols else np.zeros((8, 8), np.uint8)
