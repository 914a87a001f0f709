"""Reader for the public Roboflow "fetal brain abnormalities ultrasound" classification set.

Two exports exist and are told apart per split folder: the multiclass export (`<split>/_classes.csv`
with a `filename` column and one-hot class columns, names often with a leading space) and the folder
export (`<split>/<class>/*.jpg`). Roboflow's split `valid` is folded into TRAIN (fbad makes its own
validation split by patient) and remembered in `extra["source_split"]`.

The set has no patient ids. Roboflow renames every file `<original>_<ext>.rf.<hash>.jpg` and its
author uploaded pre-augmented copies (`..._aug_3_png_jpg.rf...`), so the id used for grouping is the
original name with those decorations removed: all copies of one source image share it. Its `normal`
frames are FETAL_PLANES_DB brain images (`PatientNNNNN_PlaneK_i_of_n`): those are grouped by that patient
(`fpdbNNNNN`, as the FETAL_PLANES_DB reader names it), so one patient's frames stay on one side of fbad's
split, and with `fpdb_index` (the FETAL_PLANES_DB_data.csv) they also get their plane and scanner from the index.
"""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path
from typing import Any

from fbad.data.imageio import SkipLog
from fbad.data.readers import ReadResult
from fbad.data.readers.fetal_planes_db import load_index, plane_of
from fbad.data.readers.folder import check_root, ignore_options, stat_problem
from fbad.data.records import Label, Plane, Record, Split
from fbad.errors import DatasetError

log = logging.getLogger(__name__)

CLASSES: tuple[str, ...] = (
    "anold-chiari-malformation",
    "arachnoid-cyst",
    "cerebellah-hypoplasia",
    "colphocephaly",
    "encephalocele",
    "holoprosencephaly",
    "hydracenphaly",
    "intracranial-hemorrdge",
    "intracranial-tumor",
    "m-magna",
    "mild-ventriculomegaly",
    "moderate-ventriculomegaly",
    "normal",
    "polencephaly",
    "severe-ventriculomegaly",
    "vein-of-galen",
)  # original spellings, typos included: they are the class names users see in the export
NORMAL_CLASS = "normal"
CLASSES_CSV = "_classes.csv"
IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png"})

# Roboflow split folder -> (official split, source_split tag)
_SPLITS: dict[str, tuple[Split, str]] = {
    "train": (Split.TRAIN, "train"),
    "valid": (Split.TRAIN, "valid"),
    "val": (Split.TRAIN, "valid"),
    "validation": (Split.TRAIN, "valid"),
    "test": (Split.TEST, "test"),
}
_RF_SUFFIX = re.compile(r"\.rf\.[0-9a-zA-Z]+$")
_EXT_TAIL = re.compile(r"(?:_(?:jpe?g|png|bmp|tiff?))+$", re.IGNORECASE)
_AUG_TAIL = re.compile(r"_aug_\d+$", re.IGNORECASE)
_FPDB_NAME = re.compile(r"^Patient(\d+)_")  # FETAL_PLANES_DB names: PatientNNNNN_PlaneK_i_of_n


def source_image_id(stem: str) -> str:
    """'hydracenphaly-3_aug_2_png_jpg.rf.0a1b' -> 'hydracenphaly-3': the name before Roboflow's renaming."""
    name = _RF_SUFFIX.sub("", stem)
    name = _EXT_TAIL.sub("", name)
    return _AUG_TAIL.sub("", name) or stem


def patient_of(source_id: str) -> str:
    """'Patient00710_Plane3_1_of_6' -> 'fpdb710' (a FETAL_PLANES_DB patient); any other source id is its own
    patient: the set has no patient ids, so its copies are the only group known."""
    m = _FPDB_NAME.match(source_id)
    return f"fpdb{int(m.group(1))}" if m else source_id


def read_roboflow_abnormalities(
    root: str | Path, export: str = "auto", fpdb_index: str | Path | None = None, **opts: Any
) -> ReadResult:
    """Read either Roboflow export; `export` is 'auto', 'multiclass' or 'folder'.

    `fpdb_index` (path to FETAL_PLANES_DB_data.csv, None = off) gives the `normal` frames found in it their
    plane, patient `fpdb<Patient_num>` and `extra` fpdb_image / us_machine; abnormal frames stay UNKNOWN.
    """
    ignore_options("read_roboflow_abnormalities", opts)
    if export not in ("auto", "multiclass", "folder"):
        raise DatasetError(f"unknown roboflow export {export!r}; expected 'auto', 'multiclass' or 'folder'")
    base = _export_root(check_root(root))
    records: list[Record] = []
    skipped = SkipLog()
    for split_dir in sorted(p for p in base.iterdir() if p.is_dir() and p.name.lower() in _SPLITS):
        split, source = _SPLITS[split_dir.name.lower()]
        multiclass = (split_dir / CLASSES_CSV).is_file()
        if export == "multiclass" and not multiclass:
            raise DatasetError(f"{split_dir / CLASSES_CSV} not found (export='multiclass')")
        if multiclass and export != "folder":
            found = _read_multiclass(split_dir, skipped)
        else:
            found = _read_class_folders(split_dir, skipped)
        for path, classes in found:
            records.append(_record(path, classes, split, source))
    if not records:
        detail = f"; all {len(skipped)} entries skipped, first: {skipped.rows[0]}" if skipped else ""
        raise DatasetError(f"no usable images in roboflow export {base}{detail}")
    if fpdb_index is not None:
        _join_fpdb(records, Path(fpdb_index).expanduser())
    return ReadResult(records=records, skipped=skipped)


