"""Segmentation against ground truth: HC18 outlines (filled) or the phantom's head ellipse."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np
import pandas as pd

from fbad.data.imageio import read_gray
from fbad.data.records import Record
from fbad.engine.parallel import safe_map
from fbad.segmentation.metrics import segmentation_metrics
from fbad.segmentation.registry import Segmenter, get_segmenter
from fbad.segmentation.truth import has_truth, true_head_mask

SUMMARY_METRICS = ("dice", "iou", "hd_mm", "hd_px", "hc_abs_err_mm")


class SegEval:
    """Picklable per-image job: segment one record and score it against its ground truth."""

    def __init__(self, seg_cfg: Mapping[str, Any]):
        self.seg_cfg = dict(seg_cfg)
        self._seg: Segmenter | None = None

    def __getstate__(self) -> dict:
        return {"seg_cfg": self.seg_cfg, "_seg": None}

    def __call__(self, r: Record) -> dict[str, Any]:
        if self._seg is None:
            self._seg = get_segmenter(self.seg_cfg)
        img = read_gray(r.path)
        truth = true_head_mask(r, img.shape)
        result = self._seg(img)
        m = segmentation_metrics(result, truth, r.pixel_size_mm, r.extra.get("hc_mm"))
        e = result.ellipse
        return {**m, "confidence": float(result.confidence), "reason": result.reason,
                "ellipse": None if e is None else [e.cx, e.cy, e.a, e.b, e.angle_deg]}


def evaluate_segmentation(records: Sequence[Record], seg_cfg: Mapping[str, Any], workers: int | None = None,
                          progress: bool = True) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Per-image metrics (a failed segmentation counts, with Dice 0) and the images that could not be read."""
    records = [r for r in records if has_truth(r)]
    results = safe_map(SegEval(seg_cfg), records, workers=workers, progress=progress, desc="segment")
    rows, skipped = [], []
    for r, (res, reason) in zip(records, results, strict=True):
        if res is None:
            skipped.append((str(r.path), reason))
            continue
        rows.append({"image": r.path.name, "path": str(r.path), "pixel_size_mm": r.pixel_size_mm, **res})
    return pd.DataFrame(rows), skipped


def summarise(df: pd.DataFrame) -> dict[str, float]:
    """Means and medians per metric. Dice and IoU count a failed image as 0; distances (Hausdorff, HC error)
    have no value there, so they average the images where a head was found and `failure_rate` says how many
    were not (an infinite mean would say nothing and cannot be logged)."""
    out: dict[str, float] = {"n_images": float(len(df))}
    if not len(df):
        return out
    found = ~df["failed"].astype(bool)
    for k in SUMMARY_METRICS:
        if k not in df:
            continue
        vals = df[k] if k in ("dice", "iou") else df.loc[found, k]
        vals = vals[np.isfinite(vals.astype(float))]
        if len(vals):
            out[f"{k}_mean"] = float(vals.mean())
            out[f"{k}_median"] = float(vals.median())
    out["failure_rate"] = float((~found).mean())
    return out


def overlay_grid(df: pd.DataFrame, records: Sequence[Record], k: int = 4, width: int = 320) -> np.ndarray:
    """RGB grid: the k best and k worst images by Dice, true head outline green, fitted ellipse red."""
    by_path = {str(r.path): r for r in records}
    order = df.sort_values("dice")
    picks = pd.concat([order.tail(k).iloc[::-1], order.head(k)]) if len(order) > k else order
    tiles = []
    for _, row in picks.iterrows():
        r = by_path[row["path"]]
        img = read_gray(r.path)
        rgb = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        truth = true_head_mask(r, img.shape).astype(np.uint8)
        contours, _ = cv2.findContours(truth, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        thick = max(1, img.shape[1] // 250)
        cv2.drawContours(rgb, contours, -1, (0, 200, 0), thick)
        if row["ellipse"] is not None:
            cx, cy, a, b, ang = row["ellipse"]
            cv2.ellipse(rgb, ((cx, cy), (2 * a, 2 * b), ang), (0, 0, 255), thick)
        scale = width / img.shape[1]
        tile = cv2.resize(rgb, (width, round(img.shape[0] * scale)), interpolation=cv2.INTER_AREA)
        cv2.putText(tile, f"{row['image']} dice {row['dice']:.3f}", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (255, 255, 0), 1, cv2.LINE_AA)
        tiles.append(tile)
    if not tiles:
        return np.zeros((10, 10, 3), np.uint8)
    h = max(t.shape[0] for t in tiles)
    tiles = [cv2.copyMakeBorder(t, 0, h - t.shape[0], 0, 0, cv2.BORDER_CONSTANT) for t in tiles]
    cols = min(len(tiles), k)
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[i: i + cols]) for i in range(0, len(tiles), cols)]
    return cv2.cvtColor(np.vstack(rows), cv2.COLOR_BGR2RGB)
