"""Segmentation methods and quality metrics on constructed masks, synthetic rings and a few real HC18 images."""

from __future__ import annotations

import csv
import math
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from fbad.data.records import HeadEllipse
from fbad.preprocess.fov import clean, field_of_view, overlay_mask
from fbad.segmentation.ellipse import EllipseParams, _ContourLookup, _ridge_maxima, _support, _work_maps
from fbad.segmentation.ellipse_fit import conic_to_ellipse, conics_through, conics_through_tangents, sample_ellipses
from fbad.segmentation.geometry import ellipse_mask
from fbad.segmentation.metrics import dice, ellipse_circumference, hausdorff, hc_abs_error_mm, iou, segmentation_metrics
from fbad.segmentation.registry import get_segmenter, segment
from fbad.segmentation.result import SegmentationResult
from fbad.segmentation.truth import fill_outline

ROOT = Path(__file__).resolve().parents[2]
HC18 = Path("/work/shared/data/hc18")


# ------------------------------------------------------------------------------------------ synthetic images


def fan_mask(h: int, w: int, half_angle_deg: float = 40.0) -> np.ndarray:
    """Sector-shaped field of view with its apex above the top centre, like a convex probe."""
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    ax, ay = w / 2, -0.15 * h
    r = np.hypot(xx - ax, yy - ay)
    ang = np.degrees(np.arctan2(xx - ax, yy - ay))
    return (np.abs(ang) < half_angle_deg) & (r > 0.25 * h) & (r < 1.12 * h)


