"""FETAL_PLANES_DB and HC18 readers on the real index and the real HC18 sample."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pandas as pd
import pytest

from fbad.data.readers import get_reader, read_dataset
from fbad.data.readers.fetal_planes_db import load_index, read_fetal_planes_db
from fbad.data.records import Label, Plane, Record, Split
from fbad.errors import DatasetError


@pytest.fixture(scope="module")
def fpdb_root(fpdb_index, tmp_path_factory):
    """The real index with stand-in (empty) image files for every row, so only file presence matters."""
    root = tmp_path_factory.mktemp("fpdb")
    shutil.copy(fpdb_index, root / fpdb_index.name)
    (root / "Images").mkdir()
    for name in load_index(fpdb_index)["Image_name"]:
        (root / "Images" / f"{name}.png").touch()
    return root


def test_real_index_brain_plane_counts(fpdb_root):
    recs = read_fetal_planes_db(fpdb_root).records
    counts = pd.Series([r.plane.value for r in recs]).value_counts().to_dict()
    assert counts == {"trans_thalamic": 1638, "trans_cerebellum": 714, "trans_ventricular": 597}
    assert all(r.label == Label.UNKNOWN for r in recs)
    assert all(r.path.name.endswith(".png") and r.path.is_file() for r in recs)


def test_real_index_official_split_is_patient_disjoint(fpdb_root):
    recs = read_fetal_planes_db(fpdb_root, planes=["trans_thalamic", "trans_cerebellum", "trans_ventricular",
                                                  "other", "not_a_brain"]).records
    assert len(recs) == 12400
    train = {r.patient_id for r in recs if r.split == Split.TRAIN}
    test = {r.patient_id for r in recs if r.split == Split.TEST}
    assert sum(r.split == Split.TRAIN for r in recs) == 7129
    assert train and test and not (train & test)
    assert len(train | test) == 1792


def test_missing_files_are_skipped_and_listed(fpdb_root, tmp_path):
    root = tmp_path / "fpdb"
    shutil.copytree(fpdb_root, root)
    gone = sorted((root / "Images").glob("Patient001[6-9]*_Plane*.png"))
    names = {p.stem for p in gone}
    for p in gone:
        p.unlink()
    res = read_fetal_planes_db(root)
    skipped_names = {p.split("/")[-1][:-4] for p, _ in res.skipped.rows}
    brain = load_index(root / "FETAL_PLANES_DB_data.csv")
    brain_gone = set(brain[brain.Brain_plane.isin(["Trans-thalamic", "Trans-cerebellum", "Trans-ventricular"])
                           & brain.Image_name.isin(names)].Image_name)
    assert brain_gone and skipped_names == brain_gone
    assert all(reason == "named in the index but the file is missing" for _, reason in res.skipped.rows)
    assert len(res.records) + len(res.skipped) == 2949


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("Image_name,Patient_num,Plane\nx,1,Other\n", "missing column"),
        ("Image_name;Patient_num;Plane;Brain_plane;Operator\nx;1;Other;Not A Brain;Op\n", "missing column"),
    ],
)
def test_index_with_wrong_columns(tmp_path, text, match):
    (tmp_path / "FETAL_PLANES_DB_data.csv").write_text(text)
    with pytest.raises(DatasetError, match=match) as err:
        read_fetal_planes_db(tmp_path)
    assert "FETAL_PLANES_DB_data.csv" in str(err.value)


def test_missing_root_and_index(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        read_fetal_planes_db(tmp_path / "nope")
    with pytest.raises(DatasetError, match="index file not found"):
        read_fetal_planes_db(tmp_path)


def test_hc18_sample(hc18_root):
    res = read_dataset({"name": "hc18", "root": str(hc18_root)})
    assert len(res.records) == 200 and not len(res.skipped)
    r = res.records[0]
    assert r.plane == Plane.TRANS_THALAMIC and r.label == Label.NORMAL
    assert r.head_mask_path is not None and r.head_mask_path.name == "003_HC_Annotation.png"
    assert r.pixel_size_mm == pytest.approx(0.091291168)
    assert r.extra["hc_mm"] == pytest.approx(69.0)
    assert len({x.patient_id for x in res.records}) == 200


def test_hc18_without_csv_and_empty(tmp_path, hc18_root):
    (tmp_path / "images").mkdir()
    shutil.copy(hc18_root / "images" / "003_HC.png", tmp_path / "images")
    res = get_reader("hc18")(tmp_path)
    assert len(res.records) == 1 and res.records[0].pixel_size_mm is None
    assert res.records[0].head_mask_path is None
    with pytest.raises(DatasetError, match="no NNN_HC.png"):
        get_reader("hc18")(tmp_path / "images" / "..", image_dir="nothing_here_dir_" )


def test_hc18_reads_a_subjects_further_images_and_lists_strays(tmp_path, hc18_root):
    """HC18 names a subject's second and third images NNN_2HC.png, NNN_3HC.png (a fifth of the full set)."""
    src = hc18_root / "images"
    (tmp_path / "images").mkdir()
    for name in ("010_HC", "010_2HC", "011_3HC"):
        shutil.copy(src / "003_HC.png", tmp_path / "images" / f"{name}.png")
    shutil.copy(src / "003_HC_Annotation.png", tmp_path / "images" / "010_2HC_Annotation.png")
    shutil.copy(src / "003_HC.png", tmp_path / "images" / "scan_0001.png")
    (tmp_path / "images" / "notes.txt").write_text("not an image")
    res = get_reader("hc18")(tmp_path)
    by_name = {r.path.name: r for r in res.records}
    assert sorted(by_name) == ["010_2HC.png", "010_HC.png", "011_3HC.png"]
    assert by_name["010_2HC.png"].patient_id == by_name["010_HC.png"].patient_id != by_name["011_3HC.png"].patient_id
    assert by_name["010_2HC.png"].head_mask_path.name == "010_2HC_Annotation.png"
    assert [(p.rsplit("/", 1)[-1], why) for p, why in res.skipped.rows] == [
        ("scan_0001.png", "not an HC18 image name (NNN_HC.png, NNN_2HC.png, ...)")]


