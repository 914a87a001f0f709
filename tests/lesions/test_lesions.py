"""Synthetic lesions in real HC18 heads: where they go, what they leave alone, their statistics, the writer."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from fbad.lesions import (
    KINDS,
    Imaging,
    LesionPlacementError,
    LesionSpec,
    estimate_apex,
    insert_lesion,
    insert_lesion_full,
    read_index,
    sample_specs,
    write_lesion_dataset,
)
from fbad.lesions import speckle as sp
from fbad.segmentation.truth import fill_outline

# frames with a visible falx and enough brain for every kind; bright (100, 150, 190) and dark (0) tissue
FRAMES = ("003_HC", "252_HC", "373_HC", "483_HC")
DR = Imaging().dynamic_range_db


def _disk(r: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def _erode(m: np.ndarray, r: int) -> np.ndarray:
    return cv2.erode(m.astype(np.uint8), _disk(r)) > 0 if r > 0 else m


def _dilate(m: np.ndarray, r: int) -> np.ndarray:
    return cv2.dilate(m.astype(np.uint8), _disk(r)) > 0 if r > 0 else m


def _head_from_outline(outline: np.ndarray) -> np.ndarray:
    """The test's own fill (not the library's): flood the outside from a corner, invert."""
    canvas = (outline > 0).astype(np.uint8)
    h, w = canvas.shape
    cv2.floodFill(canvas, np.zeros((h + 2, w + 2), np.uint8), (0, 0), 2)
    return canvas != 2


@pytest.fixture(scope="module")
def frames(hc18_root: Path) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    sizes = {}
    with open(hc18_root / "training_set_pixel_size_and_HC.csv") as f:
        for row in csv.DictReader(f):
            sizes[row["filename"].removesuffix(".png")] = float(row["pixel size(mm)"])
    out = {}
    for name in FRAMES:
        img = cv2.imread(str(hc18_root / "images" / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
        ann = cv2.imread(str(hc18_root / "images" / f"{name}_Annotation.png"), cv2.IMREAD_GRAYSCALE)
        if img is None or ann is None:
            pytest.skip(f"HC18 frame {name} not found under {hc18_root}")
        out[name] = (img, _head_from_outline(ann), sizes.get(name))
    return out


def test_fill_outline_matches_flood_fill(frames, hc18_root):
    for name, (_, head, _) in frames.items():
        ann = cv2.imread(str(hc18_root / "images" / f"{name}_Annotation.png"), cv2.IMREAD_GRAYSCALE)
        assert (fill_outline(ann) == head).all()
        assert (fill_outline(head) == head).all()  # an already filled mask comes back unchanged


@pytest.mark.parametrize("kind", KINDS)
def test_lesion_inside_head_and_nothing_else_changes(frames, kind):
    for j, name in enumerate(("252_HC", "483_HC")):
        img, head, px = frames[name]
        les = insert_lesion_full(img, head, LesionSpec(kind, seed=11 + j), pixel_size_mm=px)
        assert les.mask.any() and les.meta["kind"] == kind
        # inside the head, at least the margin away from its outline
        dist = cv2.distanceTransform(np.pad(head.astype(np.uint8), 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
        assert dist[les.mask].min() >= les.meta["margin_px"] - 1.0
        # nothing changes outside the lesion's soft edge, wall and distal zone: not by a single grey level
        changed = les.image != img
        assert not (changed & ~les.affected).any()
        soft = les.weight > 0  # the soft edge: half its width outside the mask (the midline's ends taper longer)
        reach = les.meta["edge_px"] / 2
        if kind == "midline":  # the band's ends taper over a longer length, narrowing the mask
            reach = math.hypot(les.meta["end_taper_px"] / 2 + les.meta["edge_px"], les.meta["half_width_px"] + reach)
        assert not (soft & ~_dilate(les.mask, int(math.ceil(reach)) + 2)).any()
        zone = les.distal_db != 0
        wall = int(math.ceil(3 * les.meta["wall_px"])) + 1  # a specular wall's band about the outline
        assert not (les.affected & ~_dilate(soft, wall) & ~zone).any()
        # the distal zone lies beyond the lesion along the beam (vertical beams, or radial from the apex)
        if zone.any():
            ys, xs = np.nonzero(zone)
            my, mx = np.nonzero(les.weight > 0)  # the soft edge attenuates too
            if les.meta["apex"] is None:
                assert ys.min() >= my.min() - 2
            else:
                ax, ay = les.meta["apex"]
                assert np.hypot(xs - ax, ys - ay).min() >= np.hypot(mx - ax, my - ay).min() - 2
        # the mask is what the metadata says
        assert les.meta["area_px"] == int(les.mask.sum())
        assert les.meta["size_frac"] == pytest.approx(les.meta["size_px"] / les.meta["head_minor_px"])


def _tissue_twin(img, head, seed, contrast_db, px):
    """A cyst whose material is tissue (same attenuation, no wall): only its echogenicity differs."""
    spec = LesionSpec("cyst", size=0.3, contrast_db=contrast_db, attenuation=Imaging().tissue_attenuation,
                      wall_db=0.0, seed=seed)
    return insert_lesion_full(img, head, spec, pixel_size_mm=px)


@pytest.mark.parametrize("name,seed", [("252_HC", 1), ("373_HC", 2), ("483_HC", 1)])
def test_zero_db_lesion_is_statistically_unchanged(frames, name, seed):
    img, head, px = frames[name]
    les = _tissue_twin(img, head, seed, 0.0, px)
    assert not (les.distal_db != 0).any()  # tissue material: no enhancement or shadow
    m = les.mask
    r = int(les.meta["size_px"] / 2)
    ring = _dilate(m, r) & ~_dilate(m, int(math.ceil(les.meta["edge_px"]))) & head
    both = m | ring
    a, b = img.astype(np.float64), les.image.astype(np.float64)
    assert (b[m] != a[m]).mean() > 0.5  # the inside really is new speckle, not the old pixels
    assert abs(b[m].mean() - a[m].mean()) < 4.0
    assert 0.75 < b[m].std() / a[m].std() < 1.33
    assert abs(b[both].mean() - a[both].mean()) < 2.0
    assert 0.85 < b[both].std() / a[both].std() < 1.15


@pytest.mark.parametrize("name,seed", [("252_HC", 1), ("373_HC", 2), ("483_HC", 1)])
def test_cyst_contrast_in_the_envelope_and_speckle_kept(frames, name, seed):
    img, head, px = frames[name]
    zero = _tissue_twin(img, head, seed, 0.0, px)
    cyst = _tissue_twin(img, head, seed, -6.0, px)
    assert (cyst.mask == zero.mask).all()  # same site and speckle: only the echogenicity differs
    core = _erode(cyst.mask, int(math.ceil(cyst.meta["edge_px"] / 2)))
    a0, a1, az = sp.to_envelope(img, DR), sp.to_envelope(cyst.image, DR), sp.to_envelope(zero.image, DR)
    # envelope domain: exactly the requested ratio against the same speckle at 0 dB (clipping aside)
    assert 20 * np.log10(a1[core].mean() / az[core].mean()) == pytest.approx(-6.0, abs=0.5)
    # and about it against the tissue that was there before
    assert 20 * np.log10(a1[core].mean() / a0[core].mean()) == pytest.approx(-6.0, abs=2.0)
    # the interior is speckle with the tissue's spread, not a flat fill
    c_in = a1[core].std() / a1[core].mean()
    c_before = a0[core].std() / a0[core].mean()
    assert c_in > 0.5 * c_before
    assert cyst.image[core].std() > 0.5 * img[core].std()


def _band_below(mask: np.ndarray, depth: int) -> np.ndarray:
    """The middle half of the lesion's columns, from just below it to `depth` rows further."""
    ys, xs = np.nonzero(mask)
    x0, x1 = np.percentile(xs, [25, 75]).astype(int)
    band = np.zeros_like(mask)
    bottom = np.zeros(mask.shape[1], int)
    for x in range(x0, x1 + 1):  # per column: from the lesion's last row downwards
        col = np.nonzero(mask[:, x])[0]
        if col.size:
            bottom[x] = col.max()
            band[bottom[x] + 4:bottom[x] + 4 + depth, x] = True
    return band