def ring_image(e: HeadEllipse, shape=(540, 800), thick: float = 12.0, seed: int = 0) -> np.ndarray:
    """Bright elliptical skull band (outer border = `e`) on Rayleigh speckle inside a fan, with dark fluid
    around the head, a bright midline inside and acoustic shadowing that dims the lateral walls."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    t = np.radians(e.angle_deg)
    u = (xx - e.cx) * np.cos(t) + (yy - e.cy) * np.sin(t)
    v = -(xx - e.cx) * np.sin(t) + (yy - e.cy) * np.cos(t)
    rho = np.sqrt((u / e.a) ** 2 + (v / e.b) ** 2)
    depth = (1 - rho) * min(e.a, e.b)  # approx. distance inside the outer border
    level = np.full(shape, 0.35)  # maternal tissue
    level[rho < 1.35] = 0.06  # amniotic fluid around the head
    level[rho < 1.0] = 0.28  # brain
    midline = (np.abs(v) < 2.5) & (np.abs(u) < 0.8 * e.a)
    level[midline] = 0.6
    normal_y = np.abs(np.sin(np.arctan2(v * e.a, u * e.b) + t))  # 1 where the wall faces the probe
    band = (depth >= 0) & (depth < thick)
    level[band] = 0.35 + 0.6 * normal_y[band]
    level = cv2.GaussianBlur(level, (0, 0), 1.5)
    speckle = rng.rayleigh(1.0, shape) / math.sqrt(math.pi / 2)
    img = np.clip(level * speckle * 230, 0, 255)
    img = cv2.GaussianBlur(img, (0, 0), 1.0)
    img[~fan_mask(h, w)] = 0
    return img.astype(np.uint8)


RINGS = [
    HeadEllipse(400, 300, 200, 160, 20.0),
    HeadEllipse(350, 320, 140, 120, 160.0),
    HeadEllipse(430, 280, 250, 190, 95.0),
]


# ---------------------------------------------------------------------------------------------- metrics


def test_dice_and_iou_on_constructed_masks():
    a = np.zeros((20, 20), bool)
    a[:, :10] = True
    b = np.zeros((20, 20), bool)
    b[:, 5:15] = True  # half of each overlaps the other
    assert dice(a, a) == 1.0 and iou(a, a) == 1.0
    assert dice(a, ~a) == 0.0 and iou(a, ~a) == 0.0
    assert dice(a, b) == pytest.approx(0.5)
    assert iou(a, b) == pytest.approx(1 / 3)
    assert dice(np.zeros_like(a), np.zeros_like(a)) == 1.0


def test_hausdorff_of_concentric_circles_is_the_radius_difference():
    a = np.zeros((200, 200), np.uint8)
    b = np.zeros((200, 200), np.uint8)
    cv2.circle(a, (100, 100), 60, 1, -1)
    cv2.circle(b, (100, 100), 45, 1, -1)
    assert hausdorff(a.astype(bool), b.astype(bool)) == pytest.approx(15, abs=1.0)
    assert hausdorff(a.astype(bool), b.astype(bool), pixel_size_mm=0.2) == pytest.approx(3.0, abs=0.2)
    assert hausdorff(a.astype(bool), a.astype(bool)) == 0.0
    assert math.isinf(hausdorff(a.astype(bool), np.zeros((200, 200), bool)))


def test_ramanujan_circumference():
    assert ellipse_circumference(HeadEllipse(0, 0, 50, 50, 0)) == pytest.approx(2 * math.pi * 50, rel=1e-9)
    t = np.linspace(0, 2 * np.pi, 200001)
    a, b = 80.0, 45.0
    exact = np.sum(np.hypot(np.diff(a * np.cos(t)), np.diff(b * np.sin(t))))
    assert ellipse_circumference(HeadEllipse(0, 0, a, b, 30)) == pytest.approx(exact, rel=1e-5)


def test_hc_error_in_mm():
    pred = HeadEllipse(0, 0, 100, 80, 0)
    true = HeadEllipse(0, 0, 102, 80, 0)
    err = hc_abs_error_mm(pred, true, pixel_size_mm=0.1)
    assert err == pytest.approx(abs(pred.circumference_px() - true.circumference_px()) * 0.1)
    assert hc_abs_error_mm(pred, pred.circumference_px() * 0.1 + 2.0, 0.1) == pytest.approx(2.0)
    assert math.isinf(hc_abs_error_mm(None, 100.0, 0.1))


def test_fill_outline_of_a_drawn_ellipse():
    outline = np.zeros((300, 400), np.uint8)
    cv2.ellipse(outline, (200, 150), (120, 80), 25, 0, 360, 255, 1)
    filled = fill_outline(outline)
    assert filled.sum() == pytest.approx(math.pi * 120 * 80, rel=0.02)
    assert filled[150, 200] and not filled[5, 5]
    assert np.array_equal(fill_outline(filled.astype(np.uint8) * 255), filled)  # filled masks pass through
    cut = np.zeros((300, 400), np.uint8)
    cv2.ellipse(cut, (200, 60), (120, 80), 0, 0, 360, 255, 1)  # leaves the frame at the top: not closed
    assert fill_outline(cut).sum() == pytest.approx(
        ellipse_mask((300, 400), HeadEllipse(200, 60, 120, 80, 0)).sum(), rel=0.03
    )


def test_segmentation_metrics_dict():
    truth = ellipse_mask((300, 400), HeadEllipse(200, 150, 100, 80, 0))
    e = HeadEllipse(202, 150, 100, 80, 0)
    head = ellipse_mask((300, 400), e)
    result = SegmentationResult(e, head, head, head, 1.0, False)
    true_hc = HeadEllipse(0, 0, 100, 80, 0).circumference_px() * 0.1
    m = segmentation_metrics(result, truth, pixel_size_mm=0.1, true_hc_mm=true_hc)
    assert set(m) >= {"dice", "iou", "hd_px", "hd_mm", "hc_abs_err_mm", "failed"}
    assert 0.97 < m["dice"] < 1 and m["hd_px"] == pytest.approx(2, abs=1) and m["hc_abs_err_mm"] < 0.05
    failed = SegmentationResult(None, np.zeros_like(truth), np.zeros_like(truth), np.zeros_like(truth), 0, True, "x")
    mf = segmentation_metrics(failed, truth, 0.1)
    assert mf["dice"] == 0.0 and mf["failed"] and math.isinf(mf["hc_abs_err_mm"])


# ---------------------------------------------------------------------------------------------- geometry


def test_conic_fits_recover_an_ellipse_exactly():
    x, y, nx, ny = sample_ellipses(*(np.array([v]) for v in (90.0, 70.0, 50.0, 30.0, 0.7)), 16)
    cx, cy, a, b, th, ok = conic_to_ellipse(*conics_through(x[:, [0, 3, 6, 9, 12]], y[:, [0, 3, 6, 9, 12]]))
    assert ok[0] and np.allclose([cx[0], cy[0], a[0], b[0], th[0] % np.pi], [90, 70, 50, 30, 0.7])
    i = [1, 6, 11]
    coef = conics_through_tangents(x[:, i], y[:, i], -ny[:, i[:2]], nx[:, i[:2]])
    cx, cy, a, b, th, ok = conic_to_ellipse(*coef)
    assert ok[0] and np.allclose([cx[0], cy[0], a[0], b[0], th[0] % np.pi], [90, 70, 50, 30, 0.7])


def test_closed_form_tangent_conics_satisfy_their_constraints():
    """The pencil solution passes through the 3 points and is tangent to the 2 directions, for random samples."""
    rng = np.random.default_rng(3)
    x, y = rng.uniform(0, 200, (500, 3)), rng.uniform(0, 135, (500, 3))
    ang = rng.uniform(0, np.pi, (500, 2))
    tx, ty = np.cos(ang), np.sin(ang)
    (A, B, C, D, E), ox, oy = conics_through_tangents(x, y, tx, ty)[0].T, *conics_through_tangents(x, y, tx, ty)[1:]
    u, v = x - ox[:, None], y - oy[:, None]
    scale = np.abs(A[:, None] * u * u) + np.abs(C[:, None] * v * v) + 1  # magnitude of the terms
    value = A[:, None] * u * u + B[:, None] * u * v + C[:, None] * v * v + D[:, None] * u + E[:, None] * v
    assert np.all(np.abs(value - 1) < 1e-8 * scale)
    gx = 2 * A[:, None] * u[:, :2] + B[:, None] * v[:, :2] + D[:, None]
    gy = B[:, None] * u[:, :2] + 2 * C[:, None] * v[:, :2] + E[:, None]
    assert np.all(np.abs(gx * tx + gy * ty) < 1e-8 * (np.abs(gx) + np.abs(gy)))


def test_sample_ellipses_matches_the_parametric_form():
    e = [np.array(v) for v in ([90.0, 10.0], [70.0, -5.0], [50.0, 80.0], [30.0, 79.0], [0.7, 2.0])]
    x, y, nx, ny = sample_ellipses(*e, 12)
    t = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    for i in range(2):
        cx, cy, a, b, th = (v[i] for v in e)
        px = cx + a * np.cos(t) * np.cos(th) - b * np.sin(t) * np.sin(th)
        py = cy + a * np.cos(t) * np.sin(th) + b * np.sin(t) * np.cos(th)
        assert np.allclose(x[i], px) and np.allclose(y[i], py)
        # outward unit normal: perpendicular to the tangent, pointing away from the centre
        tx_ = -a * np.sin(t) * np.cos(th) - b * np.cos(t) * np.sin(th)  # d(px)/dt
        ty_ = -a * np.sin(t) * np.sin(th) + b * np.cos(t) * np.cos(th)
        assert np.allclose(np.hypot(nx[i], ny[i]), 1)
        assert np.all(np.abs(nx[i] * tx_ + ny[i] * ty_) < 1e-9 * np.hypot(tx_, ty_))
        assert np.all(nx[i] * (px - cx) + ny[i] * (py - cy) > 0)


def test_contour_lookup_scores_like_the_per_sample_formula():
    """The search's table-driven scoring equals the reference formula, in and outside the image and fan."""
    img = ring_image(RINGS[0], seed=4)
    p = EllipseParams()
    cleaned = clean(img)
    m = _work_maps(cleaned.image, cleaned.fov, p)
    h, w = m.g.shape
    rng = np.random.default_rng(0)
    n = 300
    e = (rng.uniform(-30, w + 30, n), rng.uniform(-30, h + 30, n), rng.uniform(3, 150, n), rng.uniform(3, 120, n),
         rng.uniform(0, np.pi, n))
    rn_d = cv2.dilate(m.rn, np.ones((3, 3), np.uint8))
    for rn in (m.rn, rn_d):
        sup, ins = _ContourLookup(rn, m).support(e, 64)
        ref_sup, ref_ins = _support(*sample_ellipses(*e, 64), m, rn)
        assert np.array_equal(ins, ref_ins)
        assert np.allclose(sup, ref_sup, rtol=1e-12, atol=1e-15)
    assert (ins == 0).any() and (ins == 1).any() and (sup > 0.3).any()