def _join_fpdb(records: list[Record], index_path: Path) -> None:
    """Plane, patient and scanner of the normal frames from the FETAL_PLANES_DB index; logs the join counts."""
    df = load_index(index_path)
    rows = dict(zip(df["Image_name"], zip(df["Patient_num"], df["Plane"], df["Brain_plane"], df["US_Machine"],
                                          strict=True), strict=True))
    normal = [r for r in records if r.label is Label.NORMAL]
    missing: list[str] = []
    for r in normal:
        name = source_image_id(r.path.stem)
        if name not in rows:
            missing.append(r.path.name)
            continue
        patient, plane, brain_plane, machine = rows[name]
        r.patient_id, r.plane = f"fpdb{int(patient) if patient.isdigit() else patient}", plane_of(plane, brain_plane)
        r.extra.update(fpdb_image=name, us_machine=machine)
    joined = len(normal) - len(missing)
    if missing:
        log.warning("roboflow: %d of %d normal frames joined to %s; %d not in it (plane unknown), e.g. %s",
                    joined, len(normal), index_path, len(missing), missing[:3])
    else:
        log.info("roboflow: all %d normal frames joined to %s", len(normal), index_path)


def _export_root(root: Path) -> Path:
    """The folder holding train/valid/test: the root itself or its only subfolder (unzipped exports nest)."""

    def has_splits(p: Path) -> bool:
        return any(c.is_dir() and c.name.lower() in _SPLITS for c in p.iterdir())

    if has_splits(root):
        return root
    nested = [c for c in root.iterdir() if c.is_dir() and not c.name.startswith(".") and has_splits(c)]
    if len(nested) == 1:
        return nested[0]
    raise DatasetError(
        f"{root} is not a Roboflow classification export: expected split folders "
        f"{sorted(set(_SPLITS))} (each with {CLASSES_CSV} or one folder per class)"
        + (f"; several candidates inside: {[c.name for c in nested]}" if nested else "")
    )


def _record(path: Path, classes: list[str], split: Split, source: str) -> Record:
    abnormal = [c for c in classes if c.lower() != NORMAL_CLASS]
    return Record(
        path=path,
        patient_id=patient_of(source_image_id(path.stem)),
        plane=Plane.UNKNOWN,
        label=Label.ABNORMAL if abnormal else Label.NORMAL,
        anomaly_type="+".join(abnormal) if abnormal else None,
        split=split,
        extra={"source_split": source},
    )


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".")
    )


def _read_multiclass(split_dir: Path, skipped: SkipLog) -> list[tuple[Path, list[str]]]:
    index = split_dir / CLASSES_CSV
    with index.open(newline="", encoding="utf-8-sig") as fh:
        rows = [r for r in csv.reader(fh) if any(c.strip() for c in r)]
    if not rows:
        raise DatasetError(f"{index} is empty")
    header = [h.strip() for h in rows[0]]
    if "filename" not in header:
        raise DatasetError(f"{index} has no 'filename' column (columns: {rows[0]})")
    name_col = header.index("filename")
    class_cols = [(i, h) for i, h in enumerate(header) if i != name_col and h]
    if not class_cols:
        raise DatasetError(f"{index} has no class columns beside 'filename'")

    found: list[tuple[Path, list[str]]] = []
    listed: set[str] = set()
    for lineno, row in enumerate(rows[1:], start=2):
        name = row[name_col].strip() if name_col < len(row) else ""
        path = split_dir / name
        if not name:
            skipped.add(f"{index}:{lineno}", "empty filename")
            continue
        if name in listed:
            skipped.add(path, f"duplicate row in {CLASSES_CSV} (line {lineno})")
            continue
        listed.add(name)
        try:
            hot = [h for i, h in class_cols if i < len(row) and float(row[i].strip() or 0) > 0.5]
        except ValueError:
            skipped.add(path, f"non-numeric class value in {CLASSES_CSV} line {lineno}")
            continue
        problem = stat_problem(path) or (None if hot else f"no class marked in {CLASSES_CSV} line {lineno}")
        if problem:
            skipped.add(path, problem)
            continue
        found.append((path.resolve(), hot))
    for path in _images_in(split_dir):
        if path.name not in listed:
            skipped.add(path.resolve(), f"not listed in {CLASSES_CSV}")
    return found


def _read_class_folders(split_dir: Path, skipped: SkipLog) -> list[tuple[Path, list[str]]]:
    found: list[tuple[Path, list[str]]] = []
    for path in _images_in(split_dir):
        skipped.add(path.resolve(), "not in a class folder")
    for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in _images_in(class_dir):
            problem = stat_problem(path)
            if problem:
                skipped.add(path.resolve(), problem)
            else:
                found.append((path.resolve(), [class_dir.name]))
    return found