def test_unknown_dataset():
    with pytest.raises(DatasetError, match="unknown dataset"):
        get_reader("imagenet")


def test_record_row_roundtrip(tmp_path):
    from fbad.data.records import HeadEllipse

    rec = Record(path=tmp_path / "a.png", patient_id="p1", plane=Plane.TRANS_CEREBELLUM, label=Label.ABNORMAL,
                 anomaly_type="arachnoid_cyst", split=Split.TEST, ellipse=HeadEllipse(1, 2, 3, 4, 5),
                 pixel_size_mm=0.2, severity=0.5)
    back = Record.from_row(rec.to_row())
    assert back == rec


def test_plane_parse():
    assert Plane.parse("Trans-thalamic") is Plane.TRANS_THALAMIC
    assert Plane.parse("Not A Brain") is Plane.NOT_BRAIN
    with pytest.raises(ValueError, match="unknown plane"):
        Plane.parse("coronal")


def test_phantom_reader_ground_truth(small_phantom):
    res = read_dataset({"name": "phantom", "root": str(small_phantom)})
    assert len(res.records) == 36
    planes = pd.Series([r.plane.value for r in res.records]).value_counts()
    assert set(planes) == {12}
    abnormal = [r for r in res.records if r.label == Label.ABNORMAL]
    assert abnormal and all(r.anomaly_type for r in abnormal)
    r = abnormal[0]
    img = cv2.imread(str(r.path), cv2.IMREAD_GRAYSCALE)
    ano = cv2.imread(str(r.anomaly_mask_path), cv2.IMREAD_GRAYSCALE)
    assert img.shape == ano.shape == (64, 64) and (ano > 0).any()
    assert r.ellipse is not None and r.pixel_size_mm > 0
    assert np.isfinite(r.severity)


def test_phantom_folder_name_follows_every_generation_setting():
    """Changing dataset.noise (or any generator setting) must not read the phantom made with the old one."""
    from fbad.config import compose

    default = compose("train").dataset.root
    assert default.endswith("/phantom_s256_n400_seed0")
    assert compose("train", ["dataset.noise=1.0"]).dataset.root == default  # a default given explicitly
    noisy = compose("train", ["dataset.noise=2.0"]).dataset.root
    other = {noisy, compose("train", ["dataset.severity_range=[0.5,1.0]"]).dataset.root,
             compose("train", ["+dataset.text_prob=0"]).dataset.root}
    assert len(other) == 3 and default not in other and all(r.startswith(default + "_") for r in other)
    assert compose("data_phantom", ["noise=2.0"]).out == noisy  # `fbad data phantom` writes where train reads


def test_phantom_with_other_settings_is_read_with_a_warning(small_phantom, caplog):
    res = read_dataset({"name": "phantom", "root": str(small_phantom), "n_per_plane": 12, "size": 64, "seed": 3,
                        "noise": 2.0})
    assert len(res.records) == 36
    assert "made with other settings: noise=1.0 (asked 2.0)" in caplog.text