def test_ridge_maxima_on_a_subset_equal_the_full_map():
    rng = np.random.default_rng(1)
    r = cv2.GaussianBlur(rng.random((60, 80)).astype(np.float32), (0, 0), 1.5)
    ang = rng.uniform(-np.pi, np.pi, r.shape).astype(np.float32)
    nx, ny = np.cos(ang), np.sin(ang)
    where = r > np.quantile(r, 0.7)
    ys, xs = _ridge_maxima(r, nx, ny, where=where)
    assert np.array_equal(np.stack([ys, xs]), np.stack(np.nonzero(_ridge_maxima(r, nx, ny) & where)))
    assert 0 < len(ys) < where.sum()


def test_ellipse_mask_area_and_orientation():
    e = HeadEllipse(200, 150, 100, 40, 90)  # long axis vertical
    m = ellipse_mask((300, 400), e)
    assert m.sum() == pytest.approx(math.pi * 100 * 40, rel=0.03)
    assert m[60, 200] and not m[150, 290]


# -------------------------------------------------------------------------------------------- fov / text


def test_fov_and_overlay_masking_remove_burned_in_text():
    h, w = 540, 800
    img = ring_image(RINGS[0], seed=3)
    fan = fan_mask(h, w)
    cv2.putText(img, "GA 24w3d  MI 1.3", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.7, 255, 2)  # outside the fan
    cv2.rectangle(img, (8, 60), (16, 200), 200, -1)  # grey-scale bar outside the fan
    cross = np.zeros((h, w), bool)
    for dx in range(-8, 9):  # caliper "+" inside the fan
        cross[420, 330 + dx] = cross[420 + dx, 330] = True
    img[cross] = 255
    fov = field_of_view(img)
    assert iou(fov, fan) > 0.95
    overlay = overlay_mask(img, fov)
    assert overlay[cross].mean() > 0.9 and not overlay[300, 400]
    cleaned = clean(img)
    assert cleaned.image[:40, :300].max() == 0  # text and bar gone
    assert cleaned.image[cross].mean() < 0.5 * 255  # caliper replaced by its surroundings
    assert np.array_equal(cleaned.fov, fov)


