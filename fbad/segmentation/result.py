"""What every segmentation method returns: one head ellipse and the head, skull and brain masks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fbad.data.records import HeadEllipse


@dataclass
class SegmentationResult:
    """Head ellipse (outer skull border) and masks at the input image's resolution."""

    ellipse: HeadEllipse | None
    head_mask: np.ndarray
    skull_mask: np.ndarray
    brain_mask: np.ndarray
    confidence: float
    failed: bool
    reason: str = ""
    crop_box: tuple[int, int, int, int] | None = None  # (x0, y0, x1, y1), `seed` only
    extra: dict[str, Any] = field(default_factory=dict)


def failure(shape: tuple[int, int], reason: str, **extra: Any) -> SegmentationResult:
    """A failed result: empty masks and the reason (methods never raise on image content)."""
    empty = np.zeros(shape, bool)
    return SegmentationResult(None, empty, empty.copy(), empty.copy(), 0.0, True, reason, extra=dict(extra))