def test_posterior_enhancement_below_a_cyst(frames):
    img, head, px = frames["483_HC"]
    les = insert_lesion_full(img, head, LesionSpec("cyst", size=0.25, contrast_db=-20.0, seed=3),
                             pixel_size_mm=px, apex=None)
    assert les.meta["distal_effect"] == "enhancement" and les.meta["distal_db"] > 1.0
    band = _band_below(les.mask, int(les.meta["size_px"] / 2)) & head & (les.weight == 0)
    assert band.sum() > 100
    before, after = img[band].astype(float).mean(), les.image[band].astype(float).mean()
    assert after > before + 2.0


def test_shadow_below_a_dense_echogenic_lesion(frames):
    img, head, px = frames["483_HC"]
    les = insert_lesion_full(img, head, LesionSpec("echogenic", size=0.2, contrast_db=12.0, variant="dense",
                                                   attenuation=3.0, seed=4), pixel_size_mm=px, apex=None)
    assert les.meta["distal_effect"] == "shadow" and les.meta["distal_db"] < -3.0
    band = _band_below(les.mask, int(les.meta["size_px"] / 2)) & head & (les.weight == 0)
    assert band.sum() > 100
    assert les.image[band].astype(float).mean() < img[band].astype(float).mean() - 2.0
    # a hyperechoic mass: brighter than the tissue it replaced (at least where it is not yet shadowed)
    top = les.mask & (np.arange(img.shape[0])[:, None] < np.nonzero(les.mask)[0].mean())
    assert les.image[top].astype(float).mean() > img[top].astype(float).mean() + 10


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_runs_and_is_reproducible(frames, kind):
    img, head, px = frames["373_HC"]
    out1, mask1, meta1 = insert_lesion(img, head, LesionSpec(kind), np.random.default_rng(5), pixel_size_mm=px)
    out2, mask2, meta2 = insert_lesion(img, head, LesionSpec(kind), np.random.default_rng(5), pixel_size_mm=px)
    out3, mask3, _ = insert_lesion(img, head, LesionSpec(kind), np.random.default_rng(6), pixel_size_mm=px)
    assert mask1.any() and mask1.dtype == bool and out1.dtype == np.uint8 and out1.shape == img.shape
    assert (out1 == out2).all() and (mask1 == mask2).all() and meta1 == meta2
    assert (out1 != out3).any()
    assert meta1["kind"] == kind and meta1["size_px"] > 0
    # the spec's own seed stands in for a generator
    out4, _, _ = insert_lesion(img, head, LesionSpec(kind, seed=5), pixel_size_mm=px)
    assert (out4 == out1).all()


