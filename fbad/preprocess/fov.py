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
    # `image` and `fov` area-downsampled to FOV_WORK_WIDTH (uint8, bool), when they come for free: the fan is
    # found at that width and upsampled by whole blocks, so with no overlay removed inside it the downsampled
    # cleaned image is exactly the downsampled frame times the small fan. None otherwise.
    small: tuple[np.ndarray, np.ndarray] | None = None


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
    n, labels = cv2.connectedComponents(mask, connectivity=8)  # areas by bincount: 4x faster than ...WithStats
    if n <= 1:
        return np.zeros(mask.shape, np.uint8)
    area = np.bincount(labels.ravel(), minlength=n)
    return (labels == 1 + int(np.argmax(area[1:]))).astype(np.uint8)


def fill_holes_u8(mask: np.ndarray) -> np.ndarray:
    """Fill the holes of a uint8 0/1 mask: flood the background from outside, the rest is inside."""
    h, w = mask.shape
    outside = np.zeros((h + 2, w + 2), np.uint8)
    outside[1:-1, 1:-1] = mask
    cv2.floodFill(outside, None, (0, 0), 2)
    return (outside[1:-1, 1:-1] != 2).astype(np.uint8)


def _fov_u8(gray: np.ndarray, black_level: float, min_fraction: float) -> np.ndarray:
    return _fov_parts(gray, black_level, min_fraction)[0]


def _fov_parts(gray: np.ndarray, black_level: float, min_fraction: float) -> tuple[np.ndarray, ...]:
    """(fan mask at full size, the frame at the working width, the fan mask there); all uint8."""
    h, w = gray.shape
    scale = min(1.0, FOV_WORK_WIDTH / w)
    small = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    nonblack = cv2.threshold(small, black_level, 1, cv2.THRESH_BINARY)[1]
    mask = cv2.morphologyEx(nonblack, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9)))
    mask = fill_holes_u8(_largest_component(mask))
    if cv2.countNonZero(mask) < min_fraction * mask.size:
        mask[:] = 0
        return np.zeros((h, w), np.uint8), small, mask
    return _upsample_nearest(mask, (h, w)), small, mask


def _whole_blocks(small: tuple[int, int], full: tuple[int, int]) -> int:
    """The factor f when `full` is `small` scaled by the same power of two f > 1 on both axes, else 0: then
    nearest upsampling repeats each pixel into an f x f block and area downsampling averages exactly those blocks."""
    (sh, sw), (h, w) = small, full
    f = w // sw
    return f if f > 1 and (f & (f - 1)) == 0 and w == f * sw and h == f * sh else 0


def _upsample_nearest(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """`cv2.resize(mask, INTER_NEAREST)` to `shape`, by repeating pixels on whole blocks (the usual frame sizes:
    exact there, and a third of OpenCV's time)."""
    f = _whole_blocks(mask.shape, shape)
    if f:
        return np.repeat(np.repeat(mask, f, axis=1), f, axis=0)
    return cv2.resize(mask, shape[::-1], interpolation=cv2.INTER_NEAREST)


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
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Overlay mask (uint8 0/1), the grey opening (the image with thin bright strokes taken out) and the mask
    of the text/caliper strokes alone (None when there is none: only the lit surround of the fan).

    Written with OpenCV's saturating uint8 operations: this runs on every full-resolution frame.
    """
    w = gray.shape[1]
    opened = cv2.morphologyEx(gray, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (stroke_px,) * 2))
    tophat = cv2.threshold(cv2.subtract(gray, opened), min_contrast, 1, cv2.THRESH_BINARY)[1]
    cand = cv2.bitwise_and(tophat, cv2.threshold(gray, min_level, 1, cv2.THRESH_BINARY)[1])
    # contours rather than connected-component labelling: same components, a tenth of the time (and most
    # frames have no candidate at all, which a pixel count tells faster still)
    contours = cv2.findContours(cand, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0] if cv2.countNonZero(cand) else ()
    small = [c for c in contours if max(cv2.boundingRect(c)[2:]) <= max_extent * w]
    text: np.ndarray | None = None
    if small:
        text = np.zeros(gray.shape, np.uint8)
        cv2.drawContours(text, small, -1, 1, thickness=-1)
        text = cv2.bitwise_and(text, cand)
    mask = text
    if fov is not None:
        outside = cv2.subtract(cv2.threshold(gray, 0, 1, cv2.THRESH_BINARY)[1], fov)  # saturating: lit & ~fov
        mask = outside if mask is None else cv2.bitwise_or(mask, outside)
    if mask is None:
        mask = np.zeros(gray.shape, np.uint8)
    return cv2.dilate(mask, np.ones((3, 3), np.uint8)), opened, text


def clean(img: np.ndarray, black_level: float = 2.0, **overlay_params: float) -> CleanImage:
    """Zero outside the fan; overlay strokes inside it take the grey opening's value (the stroke removed)."""
    gray = to_uint8(img)
    fov, gray_small, fov_small = _fov_parts(gray, black_level, 0.02)
    p = {"stroke_px": 5, "min_contrast": 80.0, "min_level": 200.0, "max_extent": 0.06, **overlay_params}
    overlay, opened, text = _overlay_u8(gray, fov, **p)  # type: ignore[arg-type]
    inside = cv2.bitwise_and(overlay, fov)
    n_in = cv2.countNonZero(inside)
    # overlays are sparse marks; bright thin texture over much of the fan is speckle, not text: leave it
    replaced = 0 < n_in <= MAX_OVERLAY_FRACTION * cv2.countNonZero(fov)
    out = np.multiply(gray, fov)  # fov is 0/1: numpy's uint8 product is exact here and 5x faster than OpenCV's
    if replaced:  # `inside` lies in the fan, so replacing after the masking gives the same image
        cv2.copyTo(opened, inside, out)
    text_inside = text is not None and cv2.countNonZero(cv2.bitwise_and(cv2.dilate(text, np.ones((3, 3))), fov)) > 0
    small = _small_cleaned(out, gray_small, fov_small, replaced, text_inside)
    return CleanImage(image=out, fov=fov.view(bool), overlay=overlay.view(bool), small=small)


def _small_cleaned(
    out: np.ndarray, gray_small: np.ndarray, fov_small: np.ndarray, replaced: bool, text_inside: bool
) -> tuple[np.ndarray, np.ndarray] | None:
    """`cv2.resize(out, INTER_AREA)` to the fan's working size (and the small fan) without a second pass over
    the frame, or None where that is not exact.

    The fan is upsampled by whole f x f blocks, so a block is entirely in or out of it and its average is the
    frame's (already computed for the fan) or 0. Removed overlay pixels change blocks only where they are: with
    no text inside the fan, only on its 1-px border (the dilated surround), i.e. in the fan's boundary blocks,
    which are re-averaged from `out` (OpenCV: block sum / f^2, rounded half to even, for f >= 4).
    """
    f = _whole_blocks(fov_small.shape, out.shape)
    if f < 4 or text_inside:
        return None
    small = np.multiply(gray_small, fov_small)
    if replaced:
        edge = cv2.subtract(fov_small, cv2.erode(fov_small, np.ones((3, 3), np.uint8)))
        by, bx = np.nonzero(edge)
        sh, sw = fov_small.shape
        blocks = out.reshape(sh, f, sw, f)[by, :, bx, :]
        small[by, bx] = np.rint(blocks.sum(axis=(1, 2), dtype=np.int32) / (f * f)).astype(np.uint8)
    return small, fov_small.view(bool)
