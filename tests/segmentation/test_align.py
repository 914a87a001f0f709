"""Alignment geometry: the head ends up centred, major axis horizontal, at the requested scale."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fbad.data.records import HeadEllipse
from fbad.segmentation.align import align, align_matrix, source_box, transform_ellipse


def _ellipse_mask(shape, e: HeadEllipse):
    m = np.zeros(shape, np.uint8)
    cv2.ellipse(m, (round(e.cx), round(e.cy)), (round(e.a), round(e.b)), e.angle_deg, 0, 360, 1, -1)
    return m.astype(bool)


@pytest.mark.parametrize("angle", [0.0, 30.0, -60.0, 89.0, 120.0])
def test_crop_rotate_centres_and_levels_the_head(angle):
    e = HeadEllipse(cx=300, cy=220, a=150, b=100, angle_deg=angle)
    img = _ellipse_mask((540, 800), e).astype(np.float32)
    out, masks, m = align(img, 128, e, {"brain": img > 0}, {"crop": True, "rotate": True, "margin": 0.1})
    te = transform_ellipse(e, m)
    assert te.cx == pytest.approx(64) and te.cy == pytest.approx(64)
    assert te.a == pytest.approx(128 / 2.2, rel=1e-6)
    ys, xs = np.nonzero(masks["brain"])
    assert abs(xs.mean() - 63.5) < 1.5 and abs(ys.mean() - 63.5) < 1.5
    width, height = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    assert width == pytest.approx(2 * 128 / 2.2, abs=3) and height == pytest.approx(2 * 100 * 128 / 330, abs=3)


def test_probe_side_stays_up():
    """An ellipse tilted by +170 or -10 degrees is the same shape: both are rotated by -(-10)."""
    e1 = HeadEllipse(100, 100, 60, 40, 170.0)
    e2 = HeadEllipse(100, 100, 60, 40, -10.0)
    assert np.allclose(align_matrix((200, 200), 64, e1), align_matrix((200, 200), 64, e2))
    # a minor-axis-first ellipse is turned so its long side is horizontal
    e3 = HeadEllipse(100, 100, 40, 60, 80.0)
    te = transform_ellipse(e3, align_matrix((200, 200), 64, e3))
    assert te.angle_deg % 180 == pytest.approx(90.0)  # b (the long one) now lies along x


def test_letterbox_without_ellipse_keeps_aspect():
    img = np.ones((50, 100), np.float32)
    out, _, _ = align(img, 64, None, None, {"crop": False})
    rows = np.nonzero(out.max(axis=1) > 0.5)[0]
    assert out.shape == (64, 64) and len(rows) == 32 and out[:, 0].max() > 0.5


def test_mask_outside_brain():
    img = np.ones((100, 100), np.float32)
    brain = np.zeros((100, 100), bool)
    brain[40:60, 40:60] = True
    out, masks, _ = align(img, 100, None, {"brain": brain}, {"crop": False, "mask_outside": True})
    assert np.array_equal(out > 0.5, masks["brain"])


@pytest.mark.parametrize("e", [HeadEllipse(300, 220, 150, 100, 30.0), HeadEllipse(40, 30, 120, 90, 100.0), None])
def test_warping_the_read_crop_equals_warping_the_whole_frame(e):
    """`align` touches only the source crop its warp reads (and converts uint8 to float there): same output as
    converting and warping the whole frame."""
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, (540, 800), dtype=np.uint8)
    brain = rng.random((540, 800)) > 0.5
    cfg = {"crop": True, "rotate": True, "margin": 0.1}
    out, masks, m = align(raw, 64, e, {"brain": brain}, cfg, divide_by=255.0)
    full = cv2.warpAffine(raw.astype(np.float32) / 255.0, m, (64, 64), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    full_mask = cv2.warpAffine(brain.astype(np.uint8), m, (64, 64), flags=cv2.INTER_NEAREST,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
    assert out.dtype == np.float32 and np.abs(out - full).max() < 1e-4
    assert np.array_equal(masks["brain"], full_mask)
    rows, cols = source_box(m, 64, raw.shape)
    if e is not None and e.cx > 100:  # a head inside the frame: only a part of it is read
        assert (rows.stop - rows.start) * (cols.stop - cols.start) < 0.5 * raw.size