def test_clean_small_is_the_downsampled_cleaned_image():
    """`CleanImage.small`, derived from the fan search's own downsample, equals downsampling the cleaned frame;
    it is left out (None) where that would not be exact: text removed inside the fan, or no whole-block size."""
    used = 0
    for seed in range(4):  # (a bright speckle inside the fan can pass for a text stroke: then no shortcut)
        img = ring_image(RINGS[seed % 3], seed=seed)
        cv2.putText(img, "GA 24w3d", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.7, 255, 2)  # outside the fan
        cleaned = clean(img)
        if cleaned.small is not None:
            used += 1
            want = cv2.resize(cleaned.image, (200, 135), interpolation=cv2.INTER_AREA)
            fov = cv2.resize(cleaned.fov.view(np.uint8), (200, 135), interpolation=cv2.INTER_NEAREST).view(bool)
            assert np.array_equal(cleaned.small[0], want) and np.array_equal(cleaned.small[1], fov)
    assert used >= 2
    cross = img.copy()
    cross[420, 320:341] = cross[410:431, 330] = 255  # a caliper inside the fan: removed, so no shortcut
    assert clean(cross).small is None
    assert clean(cv2.resize(img, (700, 480))).small is None


# ----------------------------------------------------------------------------------------- methods


@pytest.mark.parametrize("truth", RINGS)
def test_ellipse_recovers_synthetic_rings(truth):
    img = ring_image(truth, seed=int(truth.a))
    res = segment(img, "ellipse")
    assert not res.failed, res.reason
    e = res.ellipse
    assert math.hypot(e.cx - truth.cx, e.cy - truth.cy) < 0.03 * truth.a
    assert e.a == pytest.approx(truth.a, rel=0.03) and e.b == pytest.approx(truth.b, rel=0.03)
    diff = abs((e.angle_deg - truth.angle_deg + 90) % 180 - 90)
    assert diff < 5
    truth_mask = ellipse_mask(img.shape, truth)
    assert dice(res.head_mask, truth_mask) >= 0.97
    # masks nest: brain and skull inside the head, brain does not overlap the skull band
    assert not (res.brain_mask & ~res.head_mask).any() and not (res.skull_mask & res.brain_mask).any()
    assert 0 < res.confidence <= 1


