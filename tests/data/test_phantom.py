"""The synthetic phantom: determinism, ground-truth consistency, anomalies, and the on-disk layout."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from fbad.data.phantom import (
    ANOMALY_TYPES,
    GT_COLUMNS,
    INDEX_HEADER,
    VALID_PLANES,
    PhantomConfig,
    generate_sample,
    phantom_grid,
    valid_types,
    write_phantom,
)
from fbad.data.readers.fetal_planes_db import read_fetal_planes_db
from fbad.data.records import BRAIN_PLANES, HeadEllipse, Plane, Split

CFG = PhantomConfig(size=128)
QUIET = PhantomConfig(size=128, text_prob=0.0, caliper_prob=0.0)


def ellipse_mask(e: HeadEllipse, size: int, grow: float = 0.0) -> np.ndarray:
    m = np.zeros((size, size), np.uint8)
    cv2.ellipse(m, ((e.cx, e.cy), (2 * (e.a + grow), 2 * (e.b + grow)), e.angle_deg), 1, -1)
    return m.astype(bool)


def test_same_seed_same_bytes_and_different_seed_differs() -> None:
    a = generate_sample(Plane.TRANS_THALAMIC, 7, CFG, "echogenic_mass", 0.5)
    b = generate_sample(Plane.TRANS_THALAMIC, 7, CFG, "echogenic_mass", 0.5)
    c = generate_sample(Plane.TRANS_THALAMIC, 8, CFG, "echogenic_mass", 0.5)
    for name in ("image", "clean", "skull_mask", "brain_mask", "anomaly_mask"):
        assert getattr(a, name).tobytes() == getattr(b, name).tobytes(), name
    assert a.ellipse == b.ellipse and a.pixel_size_mm == b.pixel_size_mm
    assert a.image.tobytes() != c.image.tobytes()
    assert a.ellipse != c.ellipse


def test_sample_types_and_ranges() -> None:
    s = generate_sample("trans_cerebellum", 3, CFG)
    assert s.image.dtype == np.uint8 and s.image.shape == (128, 128)
    assert s.clean.dtype == np.float32 and s.clean.min() >= 0.0 and s.clean.max() <= 1.0
    assert s.skull_mask.dtype == bool and s.brain_mask.dtype == bool and s.anomaly_mask.dtype == bool
    assert s.plane is Plane.TRANS_CEREBELLUM and s.anomaly_type is None and s.severity is None
    assert 0.1 < s.pixel_size_mm < 2.0  # 128 px across 10-20 cm of depth


@pytest.mark.parametrize("plane", BRAIN_PLANES)
def test_masks_are_consistent_with_the_head_ellipse(plane: Plane) -> None:
    for seed in range(4):
        s = generate_sample(plane, seed, QUIET)
        head = ellipse_mask(s.ellipse, 128)
        assert not (s.skull_mask & s.brain_mask).any()
        assert s.brain_mask.sum() > 0.5 * head.sum()
        assert not (s.brain_mask & ~ellipse_mask(s.ellipse, 128, grow=1.0)).any()  # brain inside the outline
        union = s.skull_mask | s.brain_mask
        iou = (union & head).sum() / (union | head).sum()
        assert iou > 0.95
        # the bone is the ring just inside the outline: its pixels lie within a few pixels of the ellipse
        inner = ellipse_mask(s.ellipse, 128, grow=-0.15 * s.ellipse.b)
        assert (s.skull_mask & inner).sum() < 0.02 * s.skull_mask.sum()
        # and it is bright in the clean image, brighter than the brain
        assert s.clean[s.skull_mask].mean() > s.clean[s.brain_mask].mean() + 0.15


def test_fan_is_black_outside_and_head_inside_it() -> None:
    for seed in range(6):
        s = generate_sample(BRAIN_PLANES[seed % 3], seed, QUIET)
        assert not s.image[~s.fov_mask].any()
        assert not s.clean[~s.fov_mask].any()
        assert s.image[s.fov_mask].mean() > 20
        assert s.fov_mask[0, 0] == s.fov_mask[0, -1] == False  # noqa: E712 - top corners are outside
        assert (s.skull_mask & ~s.fov_mask).sum() == 0


def test_noise_is_speckle_around_the_clean_image() -> None:
    clean_cfg = PhantomConfig(size=128, noise=0.0, text_prob=0.0, caliper_prob=0.0)
    quiet = generate_sample(Plane.TRANS_VENTRICULAR, 3, clean_cfg)
    assert np.array_equal(quiet.image, np.round(quiet.clean * 255).astype(np.uint8))
    spreads = []
    for noise in (0.5, 1.0, 2.0):
        s = generate_sample(Plane.TRANS_VENTRICULAR, 3, PhantomConfig(size=128, noise=noise, text_prob=0.0,
                                                                         caliper_prob=0.0))
        assert s.clean.tobytes() == quiet.clean.tobytes()
        resid = s.image[s.brain_mask].astype(np.float32) - 255 * s.clean[s.brain_mask]
        assert abs(resid.mean()) < 0.15 * resid.std() + 3  # speckle is centred on the clean image
        spreads.append(resid.std())
    assert spreads[0] < spreads[1] < spreads[2]


def test_text_and_calipers_change_only_the_image() -> None:
    plain = generate_sample(Plane.TRANS_THALAMIC, 2, QUIET)
    marked = generate_sample(Plane.TRANS_THALAMIC, 2, PhantomConfig(size=128, text_prob=1.0, caliper_prob=1.0))
    assert (plain.image != marked.image).sum() > 30
    assert plain.clean.tobytes() == marked.clean.tobytes()
    assert plain.skull_mask.tobytes() == marked.skull_mask.tobytes()


def test_valid_planes_cover_every_type() -> None:
    assert set(VALID_PLANES) == set(ANOMALY_TYPES)
    assert valid_types(Plane.TRANS_THALAMIC) == tuple(t for t in ANOMALY_TYPES if t not in
                                                       ("cerebellar_hypoplasia", "posterior_fossa_cyst"))
    assert "ventriculomegaly" not in valid_types(Plane.TRANS_CEREBELLUM)
    assert "posterior_fossa_cyst" in valid_types("trans_cerebellum")


@pytest.mark.parametrize("kind", ANOMALY_TYPES)
def test_every_anomaly_generates_on_its_planes_and_is_refused_elsewhere(kind: str) -> None:
    for plane in BRAIN_PLANES:
        if plane not in VALID_PLANES[kind]:
            with pytest.raises(ValueError, match="does not show on plane"):
                generate_sample(plane, 1, QUIET, kind, 0.7)
            continue
        normal = generate_sample(plane, 1, QUIET)
        s = generate_sample(plane, 1, QUIET, kind, 0.7)
        assert s.anomaly_type == kind and s.severity == pytest.approx(0.7) and s.label.value == "abnormal"
        assert s.anomaly_mask.sum() > 20, (kind, plane)
        # the lesion lies in the head: the normal head or (microcephaly) the shrunken one
        heads = ellipse_mask(normal.ellipse, 128, 2.0) | ellipse_mask(s.ellipse, 128, 2.0)
        assert (s.anomaly_mask & heads).sum() >= 0.97 * s.anomaly_mask.sum(), (kind, plane)
        # visible at this severity: the clean image changes where the mask says
        diff = np.abs(s.clean - normal.clean)
        assert diff[s.anomaly_mask].mean() > 0.08, (kind, plane)
        assert diff[s.anomaly_mask].mean() > 4 * diff[~s.anomaly_mask & s.brain_mask & normal.brain_mask].mean()


def test_normal_images_have_an_empty_anomaly_mask() -> None:
    for seed in range(3):
        for plane in BRAIN_PLANES:
            s = generate_sample(plane, seed, QUIET)
            assert not s.anomaly_mask.any() and s.label.value == "normal"


@pytest.mark.parametrize("kind", ANOMALY_TYPES)
def test_severity_grows_the_anomaly(kind: str) -> None:
    plane = VALID_PLANES[kind][-1]
    normal = generate_sample(plane, 4, QUIET)
    area, change = [], []
    for sev in (0.2, 0.6, 1.0):
        s = generate_sample(plane, 4, QUIET, kind, sev)
        area.append(int(s.anomaly_mask.sum()))
        change.append(float(np.abs(s.clean - normal.clean).sum()))
    assert area[0] > 0
    assert change[0] < change[1] < change[2], (kind, change)
    assert area[0] < area[2], (kind, area)


def test_severity_defaults_to_the_config_range() -> None:
    cfg = PhantomConfig(size=128, severity_range=(0.4, 0.5))
    s = generate_sample(Plane.TRANS_VENTRICULAR, 5, cfg, "arachnoid_cyst")
    assert s.severity is not None and 0.4 <= s.severity <= 0.5


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown"):
        PhantomConfig(anomaly_types=("not_a_thing",))
    with pytest.raises(ValueError, match="severity_range"):
        PhantomConfig(severity_range=(0.5, 1.5))
    with pytest.raises(ValueError, match="unknown anomaly"):
        generate_sample(Plane.TRANS_THALAMIC, 0, CFG, "nope", 0.5)
    with pytest.raises(ValueError, match="draws"):
        generate_sample(Plane.OTHER, 0, CFG)
    assert PhantomConfig(anomaly_types=["microcephaly"], severity_range=[0.1, 0.2]).anomaly_types == ("microcephaly",)


def _read_index(path: Path) -> list[str]:
    return path.read_text().split("\n")


def test_write_phantom_layout_and_index_format(tmp_path: Path) -> None:
    cfg = PhantomConfig(size=128, anomaly_fraction=0.5)
    out = write_phantom(tmp_path / "ph", 6, cfg, seed=3, workers=1, progress=False)
    lines = _read_index(out / "FETAL_PLANES_DB_data.csv")
    assert lines[0] == INDEX_HEADER == "Image_name;Patient_num;Plane;Brain_plane;Operator;US_Machine;Train "
    assert lines[-1] == ""  # file ends with a newline
    rows = [ln.split(";") for ln in lines[1:-1]]
    assert len(rows) == 18
    patients: dict[str, list[list[str]]] = {}
    for name, pid, plane, brain_plane, op, machine, train in rows:
        assert (out / "Images" / f"{name}.png").is_file()
        assert plane == "Fetal brain" and op == "Op. phantom" and machine == "Phantom"
        assert brain_plane in ("Trans-thalamic", "Trans-cerebellum", "Trans-ventricular")
        assert train in ("1 ", "0 ")  # a trailing space after every Train value, as in FETAL_PLANES_DB
        assert int(pid) > 0 and name.startswith(f"Patient{int(pid):05d}_Plane3_")
        patients.setdefault(pid, []).append([name, train])
    for members in patients.values():
        assert 1 <= len(members) <= 4
        assert len({t for _, t in members}) == 1  # split by patient
        assert all(n.endswith(f"_of_{len(members)}") for n, _ in members)
    trains = [m[0][1] for m in patients.values()]
    assert "0 " in trains and "1 " in trains

    with open(out / "ground_truth.csv", newline="") as f:
        gt = list(csv.DictReader(f))
    assert tuple(gt[0].keys()) == GT_COLUMNS
    assert [g["Image_name"] for g in gt] == [r[0] for r in rows]
    for g in gt:
        abnormal = g["label"] == "abnormal"
        assert g["label"] in ("normal", "abnormal")
        assert bool(g["anomaly_type"]) == abnormal and bool(g["severity"]) == abnormal
        anomaly = cv2.imread(str(out / "ground_truth" / f"{g['Image_name']}_anomaly.png"), cv2.IMREAD_UNCHANGED)
        assert anomaly.dtype == np.uint8 and set(np.unique(anomaly)) <= {0, 255}
        assert anomaly.any() == abnormal
        if abnormal:
            assert g["anomaly_type"] in ANOMALY_TYPES and 0.3 <= float(g["severity"]) <= 1.0
        for suffix in ("clean", "skull", "brain"):
            img = cv2.imread(str(out / "ground_truth" / f"{g['Image_name']}_{suffix}.png"), cv2.IMREAD_UNCHANGED)
            assert img.shape == (128, 128) and img.dtype == np.uint8
        assert float(g["pixel_size_mm"]) > 0 and float(g["ellipse_a"]) > 0
    assert any(g["label"] == "abnormal" for g in gt)
    meta = json.loads((out / "phantom.json").read_text())
    assert meta["seed"] == 3 and meta["format_version"] == 1 and meta["config"]["size"] == 128

    # the real FETAL_PLANES_DB reader takes it as it is
    result = read_fetal_planes_db(out)
    assert len(result.records) == 18 and not result.skipped
    assert {r.split for r in result.records} == {Split.TRAIN, Split.TEST}
    assert {r.plane for r in result.records} == set(BRAIN_PLANES)


def test_written_files_match_generate_sample(tmp_path: Path) -> None:
    out = write_phantom(tmp_path / "ph", 1, CFG, seed=5, workers=1, progress=False)
    with open(out / "ground_truth.csv", newline="") as f:
        g = next(csv.DictReader(f))
    img = cv2.imread(str(out / "Images" / f"{g['Image_name']}.png"), cv2.IMREAD_UNCHANGED)
    assert img.shape == (128, 128) and img.dtype == np.uint8
    brain = cv2.imread(str(out / "ground_truth" / f"{g['Image_name']}_brain.png"), cv2.IMREAD_UNCHANGED)
    e = HeadEllipse(*(float(g[f"ellipse_{k}"]) for k in ("cx", "cy", "a", "b", "angle_deg")))
    assert (brain > 0).sum() > 0.5 * ellipse_mask(e, 128).sum()


def test_worker_count_does_not_change_the_files(tmp_path: Path) -> None:
    a = write_phantom(tmp_path / "a", 4, CFG, seed=11, workers=1, progress=False)
    b = write_phantom(tmp_path / "b", 4, CFG, seed=11, workers=2, progress=False)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) == 1 + 1 + 1 + 12 * 5
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_grid_shows_every_valid_anomaly() -> None:
    grid = phantom_grid(QUIET, seed=0, severity=0.7)
    width = max(len(valid_types(p)) + 1 for p in BRAIN_PLANES)
    assert grid.shape == (3 * 128, width * 128, 3) and grid.dtype == np.uint8
    red = (grid[..., 0] > 200) & (grid[..., 1] < 100)
    assert red.sum() > 100  # anomaly outlines drawn