def test_head_as_ellipse_and_errors(frames):
    from fbad.segmentation.geometry import ellipse_from_mask

    img, head, _ = frames["373_HC"]
    ell = ellipse_from_mask(head)
    _, mask, _ = insert_lesion(img, None, LesionSpec("cyst", seed=1), head=ell)
    assert mask.any()
    with pytest.raises(LesionPlacementError):
        insert_lesion(img, head, LesionSpec("cyst", size=2.0, seed=1))
    with pytest.raises(LesionPlacementError):
        insert_lesion(img, head, LesionSpec("cyst", size=0.2, center=(2.0, 2.0), seed=1))
    with pytest.raises(ValueError):
        LesionSpec("tumour")
    with pytest.raises(ValueError):
        insert_lesion(img, head, LesionSpec("cyst"))  # neither a generator nor a seed


def test_sample_specs_ranges_and_seeds():
    rng = np.random.default_rng(0)
    specs = sample_specs(40, rng, ("cyst", "echogenic"), size=(0.1, 0.2), contrast_db={"cyst": (-12.0, -10.0)})
    assert {s.kind for s in specs} == {"cyst", "echogenic"}
    assert all(0.1 <= s.size <= 0.2 for s in specs)
    assert all(-12.0 <= s.contrast_db <= -10.0 for s in specs if s.kind == "cyst")
    assert len({s.seed for s in specs}) == 40
    again = sample_specs(40, np.random.default_rng(0), ("cyst", "echogenic"), size=(0.1, 0.2),
                         contrast_db={"cyst": (-12.0, -10.0)})
    assert again == specs


def test_speckle_primitives():
    g = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert (sp.quantize(sp.from_log_envelope(sp.to_log_envelope(g, 60.0), 60.0)) == g).all()
    assert (sp.to_display(sp.to_envelope(g, 50.0), 50.0) == g).all()
    s = sp.correlated_rayleigh((256, 256), np.diag([9.0, 2.0]), np.random.default_rng(0))
    assert (s * s).mean() == pytest.approx(1.0, abs=0.05)  # unit power, no sample normalisation
    assert np.log(s).std() == pytest.approx(sp.LOG_RAYLEIGH_STD, abs=0.03)  # 5.57 dB log-Rayleigh spread
    cov = sp.speckle_covariance(np.log(s), np.ones_like(s))
    assert cov[0, 0] > 2 * cov[1, 1]  # the grain's elongation is measured


