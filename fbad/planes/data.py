"""Training data of the plane classifier: labelled records, prepared frames (cached), a torch Dataset.

A record's class is its brain plane; FETAL_PLANES_DB's brain `Other` and non-brain images (and the
phantom's negatives) become `unsupported`; records of unknown plane cannot teach anything and are left out.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fbad.data.imageio import SkipLog, read_gray
from fbad.data.records import BRAIN_PLANES, Plane, Record
from fbad.engine.parallel import safe_map
from fbad.planes.classifier import UNSUPPORTED
from fbad.planes.inputs import prepare_frame

UNSUPPORTED_PLANES = (Plane.OTHER, Plane.NOT_BRAIN)
INPUT_CACHE_VERSION = 1


def class_of(record: Record) -> str | None:
    """The classifier's class for a record: its brain plane, `unsupported`, or None (plane unknown)."""
    if record.plane in BRAIN_PLANES:
        return record.plane.value
    if record.plane in UNSUPPORTED_PLANES:
        return UNSUPPORTED
    return None


def class_names(records: Sequence[Record]) -> list[str]:
    """Classes present, in a fixed order: the brain planes as fbad lists them, then `unsupported`."""
    present = {class_of(r) for r in records}
    return [c for c in (*(p.value for p in BRAIN_PLANES), UNSUPPORTED) if c in present]


def balanced_weights(labels: Sequence[int], n_classes: int) -> list[float]:
    """n / (n_classes * count) per class (sklearn's 'balanced'); absent classes get 0."""
    counts = Counter(int(y) for y in labels)
    n = len(labels)
    return [n / (n_classes * counts[k]) if counts.get(k) else 0.0 for k in range(n_classes)]


def source_of(record: Record) -> str:
    """The dataset a record came from (`dataset=union` names each source; else the reader's one dataset)."""
    return str(record.extra.get("source", ""))


BALANCE = ("none", "class", "source_class")


def sample_weights(labels: Sequence[int], sources: Sequence[str], balance: str) -> list[float] | None:
    """Per-frame sampling weights: `class` gives every class the same share of the draws; `source_class`
    also splits a class's share equally between the sources that have it, so a large source (535 HC18
    trans-thalamic frames) cannot teach "this scanner means this plane" to a class another source also holds.
    `none`: None (plain shuffling)."""
    if balance not in BALANCE:
        raise ValueError(f"balance={balance!r}: expected one of {BALANCE}")
    if balance == "none":
        return None
    keys = list(zip(labels, sources if balance == "source_class" else [""] * len(labels), strict=True))
    counts = Counter(keys)
    per_class = Counter(y for y, _ in counts)  # sources holding each class
    return [1.0 / (per_class[y] * counts[(y, s)]) for y, s in keys]


def _prepare_record(record: Record, size: int, crop: str) -> dict[str, np.ndarray]:
    return {"frame": prepare_frame(read_gray(record.path), size, crop)}


def prepared_frames(records: Sequence[Record], size: int, crop: str, cache_dir: Path | str | None,
                    workers: int | None = None, progress: bool = True) -> tuple[np.ndarray, list[Record], SkipLog]:
    """(frames (N, S, S) uint8, the records they belong to, skip log of unreadable files).

    With `cache_dir` the frames are computed once per (input files, size, crop) and then memory-mapped
    (fbad.engine.cache); without it they are computed in this process.
    """
    fn = functools.partial(_prepare_record, size=int(size), crop=str(crop))
    skipped = SkipLog()
    if cache_dir is not None:
        from fbad.engine.cache import cached_preprocess, source_digest

        code = source_digest(("planes/inputs.py", "planes/data.py", "preprocess/fov.py", "data/imageio.py",
                              *(("segmentation/**/*.py",) if crop == "head" else ())))
        cfg = {"what": "plane_classifier_input", "version": INPUT_CACHE_VERSION, "code": code, "size": int(size),
               "crop": crop}
        cached = cached_preprocess(records, fn, cfg, cache_dir, workers=workers, progress=progress)
        skipped.rows += cached.skipped.rows
        kept = [r for r, row in zip(records, cached.row_of, strict=True) if row >= 0]
        rows = cached.row_of[cached.row_of >= 0]
        frames = np.asarray(cached.arrays["frame"])[rows] if len(rows) else np.zeros((0, size, size), np.uint8)
        return frames, kept, skipped

    results = safe_map(fn, list(records), workers=workers, progress=progress, desc="prepare")
    frames, kept = [], []
    for r, (res, reason) in zip(records, results, strict=True):
        if res is None:
            skipped.add(r.path, reason)
        else:
            frames.append(res["frame"])
            kept.append(r)
    return (np.stack(frames) if frames else np.zeros((0, size, size), np.uint8)), kept, skipped


class PlaneDataset(torch.utils.data.Dataset):
    """(prepared frame, class index) pairs, augmented on the fly by an albumentations pipeline."""

    def __init__(self, frames: np.ndarray, labels: Sequence[int], augment: Callable[..., dict[str, Any]] | None = None):
        if len(frames) != len(labels):
            raise ValueError(f"{len(frames)} frames for {len(labels)} labels")
        self.frames, self.labels, self.augment = frames, np.asarray(labels, np.int64), augment

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        img = np.asarray(self.frames[i])
        if self.augment is not None:
            img = self.augment(image=img)["image"]
        x = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32) / 255.0)[None]
        return {"image": x, "label": torch.tensor(self.labels[i])}
