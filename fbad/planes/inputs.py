"""What the plane classifier sees: a raw gray frame turned into a fixed-size square (pure functions).

`crop="fov"` (default): everything outside the ultrasound fan is zeroed (scanner text, scale bars and
the black surround carry no anatomy but differ between scanners) and the frame is cropped to the fan's
bounding box before letterboxing, so the head fills the same share of the input whatever the scanner's
frame size and margins. `crop="head"` crops to the head ellipse found by `segmentation=ellipse` (margin 15 %), its major
axis turned horizontal (`fbad.segmentation.align`, the same geometry the detectors use): a zoomed 640x640
export and a wide scanner frame with a small head then look alike, so the network learns anatomy, not
framing; a frame where no head is found falls back to `fov`. `crop="frame"` letterboxes the whole frame as
it is (baseline). Letterboxing keeps the aspect ratio: a head's shape (round vs. elongated, where the
cerebellum sits) is evidence.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from fbad.preprocess.fov import field_of_view, to_uint8
from fbad.segmentation.align import align
from fbad.segmentation.learned.data import letterbox
from fbad.segmentation.registry import segment

CROPS = ("fov", "head", "frame")
HEAD_MARGIN = 0.15  # of the major axis, each side: the skull and a little of what surrounds it


MIN_SIDE = 8  # px; smaller frames hold no anatomy


def check_gray(img: np.ndarray) -> np.ndarray:
    """The image as 2-D uint8 (RGB/RGBA converted), or ValueError naming the shape that is not an image."""
    arr = np.asarray(img)
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = to_uint8(arr)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D gray image (H, W), got an array of shape {arr.shape}")
    return to_uint8(arr)


def fov_box(gray: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
    """(fan mask, its bounding box y0, y1, x0, x1), or None when the frame has no field of view (black)."""
    fov = field_of_view(gray)
    if not fov.any():
        return None
    rows, cols = np.flatnonzero(fov.any(1)), np.flatnonzero(fov.any(0))
    return fov, (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)


def usable_frame(img: np.ndarray, size: int = 96, crop: str = "fov") -> np.ndarray | None:
    """`prepare_frame`, or None for a frame with nothing to look at (under MIN_SIDE px, or no field of view)."""
    gray = check_gray(img)
    if min(gray.shape) < MIN_SIDE:
        return None
    found = fov_box(gray)
    if found is None:
        return None
    return _letterboxed(gray, found, size, crop)


def _letterboxed(gray: np.ndarray, found: tuple[np.ndarray, tuple[int, int, int, int]] | None, size: int,
                 crop: str) -> np.ndarray:
    if crop not in CROPS:
        raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
    if size < 16:
        raise ValueError(f"input size must be >= 16, got {size}")
    if crop == "head" and found is not None:
        seg = segment(gray, "ellipse")
        if not seg.failed and seg.ellipse is not None:
            return align(gray, size, seg.ellipse, cfg={"margin": HEAD_MARGIN})[0]
    if crop in ("fov", "head") and found is not None:
        fov, (y0, y1, x0, x1) = found
        gray = np.where(fov, gray, np.uint8(0))[y0:y1, x0:x1]
    return letterbox(np.ascontiguousarray(gray), (size, size))


def prepare_frame(img: np.ndarray, size: int = 96, crop: str = "fov") -> np.ndarray:
    """uint8 (size, size): the frame, fan-masked and cropped (`crop="fov"`) or whole, letterboxed.

    A frame without a field of view (all black) is letterboxed whole: the classifier reports it
    `unsupported` before looking (see `PlaneClassifier`).
    """
    gray = check_gray(img)
    if min(gray.shape) < MIN_SIDE:
        raise ValueError(f"image too small for plane classification: {gray.shape[1]}x{gray.shape[0]} "
                         f"(< {MIN_SIDE} px)")
    return _letterboxed(gray, fov_box(gray) if crop in ("fov", "head") else None, size, crop)


def to_tensor(frames: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
    """(N, 1, S, S) float32 in [0, 1] from prepared uint8 frames."""
    arr = np.asarray(frames if isinstance(frames, np.ndarray) else np.stack(list(frames)))
    if arr.ndim != 3:
        raise ValueError(f"expected prepared frames of shape (N, S, S), got {arr.shape}")
    return torch.from_numpy(arr.astype(np.float32) / 255.0)[:, None]


def prepare_input(img: np.ndarray, size: int = 96, crop: str = "fov") -> torch.Tensor:
    """(1, S, S) float32 tensor of one raw gray frame: `prepare_frame`, scaled to [0, 1]."""
    return to_tensor(prepare_frame(img, size, crop)[None])[0]
