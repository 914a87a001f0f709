"""The two training-free baselines: `none` (the whole field of view) and `seed` (the notebook's heuristic).

``seed`` reproduces the original notebook study (threshold 180, largest bright contour united with a centred
circle, bounding-box crop) so that its quality can be measured next to the other methods.
"""

from __future__ import annotations

import cv2
import numpy as np

from fbad.data.records import HeadEllipse
from fbad.preprocess.fov import clean
from fbad.segmentation.result import SegmentationResult
from fbad.segmentation.result import failure as _failure


def segment_none(img: np.ndarray) -> SegmentationResult:
    """Whole field of view as brain; never fails (an all-black frame gives an empty mask)."""
    fov = clean(img).fov
    return SegmentationResult(None, fov, np.zeros_like(fov), fov.copy(), 1.0, False)


# --------------------------------------------------------------------------------------------------- seed


def segment_seed(img: np.ndarray, threshold: int = 180, radius_frac: float = 0.4, pad: int = 20) -> SegmentationResult:
    """The notebook heuristic: bright contour ∪ centred circle, its bounding box (+pad) as the crop."""
    gray = clean(img).image
    h, w = gray.shape
    bright = (gray > threshold).astype(np.uint8)
    contours, _ = cv2.findContours(bright, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return _failure((h, w), f"no head found: no bright region above {threshold}")
    union = np.zeros((h, w), np.uint8)
    cv2.drawContours(union, [max(contours, key=cv2.contourArea)], -1, 1, thickness=-1)
    cv2.circle(union, (w // 2, h // 2), round(radius_frac * min(h, w)), 1, thickness=-1)
    outline = max(cv2.findContours(union, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)[0], key=cv2.contourArea)
    (cx, cy), (d1, d2), ang = cv2.fitEllipse(outline)
    ellipse = HeadEllipse(cx, cy, d1 / 2, d2 / 2, ang)
    x, y, bw, bh = cv2.boundingRect(outline)
    box = (max(0, x - pad), max(0, y - pad), min(w, x + bw + pad), min(h, y + bh + pad))
    mask = union.astype(bool)
    skull = mask & bright.astype(bool)
    return SegmentationResult(ellipse, mask, skull, mask & ~skull, 1.0, False, crop_box=box)
