"""A lesion dataset from real normal frames of several datasets: each frame's head comes from its expert outline
where it has one (HC18) and from a segmenter otherwise, then `write_lesion_dataset` forms the lesions."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fbad.data.imageio import read_gray
from fbad.data.readers import read_dataset
from fbad.data.records import Label, Record
from fbad.errors import BadImageError, DatasetError
from fbad.lesions.writer import HeadRegion, write_lesion_dataset
from fbad.segmentation.registry import get_segmenter

log = logging.getLogger(__name__)


def lesion_sources(datasets: Sequence[Mapping[str, Any]], segmentation: Mapping[str, Any]
                   ) -> list[tuple[Record, HeadRegion]]:
    """The normal frames of `datasets` with their head region: the record's own outline or ellipse, else the
    mask and ellipse `segmentation` finds (a frame where it finds none goes without, and is listed as skipped
    by the writer)."""
    segment = get_segmenter(segmentation)
    items: list[tuple[Record, HeadRegion]] = []
    for ds in datasets:
        read = read_dataset(ds)
        normal = [r for r in read.records if r.label == Label.NORMAL]
        if not normal:
            raise DatasetError(f"lesion sources: dataset {ds.get('name')} at {ds.get('root')} has no normal frame")
        for r in normal:
            if r.head_mask_path is not None or r.ellipse is not None:
                items.append((r, None))
                continue
            try:
                res = segment(read_gray(r.path))
            except BadImageError:
                items.append((r, None))
                continue
            items.append((r, None if res.failed else (res.head_mask, res.ellipse)))
    return items


def ensure_lesion_dataset(root: str | Path, datasets: Sequence[Mapping[str, Any]], segmentation: Mapping[str, Any],
                          **lesions: Any) -> Path:
    """The lesion dataset at `root`, written first when it does not exist (`lesions`: the options of
    `write_lesion_dataset`, e.g. fraction_abnormal, kinds, lesion_splits, seed)."""
    root = Path(root)
    if (root / "index.csv").is_file():
        return root
    items = lesion_sources(datasets, segmentation)
    log.info("writing a lesion dataset from %d normal frames -> %s", len(items), root)
    return write_lesion_dataset(items, root, **lesions)
