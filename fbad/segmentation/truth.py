"""The reference head of a record (an HC18 outline filled, or the phantom's ellipse), and `ground_truth`: the
oracle method that returns it, for experiments that need annotations (never a servable model)."""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage as ndi

from fbad.data.imageio import read_gray
from fbad.data.records import Record
from fbad.errors import BadImageError
from fbad.segmentation.geometry import ellipse_mask
from fbad.segmentation.result import SegmentationResult, failure


def has_truth(r: Record) -> bool:
    return r.head_mask_path is not None or r.ellipse is not None


def true_head_mask(r: Record, shape: tuple[int, int]) -> np.ndarray:
    """The filled head region: an HC18 outline flood-filled, or the phantom's ellipse drawn filled."""
    if r.head_mask_path is not None:
        mask = fill_outline(read_gray(r.head_mask_path) > 127)
        if mask.shape != shape:
            raise BadImageError(r.head_mask_path, f"annotation size {mask.shape[::-1]} differs from the image")
        return mask
    if r.ellipse is None:
        raise BadImageError(r.path, "no head annotation (outline or ellipse)")
    return ellipse_mask(shape, r.ellipse)


def fill_outline(annotation: np.ndarray) -> np.ndarray:
    """Filled region of a drawn outline (HC18 annotations: a thin closed ellipse); filled masks pass through.

    Holes are what cannot be reached from outside the image. An outline that is not closed inside the frame
    fills nothing, so then the ellipse fitted to the outline's pixels is drawn instead.
    """
    line = np.asarray(annotation) > (127 if np.asarray(annotation).dtype == np.uint8 else 0.5)
    filled = ndi.binary_fill_holes(line)
    if filled.sum() > 1.5 * line.sum() or line.sum() < 5:
        return filled
    pts = np.argwhere(line)[:, ::-1].astype(np.float32)
    (cx, cy), (d1, d2), ang = cv2.fitEllipse(pts)
    out = np.zeros(line.shape, np.uint8)
    cv2.ellipse(out, ((cx, cy), (d1, d2), ang), 1, thickness=-1)
    return out.astype(bool) | line


def read_mask(path: object, shape: tuple[int, int]) -> np.ndarray | None:
    """A mask file beside an image (brain, anomaly), checked against the image's size; None without one."""
    if path is None:
        return None
    mask = read_gray(path) > 127  # type: ignore[arg-type]
    if mask.shape != shape:
        raise BadImageError(path, f"mask size {mask.shape[::-1]} differs from its image {shape[::-1]}")  # type: ignore[arg-type]
    return mask


class GroundTruth:
    """`segmentation=ground_truth`: the record's own head ellipse and brain mask (the phantom has both)."""

    uses_record = True

    def __call__(self, img: np.ndarray, record: Record | None = None) -> SegmentationResult:
        shape = img.shape[:2]
        if record is None or record.ellipse is None:
            return failure(shape, "segmentation=ground_truth but the record has no head ellipse")
        head = ellipse_mask(shape, record.ellipse)
        brain = read_mask(record.brain_mask_path, shape)
        brain = np.ones(shape, bool) if brain is None else brain  # as before: no brain mask, the whole image
        return SegmentationResult(record.ellipse, head, np.zeros(shape, bool), brain,
                                  1.0, False)
