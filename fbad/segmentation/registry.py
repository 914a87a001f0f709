"""One registry for every `conf/segmentation/*.yaml`: a config group `{name: ..., params}` -> a segmenter.

A segmenter is a picklable callable `(gray image, record=None) -> SegmentationResult` at the image's
resolution. Unknown names and keys raise when it is built; the callable itself never raises on image content
(a frame without a recognisable head comes back `failed`, with the reason and empty masks).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import fields
from functools import partial
from typing import Any

import cv2
import numpy as np

from fbad.data.records import Record
from fbad.preprocess.fov import to_uint8
from fbad.segmentation.classical import segment_none, segment_seed
from fbad.segmentation.ellipse import EllipseParams, segment_ellipse
from fbad.segmentation.result import SegmentationResult, failure
from fbad.segmentation.truth import GroundTruth

Method = Callable[..., SegmentationResult]


def _check_keys(method: str, params: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ValueError(f"segmentation {method!r}: unknown parameter(s) {unknown}; known: {sorted(allowed)}")


def _ellipse(**params: Any) -> Method:
    _check_keys("ellipse", params, {f.name for f in fields(EllipseParams)})
    if "scales" in params:
        params["scales"] = tuple(float(s) for s in params["scales"])
    return partial(segment_ellipse, params=EllipseParams(**params))


def _seed(**params: Any) -> Method:
    _check_keys("seed", params, {"threshold", "radius_frac", "pad"})
    return partial(segment_seed, **params)


def _none(**params: Any) -> Method:
    _check_keys("none", params, set())
    return segment_none


def _learned(**params: Any) -> Method:
    from fbad.segmentation.learned.segmenter import learned_from_params  # torch: imported only when asked for

    return learned_from_params(**params)


def _ground_truth(**params: Any) -> Method:
    _check_keys("ground_truth", params, set())
    return GroundTruth()


METHODS: dict[str, Callable[..., Method]] = {
    "none": _none,
    "seed": _seed,
    "ellipse": _ellipse,
    "learned": _learned,
    "ground_truth": _ground_truth,
}


class Segmenter:
    """Picklable wrapper: gray conversion, and numerical trouble on odd images becomes a failed result."""

    def __init__(self, fn: Method):
        self.fn = fn

    @property
    def trained_on(self) -> set[str]:
        """Images a learned method saw in training (eval-seg leaves them out); empty for the others."""
        return set(getattr(self.fn, "trained_on", ()))

    def __call__(self, img: np.ndarray, record: Record | None = None) -> SegmentationResult:
        gray = to_uint8(img)
        if gray.ndim != 2 or min(gray.shape) < 8:
            return failure(gray.shape[:2] if gray.ndim >= 2 else (0, 0), f"not a usable 2-D image {gray.shape}")
        try:
            return self.fn(gray, record) if getattr(self.fn, "uses_record", False) else self.fn(gray)
        except (cv2.error, np.linalg.LinAlgError, FloatingPointError, ValueError) as exc:
            return failure(gray.shape, f"segmentation error: {type(exc).__name__}: {exc}")


def get_segmenter(cfg: Mapping[str, Any]) -> Segmenter:
    """Segmenter from a config group `{name: ellipse, ...params}` (see the module docstring)."""
    params = dict(cfg)
    name = params.pop("name", "ellipse")
    if name not in METHODS:
        raise ValueError(f"unknown segmentation method {name!r}; expected one of {sorted(METHODS)}")
    return Segmenter(METHODS[name](**params))


def segment(img: np.ndarray, method: str | Mapping[str, Any] = "ellipse", **params: Any) -> SegmentationResult:
    """Segment one gray image (uint8, or float in [0, 1]) with a method name or config group, plus overrides."""
    cfg = {"name": method} if isinstance(method, str) else dict(method)
    cfg.update(params)
    return get_segmenter(cfg)(img)
