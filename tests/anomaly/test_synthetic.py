"""The synthetic anomalies the `nsa` model trains on: where they go, what their masks say, that they are seeded."""

from __future__ import annotations

import numpy as np
import pytest

from fbad.anomaly.synthetic import blend_patch, random_shape, synthesize_batch


def _frames(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
    """Distinct textures: a random sinusoid per frame, so that any piece of one differs from any other."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    out = []
    for _ in range(n):
        fx, fy, ph = rng.uniform(2, 8), rng.uniform(2, 8), rng.uniform(0, 6.3)
        out.append(0.5 + 0.35 * np.sin(2 * np.pi * (fx * xx + fy * yy) + ph))
    return np.stack(out).astype(np.float32)


def test_random_shape_is_one_filled_blob_of_the_asked_size():
    rng = np.random.default_rng(1)
    for _ in range(20):
        shape = random_shape(64, 64, rng, (0.2, 0.3)) > 0
        ys, xs = np.nonzero(shape)
        extent = max(np.ptp(ys), np.ptp(xs)) + 1
        assert 0.2 * 64 * 0.6 <= extent <= 0.3 * 64 * 1.7  # radii 0.6-1 of the side, aspect up to e^0.5


def test_the_mask_is_exactly_where_the_image_changed():
    frames = _frames(2)
    region = np.zeros((64, 64), np.float32)
    region[16:48, 16:48] = 1
    rng = np.random.default_rng(3)
    hits = 0
    for _ in range(20):
        out, mask = blend_patch(frames[0], frames[1], region, rng)
        changed = np.abs(out - frames[0]) > 0.04
        assert (changed == mask).all()
        assert (np.abs(out - frames[0])[~mask] <= 0.04).all()
        if mask.any():
            hits += 1
            ys, xs = np.nonzero(mask)  # the piece is centred in the region (clipped to fit the image)
            assert 8 <= ys.mean() <= 56 and 8 <= xs.mean() <= 56
    assert hits >= 5  # small pieces between smooth textures may be blended away: the batch draws those again


def test_empty_region_changes_nothing_and_batches_are_seeded():
    frames = _frames(6)
    out, mask = blend_patch(frames[0], frames[1], np.zeros((64, 64)), np.random.default_rng(0))
    assert (out == frames[0]).all() and not mask.any()
    masks = np.ones_like(frames)
    a = synthesize_batch(frames, masks, np.random.default_rng(7), p_anomaly=0.5)
    b = synthesize_batch(frames, masks, np.random.default_rng(7), p_anomaly=0.5)
    assert all((x == y).all() for x, y in zip(a, b, strict=True))
    images, target = a
    flagged = target.reshape(6, -1).any(1)
    assert 0 < flagged.sum() < 6  # some frames stay normal
    assert (images[~flagged] == frames[~flagged]).all()
    images, target = synthesize_batch(frames, masks, np.random.default_rng(1), p_anomaly=1.0, tries=8)
    assert target.reshape(6, -1).any(1).all()  # every frame asked for one got one
    with pytest.raises(ValueError):
        synthesize_batch(frames, masks[:2], np.random.default_rng(0))