def test_estimate_apex_on_a_drawn_fan():
    img = np.zeros((400, 500), np.uint8)
    apex = (250.0, -150.0)
    yy, xx = np.mgrid[0:400, 0:500]
    ang = np.degrees(np.arctan2(xx - apex[0], yy - apex[1]))
    r = np.hypot(xx - apex[0], yy - apex[1])
    fan = (np.abs(ang) < 30) & (r > 170) & (r < 540)
    img[fan] = np.random.default_rng(0).integers(20, 200, fan.sum())
    got = estimate_apex(img)
    assert got is not None and abs(got[0] - apex[0]) < 10 and abs(got[1] - apex[1]) < 15
    assert estimate_apex(np.full((400, 500), 90, np.uint8)) is None  # a linear probe's rectangle


def test_writer_on_three_frames(hc18_root, tmp_path):
    from fbad.data.readers.hc18 import read_hc18

    records = [r for r in read_hc18(hc18_root).records if r.path.stem in ("252_HC", "373_HC", "483_HC")]
    assert len(records) == 3
    root = write_lesion_dataset(records, tmp_path / "les", fraction_abnormal=2 / 3, n_per_image=2, seed=3,
                                kinds=("cyst", "echogenic", "ventriculomegaly"))
    assert not list(tmp_path.glob("les.partial-*"))
    rows = read_index(root)
    labels = [r["label"] for r in rows]
    assert labels.count("normal") == 3 and labels.count("abnormal") == 4
    normal = {r["source_id"]: r for r in rows if r["label"] == "normal"}
    for r in rows:
        assert Path(r["path"]).is_file()
        head = cv2.imread(r["head_mask_path"], cv2.IMREAD_GRAYSCALE) > 0
        if r["label"] == "normal":
            assert r["kind"] == "" and r["mask_path"] == ""
            assert (cv2.imread(r["path"], cv2.IMREAD_GRAYSCALE) == cv2.imread(r["source_path"], 0)).all()
            continue
        src = normal[r["source_id"]]
        assert r["patient_id"] == src["patient_id"] and r["kind"] in ("cyst", "echogenic", "ventriculomegaly")
        mask = cv2.imread(r["mask_path"], cv2.IMREAD_GRAYSCALE) > 0
        img = cv2.imread(r["path"], cv2.IMREAD_GRAYSCALE)
        ref = cv2.imread(src["path"], cv2.IMREAD_GRAYSCALE)
        assert mask.any() and not (mask & ~head).any()
        assert (img[mask] != ref[mask]).mean() > 0.5  # the mask is where the lesion is
        changed = img != ref
        assert changed[mask].mean() > 5 * changed[~mask].mean()
        assert float(r["size_frac"]) > 0 and r["contrast_db"] != ""
    # reused when complete; the same seed writes the same data
    assert write_lesion_dataset(records, root, seed=99) == root
    assert [r["label"] for r in read_index(root)] == labels
    again = write_lesion_dataset(records, tmp_path / "les2", fraction_abnormal=2 / 3, n_per_image=2, seed=3,
                                 kinds=("cyst", "echogenic", "ventriculomegaly"))
    assert (root / "index.csv").read_text().replace(str(root), "") == \
        (again / "index.csv").read_text().replace(str(again), "")


def test_textbook_rayleigh_model_runs(frames):
    img, head, px = frames["373_HC"]
    spec = LesionSpec("cyst", size=0.3, contrast_db=0.0, attenuation=Imaging().tissue_attenuation, wall_db=0.0,
                      seed=2)
    les = insert_lesion_full(img, head, spec, pixel_size_mm=px, imaging=Imaging(speckle_model="rayleigh"))
    m = les.mask
    assert les.meta["speckle_model"] == "rayleigh" and 0.05 <= les.meta["speckle_k"] <= 1.0
    assert abs(les.image[m].astype(float).mean() - img[m].astype(float).mean()) < 6.0
    assert les.image[m].std() > 0.5 * img[m].std()
