"""One evaluator for image-level detection, plus per-group detection rates and pixel-level AUROC.

Everything is computed with scikit-learn. Ranking metrics (AUROC, AP, curves) need "higher = more
abnormal", so 'below' scores are negated first. A metric that is undefined on the data (AUROC with one
class, sensitivity with no anomalies) is NaN, never an exception and never a made-up 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from fbad.anomaly.scoring import DIRECTIONS, Direction
from fbad.anomaly.thresholds import ThresholdResult, apply_threshold, as_scores, resolve_threshold

DEFAULT_MAX_PIXELS = 2_000_000


def evaluate(
    scores: Sequence[float] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    threshold: ThresholdResult | float,
    direction: Direction = "above",
) -> dict[str, float]:
    """Image-level metrics; labels are 1 = abnormal. A ThresholdResult brings its own direction."""
    s, y = _scores_labels(scores, labels)
    value, direction = resolve_threshold(threshold, direction)
    pred = apply_threshold(s, value, direction).astype(int)
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    ranked = _ranking(s, direction)
    two_classes = 0 < y.sum() < y.size
    nan = float("nan")
    return {
        "auroc": float(roc_auc_score(y, ranked)) if two_classes else nan,
        "auprc": float(average_precision_score(y, ranked)) if two_classes else nan,
        "f1": float(f1_score(y, pred, zero_division=np.nan)),
        "sensitivity": float(recall_score(y, pred, zero_division=np.nan)),
        "specificity": float(recall_score(y, pred, pos_label=0, zero_division=np.nan)),
        "precision": float(precision_score(y, pred, zero_division=np.nan)),
        "accuracy": float(accuracy_score(y, pred)),
        "tp": int(tp),
        "fp": int(fp),
        "tn": int(tn),
        "fn": int(fn),
        "n_normal": int((y == 0).sum()),
        "n_abnormal": int((y == 1).sum()),
        "threshold": float(value),
    }


def detection_rate_by(
    groups: Sequence[str],
    predictions: Sequence[bool] | np.ndarray,
    labels: Sequence[int] | np.ndarray | None = None,
) -> dict[str, float]:
    """Fraction flagged abnormal per group (anomaly type, severity bin, ...).

    With `labels`, only abnormal images count, so each rate is that group's sensitivity; without, a
    group of normal images reads as its false-positive rate.
    """
    g = np.asarray([str(v) for v in groups])
    p = np.asarray(predictions, dtype=bool).reshape(-1)
    if g.size != p.size:
        raise ValueError(f"{g.size} groups but {p.size} predictions")
    if labels is not None:
        y = np.asarray(labels).reshape(-1)
        if y.size != p.size:
            raise ValueError(f"{y.size} labels but {p.size} predictions")
        g, p = g[y == 1], p[y == 1]
    names, inverse = np.unique(g, return_inverse=True)
    flagged = np.bincount(inverse, weights=p.astype(float), minlength=names.size)
    counts = np.bincount(inverse, minlength=names.size)
    return {str(n): float(f / c) for n, f, c in zip(names, flagged, counts, strict=True)}


def pixel_auroc(
    maps: Any,
    anomaly_masks: Any,
    region_masks: Any | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    seed: int = 0,
) -> float:
    """AUROC of per-pixel map values against ground-truth anomaly pixels, inside `region_masks` if given.

    Beyond `max_pixels` pixels a fixed-seed random subsample is used, so the figure is reproducible.
    NaN when the pixels hold one class only.
    """
    values = _flat32(maps)
    truth = _flat32(anomaly_masks) > 0.5
    if values.size != truth.size:
        raise ValueError(f"maps have {values.size} pixels but anomaly masks {truth.size}")
    if region_masks is not None:
        region = _flat32(region_masks) > 0.5
        if region.size != values.size:
            raise ValueError(f"region masks have {region.size} pixels but maps {values.size}")
        values, truth = values[region], truth[region]
    if values.size > max_pixels:
        pick = np.random.default_rng(seed).choice(values.size, size=max_pixels, replace=False)
        values, truth = values[pick], truth[pick]
    if truth.all() or not truth.any():
        return float("nan")
    return float(roc_auc_score(truth, values))


def roc_curve_data(scores: Any, labels: Any, direction: Direction = "above") -> dict[str, np.ndarray]:
    """fpr, tpr and the thresholds (in the scores' own units) for plotting."""
    s, y = _scores_labels(scores, labels)
    sign = _sign(direction)
    fpr, tpr, thr = roc_curve(y, sign * s)
    return {"fpr": fpr, "tpr": tpr, "thresholds": sign * thr}


def pr_curve_data(scores: Any, labels: Any, direction: Direction = "above") -> dict[str, np.ndarray]:
    """precision, recall and the thresholds (in the scores' own units) for plotting."""
    s, y = _scores_labels(scores, labels)
    sign = _sign(direction)
    precision, recall, thr = precision_recall_curve(y, sign * s)
    return {"precision": precision, "recall": recall, "thresholds": sign * thr}


def _scores_labels(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    s = as_scores(scores)
    y = as_scores(labels).astype(int)
    if s.size != y.size:
        raise ValueError(f"{s.size} scores but {y.size} labels")
    if not np.isfinite(s).all():
        raise ValueError(f"{int((~np.isfinite(s)).sum())} scores are not finite (empty masks?)")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (normal) or 1 (abnormal)")
    return s, y


def _flat32(a: Any) -> np.ndarray:
    # float32: pixel sets are large, and AUROC only needs the ordering.
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float32).reshape(-1)


def _sign(direction: Direction) -> float:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    return 1.0 if direction == "above" else -1.0


def _ranking(s: np.ndarray, direction: Direction) -> np.ndarray:
    return _sign(direction) * s
