"""A lesion dataset as `fbad.lesions.write_lesion_dataset` writes it: real normal frames and lesioned copies of
some of them (`index.csv` + images, lesion masks, head masks).

Labels, anomaly kinds and masks come from the index; a lesioned copy keeps its source's patient and official
split, so a patient-level split keeps a frame and its copies on one side. The generator lives in
`fbad.lesions` (it needs a segmenter for frames without an outline); `fbad benchmark` writes the dataset on
first use.
"""

from __future__ import annotations

import csv
from pathlib import Path

from fbad.data.imageio import SkipLog
from fbad.data.readers import ReadResult
from fbad.data.readers.folder import check_root, stat_problem
from fbad.data.records import Label, Plane, Record, Split
from fbad.errors import DatasetError

INDEX = "index.csv"
_NUMBERS = ("size_frac", "size_px", "size_mm", "contrast_db", "distal_db")


def read_lesions(root: str | Path, **_: object) -> ReadResult:
    """Records of every image in the index; files that are missing are listed, not raised. Options that
    describe how the dataset was generated (sources, lesion settings) are ignored here."""
    base = check_root(root)
    index = base / INDEX
    if not index.is_file():
        raise DatasetError(f"{index} not found: not a lesion dataset (write one with fbad benchmark, or "
                           "fbad.lesions.write_lesion_dataset)")
    with open(index, newline="") as f:
        rows = list(csv.DictReader(f))
    records, skipped = [], SkipLog()
    for row in rows:
        path = base / row["path"]
        problem = stat_problem(path)
        if problem:
            skipped.add(path, problem)
            continue
        abnormal = row["label"] == Label.ABNORMAL.value
        extra: dict[str, object] = {"source_id": row["source_id"], "source_path": row["source_path"]}
        extra.update({k: float(row[k]) for k in _NUMBERS if row.get(k) not in (None, "")})
        if row.get("variant"):
            extra["variant"] = row["variant"]
        records.append(Record(
            path=path,
            patient_id=row["patient_id"],
            plane=Plane.parse(row.get("plane") or "unknown"),
            label=Label.ABNORMAL if abnormal else Label.NORMAL,
            split=Split(row.get("split") or "train"),
            anomaly_type=row.get("kind") or None,
            anomaly_mask_path=base / row["mask_path"] if row.get("mask_path") else None,
            pixel_size_mm=float(row["pixel_size_mm"]) if row.get("pixel_size_mm") else None,
            extra=extra,
        ))
    if not records:
        raise DatasetError(f"{index}: no readable image")
    return ReadResult(records=records, skipped=skipped)