def test_float_input_gives_the_same_result():
    img = ring_image(RINGS[1], seed=5)
    a = segment(img, "ellipse")
    b = segment(img.astype(np.float32) / 255.0, "ellipse")
    assert a.ellipse == b.ellipse


@pytest.mark.parametrize(
    "img",
    [
        np.zeros((540, 800), np.uint8),
        np.full((540, 800), 128, np.uint8),
        np.random.default_rng(0).integers(0, 256, (540, 800)).astype(np.uint8),
        (np.random.default_rng(1).rayleigh(50, (540, 800))).clip(0, 255).astype(np.uint8),
        np.zeros((4, 4), np.uint8),
    ],
    ids=["black", "flat", "uniform-noise", "speckle-noise", "tiny"],
)
def test_no_head_fails_cleanly(img):
    res = segment(img, "ellipse")
    assert res.failed and res.reason and res.ellipse is None and res.confidence == 0.0
    assert res.head_mask.shape == img.shape and not res.head_mask.any() and not res.brain_mask.any()


def test_seed_method_reproduces_the_notebook_heuristic():
    img = ring_image(RINGS[0], seed=7)
    res = segment(img, "seed")
    h, w = img.shape
    assert not res.failed and res.ellipse is not None
    yy, xx = np.mgrid[0:h, 0:w]
    circle = np.hypot(xx - w // 2, yy - h // 2) <= 0.4 * min(h, w) - 1
    assert res.head_mask[circle].all()  # the centred circle is always part of the mask
    x0, y0, x1, y1 = res.crop_box
    ys, xs = np.nonzero(res.head_mask)
    assert (x0, y0) == (max(0, xs.min() - 20), max(0, ys.min() - 20))
    assert (x1, y1) == (min(w, xs.max() + 1 + 20), min(h, ys.max() + 1 + 20))
    assert segment(np.zeros((100, 100), np.uint8), "seed").failed


def test_none_method_is_the_field_of_view():
    img = ring_image(RINGS[0], seed=2)
    res = segment(img, "none")
    assert not res.failed and res.ellipse is None
    assert np.array_equal(res.brain_mask, field_of_view(img))


def test_config_files_build_segmenters():
    for name in ("none", "seed", "ellipse"):
        cfg = yaml.safe_load((ROOT / "conf" / "segmentation" / f"{name}.yaml").read_text())
        assert cfg["name"] == name
        seg = get_segmenter(cfg)
        assert isinstance(seg(np.zeros((64, 64), np.uint8)), SegmentationResult)
        pickle.loads(pickle.dumps(seg))  # travels to DataLoader / cache workers
    with pytest.raises(ValueError, match="unknown parameter"):
        get_segmenter({"name": "ellipse", "hypotheses": 10, "colour": "red"})
    with pytest.raises(ValueError, match="unknown segmentation method"):
        get_segmenter({"name": "unet"})


# --------------------------------------------------------------------------------------- phantom / real


def test_ellipse_on_phantoms():
    phantom = pytest.importorskip("fbad.data.phantom")
    dices = []
    for seed, plane in enumerate(("trans_thalamic", "trans_cerebellum", "trans_ventricular")):
        s = phantom.generate_sample(plane, seed, phantom.PhantomConfig())
        res = segment(s.image, "ellipse")
        dices.append(dice(res.head_mask, ellipse_mask(s.image.shape, s.ellipse)))
    assert np.mean(dices) >= 0.97, dices


@pytest.mark.skipif(not HC18.exists(), reason="HC18 sample not available")
def test_ellipse_on_real_hc18_images():
    with open(HC18 / "training_set_pixel_size_and_HC.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))[::40]
    scores = []
    for row in rows:
        img = cv2.imread(str(HC18 / "images" / row["filename"]), cv2.IMREAD_GRAYSCALE)
        ann = cv2.imread(str(HC18 / "images" / row["filename"].replace(".png", "_Annotation.png")), 0)
        res = segment(img, "ellipse")
        m = segmentation_metrics(
            res, fill_outline(ann), float(row["pixel size(mm)"]), float(row["head circumference (mm)"])
        )
        scores.append(m["dice"])
    assert len(scores) == 5
    assert np.mean(scores) >= 0.85, dict(zip([r["filename"] for r in rows], scores, strict=True))
