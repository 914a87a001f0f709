"""Roboflow `normal` frames joined to the FETAL_PLANES_DB index: plane, patient and scanner of each frame.

Expected counts are computed here from the two CSVs with the plain `csv` module, not with the reader's code.
"""

from __future__ import annotations

import csv
import logging
import re
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest

from fbad.config import compose
from fbad.data.indexing import index_frame
from fbad.data.readers import read_dataset
from fbad.data.readers.roboflow import read_roboflow_abnormalities
from fbad.data.records import Label, Plane
from fbad.data.splits import split_records

PLANES = {"Trans-thalamic": "trans_thalamic", "Trans-cerebellum": "trans_cerebellum",
          "Trans-ventricular": "trans_ventricular", "Other": "other"}


def _fpdb_rows(index: Path) -> dict[str, dict[str, str]]:
    with index.open(newline="") as fh:
        rows = [{k.strip(): v.strip() for k, v in row.items()} for row in csv.DictReader(fh, delimiter=";")]
    return {r["Image_name"]: r for r in rows}


def _normal_files(root: Path) -> list[str]:
    """File names marked `normal` in the export's _classes.csv files."""
    names = []
    for classes in sorted(root.glob("*/_classes.csv")):
        with classes.open(newline="") as fh:
            reader = csv.reader(fh)
            header = [h.strip() for h in next(reader)]
            col = header.index("normal")
            names += [row[0].strip() for row in reader if row and row[col].strip() == "1"]
    return names


@pytest.fixture(scope="module")
def real(fpdb_index: Path) -> dict:
    """The shared index (skips when absent, see conftest) and the Roboflow part beside it."""
    index = fpdb_index
    root = index.parents[1] / "roboflow_abnormalities"
    if not root.is_dir():
        pytest.skip(f"reference data not found at {root}")
    return {"index": index, "root": root, "fpdb": _fpdb_rows(index), "normal_files": _normal_files(root),
            "read": read_roboflow_abnormalities(root, fpdb_index=index)}


def test_real_normal_frames_all_join(real, caplog) -> None:
    source = {f: re.match(r"Patient\d+_Plane\d+_\d+_of_\d+", f) for f in real["normal_files"]}
    assert all(source.values()), [f for f, m in source.items() if not m]
    source = {f: m.group(0) for f, m in source.items()}
    assert all(s in real["fpdb"] for s in source.values())  # independently: every normal frame is in the index
    normal = [r for r in real["read"].records if r.label is Label.NORMAL]
    assert sorted(r.path.name for r in normal) == sorted(real["normal_files"])
    assert all(r.extra["fpdb_image"] == source[r.path.name] for r in normal)
    assert len(normal) == 169  # measured on the shared set: all 169 join, none is left out

    with caplog.at_level(logging.INFO, logger="fbad.data.readers.roboflow"):
        read_roboflow_abnormalities(real["root"], fpdb_index=real["index"])
    assert f"all {len(normal)} normal frames joined" in caplog.text


def test_real_planes_and_scanners_match_the_index(real) -> None:
    fpdb = real["fpdb"]
    files = real["normal_files"]
    src = {f: re.match(r"Patient\d+_Plane\d+_\d+_of_\d+", f).group(0) for f in files}
    expected = Counter(PLANES[fpdb[src[f]]["Brain_plane"]] for f in files)
    normal = [r for r in real["read"].records if r.label is Label.NORMAL]
    assert Counter(str(r.plane) for r in normal) == expected
    assert expected == {"trans_thalamic": 106, "trans_ventricular": 30, "trans_cerebellum": 27, "other": 6}
    assert Counter(r.extra["us_machine"] for r in normal) == Counter(fpdb[src[f]]["US_Machine"] for f in files)
    abnormal = [r for r in real["read"].records if r.label is Label.ABNORMAL]
    assert len(abnormal) == 974 and all(r.plane is Plane.UNKNOWN and "fpdb_image" not in r.extra for r in abnormal)


def test_real_patients_group_copies_and_frames_of_one_patient(real) -> None:
    fpdb = real["fpdb"]
    normal = [r for r in real["read"].records if r.label is Label.NORMAL]
    assert all(r.patient_id == f"fpdb{fpdb[r.extra['fpdb_image']]['Patient_num']}" for r in normal)
    by_source: dict[str, set[str]] = defaultdict(set)
    for r in normal:
        by_source[r.extra["fpdb_image"]].add(r.patient_id)
    copies = Counter(r.extra["fpdb_image"] for r in normal)
    assert max(copies.values()) > 1  # the set does hold augmented copies of one source frame
    assert all(len(ids) == 1 for ids in by_source.values())
    # without the index the patient comes from the name: the same groups
    plain = {r.path: r for r in read_roboflow_abnormalities(real["root"]).records}
    assert all(plain[r.path].patient_id == r.patient_id and plain[r.path].plane is Plane.UNKNOWN for r in normal)
    # and fbad's split keeps one FETAL_PLANES_DB patient on one side
    splits = split_records(real["read"].records)
    side = defaultdict(set)
    for name in ("train", "val", "test"):
        for r in getattr(splits, name):
            side[r.patient_id].add(name)
    assert all(len(s) == 1 for p, s in side.items() if p.startswith("fpdb"))


