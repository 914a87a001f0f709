"""The preprocessing chain from a file on disk to model-ready arrays.

read -> grayscale -> enhance -> segment (head ellipse, brain mask) -> align -> resize. One
`Preprocessor` is built from the resolved config and pickled to worker processes by the cache.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import numpy as np

from fbad.data.imageio import read_gray
from fbad.data.records import Record
from fbad.errors import BadImageError
from fbad.segmentation.align import align
from fbad.segmentation.truth import read_mask

PREPROCESS_VERSION = 1  # bump when the meaning of a cached array changes (edits to CODE_FILES change the key anyway)
CODE_FILES = ("preprocess/*.py", "segmentation/**/*.py", "anomaly/preprocessor.py",
              "data/imageio.py")  # what makes a cached array


class SegmentationFailed(BadImageError):
    """No head found: the image is skipped (and listed), never forced through."""


class Preprocessor:
    """Picklable callable: Record -> {"image": float32 (S,S) in [0,1], "mask": bool, "anomaly": bool}."""

    def __init__(self, cfg: Mapping[str, Any]):
        self.cfg = _plain(cfg)
        self.size = int(self.cfg["image_size"])
        self._enhance = None
        self._segment = None

    def __getstate__(self) -> dict:  # built operators stay behind; workers rebuild them
        return {**self.__dict__, "_enhance": None, "_segment": None}

    def config_for_hash(self) -> dict:
        """The config, plus the digest of the learned segmenter's weights: a retrained file at the same path,
        or an alias moved to a new version, must not be served the old segmentations from the cache."""
        from fbad.engine.cache import source_digest

        cfg = {"version": PREPROCESS_VERSION, "code": source_digest(CODE_FILES), **self.cfg}
        seg = cfg.get("segmentation") or {}
        if seg.get("name") == "learned" and seg.get("weights") not in (None, "", "???"):
            from fbad.segmentation.learned.weights import weights_digest

            cfg["segmentation"] = {**seg, "weights_sha256": weights_digest(seg["weights"], seg.get("tracking_uri"))}
        return cfg

    def _enhancer(self):
        if self._enhance is None:
            enh = self.cfg.get("enhancement") or {"name": "none", "ops": []}
            if enh.get("ops"):
                from fbad.preprocess.enhance import build_chain

                self._enhance = build_chain(enh["ops"])
            else:
                self._enhance = _identity
        return self._enhance

    def _segmenter(self):
        if self._segment is None:
            seg = self.cfg.get("segmentation") or {"name": "none"}
            if seg.get("name") == "none":  # no segmentation at all: the whole frame is the brain
                self._segment = "none"
            else:
                from fbad.segmentation.registry import get_segmenter

                self._segment = get_segmenter(seg)
        return self._segment

    def __call__(self, record: Record) -> dict[str, np.ndarray]:
        raw = read_gray(record.path)
        enhance = self._enhancer()
        # without enhancement, the float conversion happens in `align`, on the crop that the warp reads
        img = None if enhance is _identity else enhance(raw.astype(np.float32) / 255.0)
        gt_anomaly = read_mask(record.anomaly_mask_path, raw.shape)
        segmenter = self._segmenter()
        ellipse, brain = None, None
        if segmenter != "none":
            result = segmenter(raw, record)
            if result.failed:
                raise SegmentationFailed(record.path, f"segmentation failed: {result.reason}")
            ellipse, brain = result.ellipse, result.brain_mask
        align_cfg = self.cfg.get("align") or {"crop": False, "rotate": False}
        if brain is None:
            brain = np.ones(raw.shape, dtype=bool)
        masks_in = {"brain": brain, "anomaly": gt_anomaly}
        if img is None:
            out, masks, _ = align(raw, self.size, ellipse, masks_in, align_cfg, divide_by=255.0)
        else:
            out, masks, _ = align(img, self.size, ellipse, masks_in, align_cfg)
        return {
            "image": np.clip(out, 0.0, 1.0).astype(np.float32),
            "mask": masks["brain"],
            "anomaly": masks.get("anomaly", np.zeros((self.size, self.size), dtype=bool)),
        }


def _identity(img: np.ndarray) -> np.ndarray:
    return img


def _plain(cfg: Mapping[str, Any]) -> dict:
    from omegaconf import OmegaConf

    return cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True)) if OmegaConf.is_config(cfg) else dict(cfg)
