"""The Roboflow abnormalities reader and the generic folder reader, on tiny datasets written to tmp_path."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from fbad.data.readers import get_reader
from fbad.data.readers.folder import read_folder
from fbad.data.readers.roboflow import CLASSES, read_roboflow_abnormalities, source_image_id
from fbad.data.records import Label, Plane, Split
from fbad.errors import DatasetError


def _img(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 255, (12, 16), dtype=np.uint8)
    assert cv2.imwrite(str(path), img)
    return path


def _rf(original: str, ext: str = "jpg", h: str = "0a1b2c") -> str:
    """A file name as Roboflow writes it."""
    return f"{original}_{ext}.rf.{h}.jpg"


def _classes_csv(split_dir: Path, rows: list[tuple[str, list[str]]], classes=CLASSES) -> None:
    lines = ["filename," + ",".join(f" {c}" for c in classes)]  # Roboflow puts a space before each class
    for name, hot in rows:
        lines.append(name + "," + ",".join(" 1" if c in hot else " 0" for c in classes))
    (split_dir / "_classes.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture
def multiclass_export(tmp_path: Path) -> Path:
    root = tmp_path / "Classification of fetal brain abnormalities.v1i.multiclass"
    rows = {
        "train": [
            (_rf("normal-1"), ["normal"]),
            (_rf("normal-1_aug_0", "png", "ff00"), ["normal"]),
            (_rf("arachnoid-cyst-4"), ["arachnoid-cyst"]),
            (_rf("both-7"), ["mild-ventriculomegaly", "m-magna"]),
            (_rf("mixed-8"), ["normal", "encephalocele"]),
            (_rf("unlabelled-2"), []),
            (_rf("gone-3"), ["encephalocele"]),
        ],
        "valid": [(_rf("hydracenphaly-9"), ["hydracenphaly"])],
        "test": [(_rf("vein-of-galen-1"), ["vein-of-galen"]), (_rf("normal-5"), ["normal"])],
    }
    for split, entries in rows.items():
        d = root / split
        for i, (name, _) in enumerate(entries):
            if not name.startswith("gone"):
                _img(d / name, i)
        _classes_csv(d, entries)
    _img(root / "train" / _rf("stray-1"))  # an image the CSV does not list
    return tmp_path


def test_roboflow_multiclass_export(multiclass_export: Path) -> None:
    res = read_roboflow_abnormalities(multiclass_export)  # the export sits one folder down
    by_name = {r.path.name: r for r in res.records}
    assert len(res.records) == 8
    assert all(r.path.is_absolute() and r.plane is Plane.UNKNOWN for r in res.records)

    normal = by_name[_rf("normal-1")]
    assert (normal.label, normal.anomaly_type, normal.split) == (Label.NORMAL, None, Split.TRAIN)
    cyst = by_name[_rf("arachnoid-cyst-4")]
    assert (cyst.label, cyst.anomaly_type) == (Label.ABNORMAL, "arachnoid-cyst")
    assert by_name[_rf("both-7")].anomaly_type == "m-magna+mild-ventriculomegaly"  # column order
    mixed = by_name[_rf("mixed-8")]  # normal marked beside an anomaly: the anomaly wins
    assert (mixed.label, mixed.anomaly_type) == (Label.ABNORMAL, "encephalocele")
    valid = by_name[_rf("hydracenphaly-9")]
    assert (valid.split, valid.extra) == (Split.TRAIN, {"source_split": "valid"})
    assert by_name[_rf("vein-of-galen-1")].split is Split.TEST
    assert {r.extra["source_split"] for r in res.records} == {"train", "valid", "test"}

    # augmented copies of one source image share an id
    assert by_name[_rf("normal-1")].patient_id == by_name[_rf("normal-1_aug_0", "png", "ff00")].patient_id

    reasons = {Path(p).name: why for p, why in res.skipped.rows}
    assert reasons == {
        _rf("unlabelled-2"): "no class marked in _classes.csv line 7",
        _rf("gone-3"): "file not found",
        _rf("stray-1"): "not listed in _classes.csv",
    }


def test_roboflow_folder_export(tmp_path: Path) -> None:
    for split, cls, n in [("train", "normal", 2), ("train", "colphocephaly", 1), ("valid", "normal", 1),
                          ("test", "intracranial-hemorrdge", 2)]:
        for i in range(n):
            _img(tmp_path / split / cls / f"{cls}-{i}_png.rf.abc{i}.png", i)
    (tmp_path / "test" / "intracranial-hemorrdge" / "empty_jpg.rf.0.jpg").write_bytes(b"")
    _img(tmp_path / "train" / "loose.jpg")
    (tmp_path / "README.roboflow.txt").write_text("exported")

    res = read_roboflow_abnormalities(tmp_path)
    assert len(res.records) == 6
    counts = {(r.split, r.label, r.anomaly_type): 0 for r in res.records}
    for r in res.records:
        counts[(r.split, r.label, r.anomaly_type)] += 1
    assert counts == {
        (Split.TRAIN, Label.NORMAL, None): 3,
        (Split.TRAIN, Label.ABNORMAL, "colphocephaly"): 1,
        (Split.TEST, Label.ABNORMAL, "intracranial-hemorrdge"): 2,
    }
    assert sorted(why for _, why in res.skipped.rows) == ["empty file (0 bytes)", "not in a class folder"]
    # forcing the other export is refused with the file it wanted
    with pytest.raises(DatasetError, match="_classes.csv not found"):
        read_roboflow_abnormalities(tmp_path, export="multiclass")


def test_roboflow_structural_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        read_roboflow_abnormalities(tmp_path / "nope")
    with pytest.raises(DatasetError, match="not a Roboflow classification export"):
        read_roboflow_abnormalities(tmp_path)
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "_classes.csv").write_text("file, normal\nx.jpg, 1\n")
    with pytest.raises(DatasetError, match=r"_classes\.csv has no 'filename' column"):
        read_roboflow_abnormalities(tmp_path)
    (tmp_path / "train" / "_classes.csv").write_text("filename, normal\nx.jpg, 1\n")
    with pytest.raises(DatasetError, match="no usable images.*file not found"):
        read_roboflow_abnormalities(tmp_path)


def test_source_image_id() -> None:
    stem = "anold-chiari-malformation-16e_aug_0_png_jpg.rf.a3346cf82c525c565127a92c33301a29"
    assert source_image_id(stem) == "anold-chiari-malformation-16e"
    assert source_image_id("IMG_0042_jpg.rf.deadbeef") == "IMG_0042"
    assert source_image_id("plain") == "plain"


def test_folder_labels_classes_and_planes(tmp_path: Path) -> None:
    _img(tmp_path / "normal" / "n1.png")
    _img(tmp_path / "abnormal" / "a1.jpg")
    _img(tmp_path / "abnormal" / "ventriculomegaly" / "a2.jpeg")
    _img(tmp_path / "trans_thalamic" / "normal" / "tt1.bmp")
    _img(tmp_path / "Trans-cerebellum" / "cyst" / "tc1.tif")
    _img(tmp_path / "loose.png")
    (tmp_path / "notes.txt").write_text("not an image")  # a sidecar: ignored
    (tmp_path / "normal" / "scan.dcm").write_bytes(b"DICM")  # an input fbad cannot read: listed
    _img(tmp_path / ".thumbs" / "hidden.png")
    (tmp_path / "normal" / "empty.png").write_bytes(b"")

    res = read_folder(tmp_path)
    got = {r.path.name: (r.plane, r.label, r.anomaly_type) for r in res.records}
    assert got == {
        "n1.png": (Plane.UNKNOWN, Label.NORMAL, None),
        "a1.jpg": (Plane.UNKNOWN, Label.ABNORMAL, None),
        "a2.jpeg": (Plane.UNKNOWN, Label.ABNORMAL, "ventriculomegaly"),
        "tt1.bmp": (Plane.TRANS_THALAMIC, Label.NORMAL, None),
        "tc1.tif": (Plane.TRANS_CEREBELLUM, Label.ABNORMAL, "cyst"),
        "loose.png": (Plane.UNKNOWN, Label.UNKNOWN, None),
    }
    assert all(r.path.is_absolute() and r.patient_id == r.path.stem for r in res.records)
    assert [(Path(p).name, why.split(";")[0]) for p, why in res.skipped.rows] == [
        ("empty.png", "empty file (0 bytes)"), ("scan.dcm", "not a supported image type (.dcm")]

    flat = read_folder(tmp_path, recursive=False)
    assert [r.path.name for r in flat.records] == ["loose.png"]
    plain = read_folder(tmp_path, class_folders=False)
    assert {r.path.name: r.label for r in plain.records}["tc1.tif"] is Label.UNKNOWN


def test_folder_csv_index(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _img(data / "img" / "a.png")
    _img(data / "img" / "b.png")
    _img(data / "img" / "d.png")
    absolute = _img(tmp_path / "elsewhere" / "c.png")
    (data / "index.csv").write_text(
        "Path;Plane;Label;Patient_ID;comment\n"
        "img/a.png;Trans-thalamic;normal;p1;ok\n"
        f"{absolute};tv;abnormal;p2;\n"
        "img/b.png;;;;\n"
        "img/missing.png;trans_thalamic;normal;p3;\n"
        "img/a.png;trans_thalamic;normal;p1;again\n"
        "img/d.png;sideways;normal;p4;\n"
        "img/d.png;tt;maybe;p4;\n"
    )
    res = read_folder(data, csv="index.csv")
    got = [(r.path, r.plane, r.label, r.patient_id) for r in res.records]
    assert got == [
        ((data / "img" / "a.png").resolve(), Plane.TRANS_THALAMIC, Label.NORMAL, "p1"),
        (absolute.resolve(), Plane.TRANS_VENTRICULAR, Label.ABNORMAL, "p2"),
        ((data / "img" / "b.png").resolve(), Plane.UNKNOWN, Label.UNKNOWN, "b"),
    ]
    reasons = [(Path(p).name, why) for p, why in res.skipped.rows]
    assert reasons[:2] == [("missing.png", "file not found"), ("a.png", "duplicate row")]
    assert reasons[2][0] == "d.png" and "line 7: unknown plane 'sideways'" in reasons[2][1]
    assert reasons[3] == ("d.png", "line 8: unknown label 'maybe' (normal/abnormal)")

    # the CSV can also be given by absolute path, and a comma-separated one with only a path column
    (tmp_path / "paths.csv").write_text("path\ndata/img/a.png\n")
    assert len(read_folder(tmp_path, csv=tmp_path / "paths.csv").records) == 1


def test_folder_structural_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        read_folder(tmp_path / "nope")
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(DatasetError, match="no usable images in folder"):
        read_folder(tmp_path)
    (tmp_path / "bad.csv").write_text("file,label\na.png,normal\n")
    with pytest.raises(DatasetError, match=r"bad\.csv has no 'path' column"):
        read_folder(tmp_path, csv="bad.csv")
    with pytest.raises(DatasetError, match="not found"):
        read_folder(tmp_path, csv="absent.csv")
    (tmp_path / "gone.csv").write_text("path\nx.png\ny.png\n")
    with pytest.raises(DatasetError, match="all 2 entries skipped"):
        read_folder(tmp_path, csv="gone.csv")


def test_readers_are_registered(tmp_path: Path) -> None:
    _img(tmp_path / "normal" / "n.png")
    res = get_reader("folder")(root=tmp_path, name_of_other_option="ignored")
    assert res.records[0].label is Label.NORMAL
    assert get_reader("roboflow_abnormalities") is read_roboflow_abnormalities


def test_folder_split_and_organisation_folders_are_not_classes(tmp_path):
    _img(tmp_path / "train" / "trans_thalamic" / "normal" / "a.png")
    _img(tmp_path / "test" / "trans_thalamic" / "cyst" / "b.png")
    _img(tmp_path / "val" / "images" / "c.png")
    got = {r.path.name: (r.plane, r.label, r.anomaly_type, r.split) for r in read_folder(tmp_path).records}
    assert got == {
        "a.png": (Plane.TRANS_THALAMIC, Label.NORMAL, None, Split.TRAIN),
        "b.png": (Plane.TRANS_THALAMIC, Label.ABNORMAL, "cyst", Split.TEST),
        "c.png": (Plane.UNKNOWN, Label.UNKNOWN, None, Split.TRAIN),
    }
