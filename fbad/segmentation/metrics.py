"""Segmentation quality against a reference head: overlap, boundary distance and head-circumference error.

Pure functions on bool masks and `HeadEllipse`s, so that tests, benchmarks and `fbad eval-seg` agree.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np
from scipy import ndimage as ndi

from fbad.data.records import HeadEllipse
from fbad.segmentation.geometry import ellipse_from_mask


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """2|A∩B| / (|A|+|B|); two empty masks agree perfectly (1.0)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """|A∩B| / |A∪B|; two empty masks agree perfectly (1.0)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union


def hausdorff(a: np.ndarray, b: np.ndarray, pixel_size_mm: float | None = None) -> float:
    """Symmetric Hausdorff distance between the two masks' boundaries, in px or mm when the pixel size is given.

    Uses distance transforms (exact Euclidean), which is linear in the image size. Returns inf when exactly
    one mask is empty and 0.0 when both are.
    """
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if not a.any() and not b.any():
        return 0.0
    if not a.any() or not b.any():
        return math.inf
    ea = a & ~ndi.binary_erosion(a, border_value=0)
    eb = b & ~ndi.binary_erosion(b, border_value=0)
    # distance of every pixel to the nearest boundary pixel of the other mask
    da = cv2.distanceTransform((~ea).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    db = cv2.distanceTransform((~eb).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    hd = float(max(db[ea].max(), da[eb].max()))
    return hd * pixel_size_mm if pixel_size_mm else hd


def ellipse_circumference(ellipse: HeadEllipse) -> float:
    """Perimeter in px (Ramanujan's second approximation, as in HC18)."""
    return ellipse.circumference_px()


def hc_abs_error_mm(pred: HeadEllipse | None, true: HeadEllipse | float, pixel_size_mm: float) -> float:
    """|HC_pred - HC_true| in mm; `true` is the reference HC in mm or the reference ellipse (px).

    A missing prediction has no HC: the error is inf, so that averages cannot hide failures silently.
    """
    if pred is None:
        return math.inf
    true_mm = true.circumference_px() * pixel_size_mm if isinstance(true, HeadEllipse) else float(true)
    return abs(pred.circumference_px() * pixel_size_mm - true_mm)


def segmentation_metrics(
    result: Any, true_head_mask: np.ndarray, pixel_size_mm: float | None = None, true_hc_mm: float | None = None
) -> dict[str, float | bool]:
    """Dice, IoU, Hausdorff (px and mm) of the head mask and |HC error| (mm) of the ellipse for one image.

    `result` is a `SegmentationResult` (anything with head_mask, ellipse and failed). Without `true_hc_mm`
    the reference HC is taken from the ellipse fitted to the reference mask. A failed result scores Dice 0.
    """
    head = np.asarray(result.head_mask, bool)
    truth = np.asarray(true_head_mask, bool)
    hd_px = hausdorff(head, truth)
    out: dict[str, float | bool] = {
        "dice": dice(head, truth) if head.any() else 0.0,
        "iou": iou(head, truth) if head.any() else 0.0,
        "hd_px": hd_px,
        "hd_mm": hd_px * pixel_size_mm if pixel_size_mm else math.nan,
        "failed": bool(result.failed),
    }
    if pixel_size_mm:
        ref: HeadEllipse | float | None = true_hc_mm if true_hc_mm is not None else ellipse_from_mask(truth)
        out["hc_abs_err_mm"] = math.nan if ref is None else hc_abs_error_mm(result.ellipse, ref, pixel_size_mm)
    else:
        out["hc_abs_err_mm"] = math.nan
    return out
