"""Alignment geometry: one affine map per image so image and masks move together.

Crop to the head ellipse with a margin, rotate the major axis horizontal, scale to the model size.
The 180-degree ambiguity of an ellipse is resolved towards the probe: the side that was nearer the
top of the frame (the transducer in a sector scan) stays on top, so every image is seen the same way.
Without an ellipse (or with cropping off) the whole frame is letterboxed, keeping its aspect ratio.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import cv2
import numpy as np

from fbad.data.records import HeadEllipse


def align_matrix(
    src_shape: tuple[int, int],
    out_size: int,
    ellipse: HeadEllipse | None = None,
    crop: bool = True,
    rotate: bool = True,
    margin: float = 0.1,
) -> np.ndarray:
    """2x3 affine matrix from source pixels (x, y) to the out_size x out_size aligned frame."""
    h, w = src_shape
    if ellipse is None or not crop:
        scale = out_size / max(h, w)
        return np.array(
            [[scale, 0.0, (out_size - scale * w) / 2], [0.0, scale, (out_size - scale * h) / 2]], dtype=np.float64
        )
    major = max(ellipse.a, ellipse.b)
    theta = 0.0
    if rotate:
        # direction of the major axis, folded into (-90, 90] so "up" in the frame stays up
        theta = ellipse.angle_deg if ellipse.a >= ellipse.b else ellipse.angle_deg + 90.0
        theta = (theta + 90.0) % 180.0 - 90.0
    scale = out_size / (2.0 * major * (1.0 + margin))
    t = math.radians(theta)
    c, s = math.cos(t) * scale, math.sin(t) * scale
    # rotate by -theta about the centre, then scale and move the centre to the output centre
    rot = np.array([[c, s], [-s, c]])
    centre = np.array([ellipse.cx, ellipse.cy])
    offset = np.array([out_size / 2.0, out_size / 2.0]) - rot @ centre
    return np.hstack([rot, offset[:, None]])


def warp(img: np.ndarray, matrix: np.ndarray, out_size: int, nearest: bool = False) -> np.ndarray:
    """Apply an align matrix; masks use nearest-neighbour, images area/linear; outside is 0."""
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    src = img.view(np.uint8) if img.dtype == bool else img
    out = cv2.warpAffine(src, matrix, (out_size, out_size), flags=interp, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=0)
    return out.view(bool) if img.dtype == bool else out


def source_box(matrix: np.ndarray, out_size: int, shape: tuple[int, int], margin: int = 2) -> tuple[slice, slice]:
    """Rows and columns of a `shape` image that warping with `matrix` to out_size x out_size can read (the
    output square mapped back, plus `margin` px for the interpolation taps), clipped to the image."""
    inv = cv2.invertAffineTransform(matrix)
    corners = inv @ np.array([[-1.0, out_size, -1.0, out_size], [-1.0, -1.0, out_size, out_size], [1, 1, 1, 1]])
    h, w = shape
    with np.errstate(invalid="ignore"):
        lo = np.floor(corners.min(axis=1)) - margin
        hi = np.ceil(corners.max(axis=1)) + margin + 1
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        return slice(0, h), slice(0, w)
    x0, y0 = (int(np.clip(v, 0, n)) for v, n in zip(lo, (w, h), strict=True))
    x1, y1 = (int(np.clip(v, 0, n)) for v, n in zip(hi, (w, h), strict=True))
    return slice(y0, max(y0, y1)), slice(x0, max(x0, x1))


def transform_ellipse(ellipse: HeadEllipse, matrix: np.ndarray) -> HeadEllipse:
    """The ellipse in the aligned frame (for checks and overlays); a similarity transform keeps it an ellipse."""
    scale = math.hypot(matrix[0, 0], matrix[1, 0])
    rot_deg = math.degrees(math.atan2(matrix[1, 0], matrix[0, 0]))
    cx, cy = matrix @ np.array([ellipse.cx, ellipse.cy, 1.0])
    return HeadEllipse(float(cx), float(cy), ellipse.a * scale, ellipse.b * scale,
                       (ellipse.angle_deg + rot_deg + 90.0) % 180.0 - 90.0)


def align(
    img: np.ndarray,
    out_size: int,
    ellipse: HeadEllipse | None = None,
    masks: Mapping[str, np.ndarray | None] | None = None,
    cfg: Mapping | None = None,
    divide_by: float | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Align an image and its masks; with `mask_outside` the image is zeroed outside `masks['brain']`.

    Only the part of the image and masks that the warp reads is touched (a crop of the source around the head),
    which gives the same output as warping the whole frame. With `divide_by`, `img` is converted to float32
    and divided by it (e.g. uint8 and 255.0) on that crop only, instead of on the whole frame first.
    """
    cfg = dict(cfg or {})
    matrix = align_matrix(img.shape[:2], out_size, ellipse, crop=cfg.get("crop", True),
                          rotate=cfg.get("rotate", True), margin=cfg.get("margin", 0.1))
    rows, cols = source_box(matrix, out_size, img.shape[:2])
    local = matrix.copy()
    local[:, 2] += matrix[:, :2] @ np.array([cols.start, rows.start], dtype=np.float64)
    src = img[rows, cols]
    if divide_by is not None:
        src = src.astype(np.float32) / divide_by
    out = warp(src, local, out_size)
    warped = {k: warp(m[rows, cols], local, out_size, nearest=True) for k, m in (masks or {}).items() if m is not None}
    if cfg.get("mask_outside", False) and "brain" in warped:
        out = out * warped["brain"].astype(out.dtype)
    return out, warped, matrix
