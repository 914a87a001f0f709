"""Field of view and burned-in overlays: what every segmenter must ignore before looking for a head.

Ultrasound frames carry a black surround outside the fan, a grey-scale bar, scanner text and caliper marks.
They are bright, sharp and high-contrast, so ridge and threshold detectors latch onto them unless they are
removed first. The field of view is found at a fixed working width (the fan is a large, smooth region, so
resolution hardly matters and it keeps the cost constant across scanner sizes); overlays are found at full
resolution because text strokes are only 1-3 px wide.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MAX_OVERLAY_FRACTION = 0.02  # of the fan: more "overlay" than this inside it is bright speckle, kept
FOV_WORK_WIDTH = 200  # px; the fan outline is smooth, 200 px is plenty and keeps this under a millisecond


@dataclass
class CleanImage:
    """An image with everything outside the fan and every overlay stroke neutralised."""

    image: np.ndarray  # uint8 HxW, 0 outside the field of view, overlays replaced by their surroundings
    fov: np.ndarray  # bool HxW, the ultrasound fan
    overlay: np.ndarray  # bool HxW, text/caliper/scale-bar pixels that were removed


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Gray uint8 from uint8, float [0, 1] or a 3-channel image (scanner exports are sometimes RGB)."""
    arr = np.asarray(img)
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2GRAY if arr.shape[2] == 3 else cv2.COLOR_RGBA2GRAY)
    if arr.dtype == np.uint8:
        return arr
    if np.issubdtype(arr.dtype, np.floating):
        return np.clip(np.nan_to_num(arr) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.clip(arr, 0, 255).astype(np.uint8)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """uint8 0/1 mask of the largest 8-connected component of a uint8 mask."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 1:
        return np.zeros(mask.shape, np.uint8)
    return (labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)


def fill_holes_u8(mask: np.ndarray) -> np.ndarray:
    """Fill the holes of a uint8 0/1 mask: flood the background from outside, the rest is inside."""
    h, w = mask.shape
    outside = np.zeros((h + 2, w + 2), np.uint8)
    outside[1:-1, 1:-1] = mask
    cv2.floodFill(outside, None, (0, 0), 2)
    return (outside[1:-1, 1:-1] != 2).astype(np.uint8)


def _fov_u8(gray: np.ndarray, black_level: float, min_fraction: float) -> np.ndarray:
    h, w = gray.shape
    scale = min(1.0, FOV_WORK_WIDTH / w)
    small = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    nonblack = (small > black_level).astype(np.uint8)
    mask = cv2.morphologyEx(nonblack, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9)))
    mask = fill_holes_u8(_largest_component(mask))
    if mask.mean() < min_fraction:
        return np.zeros((h, w), np.uint8)
    return cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)


def field_of_view(img: np.ndarray, black_level: float = 2.0, min_fraction: float = 0.02) -> np.ndarray:
    """Bool mask of the ultrasound fan: the largest non-black region once thin structures are opened away.

    Opening removes the scale bar and text (thin, separated from the fan by black); closing and hole filling
    put back dark fluid enclosed by tissue, which belongs to the fan even where it is as black as the surround.
    Returns an all-False mask when no region covers `min_fraction` of the image.
    """
    return _fov_u8(to_uint8(img), black_level, min_fraction).astype(bool)


def overlay_mask(
    img: np.ndarray,
    fov: np.ndarray | None = None,
    stroke_px: int = 5,
    min_contrast: float = 80.0,
    min_level: float = 200.0,
    max_extent: float = 0.06,
) -> np.ndarray:
    """Bool mask of burned-in text, calipers and scale bars.

    Overlays are thin (narrower than `stroke_px`), much brighter than their immediate surroundings (white
    top-hat above `min_contrast`) and small (bounding box below `max_extent` of the image width). The skull is
    as bright but thicker than a text stroke and far longer, so both tests are needed to leave it alone.
    Everything bright outside the field of view is overlay whatever its shape.
    """
    gray = to_uint8(img)
    fov_u8 = None if fov is None else np.asarray(fov, np.uint8)
    return _overlay_u8(gray, fov_u8, stroke_px, min_contrast, min_level, max_extent)[0].astype(bool)


def _overlay_u8(
    gray: np.ndarray,
    fov: np.ndarray | None,
    stroke_px: int,
    min_contrast: float,
    min_level: float,
    max_extent: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Overlay mask (uint8 0/1) and the grey opening: the image with thin bright strokes taken out.

    Written with OpenCV's saturating uint8 operations: this runs on every full-resolution frame.
    """
    w = gray.shape[1]
    opened = cv2.morphologyEx(gray, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (stroke_px,) * 2))
    tophat = cv2.threshold(cv2.subtract(gray, opened), min_contrast, 1, cv2.THRESH_BINARY)[1]
    cand = cv2.bitwise_and(tophat, cv2.threshold(gray, min_level, 1, cv2.THRESH_BINARY)[1])
    # contours rather than connected-component labelling: same components, a tenth of the time
    contours, _ = cv2.findContours(cand, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    small = [c for c in contours if max(cv2.boundingRect(c)[2:]) <= max_extent * w]
    mask = np.zeros(gray.shape, np.uint8)
    if small:
        cv2.drawContours(mask, small, -1, 1, thickness=-1)
        mask = cv2.bitwise_and(mask, cand)
    if fov is not None:
        outside = cv2.bitwise_and(1 - fov, cv2.threshold(gray, 0, 1, cv2.THRESH_BINARY)[1])
        mask = cv2.bitwise_or(mask, outside)
    return cv2.dilate(mask, np.ones((3, 3), np.uint8)), opened


def clean(img: np.ndarray, black_level: float = 2.0, **overlay_params: float) -> CleanImage:
    """Zero outside the fan; overlay strokes inside it take the grey opening's value (the stroke removed)."""
    gray = to_uint8(img)
    fov = _fov_u8(gray, black_level, 0.02)
    p = {"stroke_px": 5, "min_contrast": 80.0, "min_level": 200.0, "max_extent": 0.06, **overlay_params}
    overlay, opened = _overlay_u8(gray, fov, **p)  # type: ignore[arg-type]
    out = gray.copy()
    inside = cv2.bitwise_and(overlay, fov)
    n_in = cv2.countNonZero(inside)
    # overlays are sparse marks; bright thin texture over much of the fan is speckle, not text: leave it
    if 0 < n_in <= MAX_OVERLAY_FRACTION * cv2.countNonZero(fov):
        cv2.copyTo(opened, inside, out)
    out = cv2.multiply(out, fov)
    return CleanImage(image=out, fov=fov.view(bool), overlay=overlay.view(bool))