# --- a tiny synthetic export, end to end through the config ---------------------------------------------


def _jpg(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 255, (8, 8), dtype=np.uint8))


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Path, Path]:
    files = {
        "train": [("Patient00001_Plane3_1_of_2_png_jpg.rf.a1.jpg", "normal"),
                  ("Patient00001_Plane3_1_of_2_aug_0_png_jpg.rf.b2.jpg", "normal"),
                  ("Patient00002_Plane3_1_of_1_png_jpg.rf.c3.jpg", "normal"),
                  ("Patient00009_Plane3_1_of_1_png_jpg.rf.d4.jpg", "normal"),  # not in the index
                  ("hydracenphaly-3_aug_2_png_jpg.rf.e5.jpg", "hydracenphaly")],
        "valid": [("Patient00001_Plane3_2_of_2_aug_4_png_jpg.rf.f6.jpg", "normal")],
        "test": [("normal-7_jpg.rf.a7.jpg", "normal"), ("encephalocele-1_jpg.rf.b8.jpg", "encephalocele")],
    }
    classes = ["hydracenphaly", "encephalocele", "normal"]
    root = tmp_path / "rf"
    for split, entries in files.items():
        lines = ["filename," + ",".join(f" {c}" for c in classes)]
        for i, (name, cls) in enumerate(entries):
            _jpg(root / split / name, i)
            lines.append(name + "," + ",".join(" 1" if c == cls else " 0" for c in classes))
        (root / split / "_classes.csv").write_text("\n".join(lines) + "\n")
    index = tmp_path / "FETAL_PLANES_DB_data.csv"
    index.write_text(
        "Image_name;Patient_num;Plane;Brain_plane;Operator;US_Machine;Train \n"
        "Patient00001_Plane3_1_of_2;1;Fetal brain;Trans-cerebellum;Op. 1;Voluson E6;1 \n"
        "Patient00001_Plane3_2_of_2;1;Fetal brain;Trans-ventricular;Op. 1;Voluson E6;1 \n"
        "Patient00002_Plane3_1_of_1;2;Fetal brain;Other;Other;Aloka;0 \n"
        "Patient00003_Plane1_1_of_1;3;Other;Not A Brain;Other;Aloka;0 \n"
    )
    return root, index


def test_tiny_export_through_the_data_index_config(tiny, caplog) -> None:
    root, index = tiny
    cfg = compose("data_index", ["dataset=roboflow_abnormalities", f"dataset.root={root}",
                                 f"dataset.fpdb_index={index}"])
    with caplog.at_level(logging.INFO, logger="fbad.data.readers.roboflow"):
        res = read_dataset(cfg.dataset)
    assert "4 of 6 normal frames joined" in caplog.text and "2 not in it" in caplog.text
    got = {r.path.name.split("_png")[0].split("_jpg")[0]: r for r in res.records}
    assert {k: (str(r.plane), r.patient_id) for k, r in got.items()} == {
        "Patient00001_Plane3_1_of_2": ("trans_cerebellum", "fpdb1"),
        "Patient00001_Plane3_1_of_2_aug_0": ("trans_cerebellum", "fpdb1"),
        "Patient00001_Plane3_2_of_2_aug_4": ("trans_ventricular", "fpdb1"),
        "Patient00002_Plane3_1_of_1": ("other", "fpdb2"),
        "Patient00009_Plane3_1_of_1": ("unknown", "fpdb9"),  # not in the index: patient from its name
        "hydracenphaly-3_aug_2": ("unknown", "hydracenphaly-3"),
        "normal-7": ("unknown", "normal-7"),
        "encephalocele-1": ("unknown", "encephalocele-1"),
    }
    assert got["Patient00001_Plane3_2_of_2_aug_4"].extra == {
        "source_split": "valid", "fpdb_image": "Patient00001_Plane3_2_of_2", "us_machine": "Voluson E6"}
    assert got["Patient00002_Plane3_1_of_1"].extra["us_machine"] == "Aloka"
    assert got["Patient00009_Plane3_1_of_1"].extra == {"source_split": "train"}  # today's behaviour otherwise

    df, _ = index_frame(cfg.dataset)  # `fbad data index`: one patient never on both sides
    assert df.groupby("patient_id")["fbad_split"].nunique().max() == 1
    assert set(df.loc[df["patient_id"] == "fpdb1", "plane"]) == {"trans_cerebellum", "trans_ventricular"}


def test_tiny_export_without_the_index_is_off_by_default(tiny) -> None:
    root, _ = tiny
    cfg = compose("data_index", ["dataset=roboflow_abnormalities", f"dataset.root={root}"])
    assert cfg.dataset.fpdb_index is None
    res = read_dataset(cfg.dataset)
    assert all(r.plane is Plane.UNKNOWN and set(r.extra) == {"source_split"} for r in res.records)
    assert {r.patient_id for r in res.records if r.path.name.startswith("Patient00001")} == {"fpdb1"}


def test_missing_index_is_a_dataset_error(tiny, tmp_path) -> None:
    from fbad.data.readers import DatasetError

    with pytest.raises(DatasetError, match="index file not found"):
        read_roboflow_abnormalities(tiny[0], fpdb_index=tmp_path / "nope.csv")
