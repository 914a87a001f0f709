"""Several datasets read as one (`dataset=union`): e.g. the Roboflow frames plus every HC18 frame as extra
normal training material. Each source is read by its own reader; `split: train` on a source makes all of
its frames training-side (fbad's split then takes validation frames from them by patient, never test frames).
Every record carries its source's name in `extra["source"]`.

Patient ids stay each reader's own (`fpdb…`, `hc18_…`, `hc18test_…`, Roboflow source ids), so no two
sources share a patient by accident.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fbad.data.imageio import SkipLog
from fbad.data.readers import ReadResult, read_dataset
from fbad.data.records import Split
from fbad.errors import DatasetError


def read_union(datasets: Sequence[Mapping[str, Any]], root: object = None, **_: object) -> ReadResult:
    """The records of every source, in order; `split` (train/test) on a source overrides its official split."""
    if not datasets:
        raise DatasetError("dataset=union needs dataset.datasets: a list of dataset configs")
    records, skipped = [], SkipLog()
    for i, source in enumerate(datasets):
        cfg = dict(source)
        split = cfg.pop("split", None)
        if "name" not in cfg:
            raise DatasetError(f"dataset.datasets[{i}] has no name")
        read = read_dataset(cfg)
        for r in read.records:  # which source a frame came from: balanced sampling and per-source figures
            r.extra.setdefault("source", str(cfg["name"]))
            if split is not None:
                r.split = Split(split)
        records += read.records
        skipped.rows += read.skipped.rows
    return ReadResult(records=records, skipped=skipped)
