"""Enhancement operators, chains and presets, SRAD against its NumPy reference, quality metrics."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from fbad.data.imageio import read_gray
from fbad.evaluation.enhancement_metrics import cnr, edge_preservation, enhancement_metrics, psnr, speckle_index, ssim
from fbad.preprocess import enhance as E
from fbad.preprocess.srad import estimate_q0_reference, estimate_q0_torch, srad, srad_reference

PRESETS = Path(__file__).resolve().parents[2] / "conf" / "enhancement"


# --------------------------------------------------------------------------------------------------
# test images


def speckled(size: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(speckled, clean): a bright ellipse on a darker field, times unit-mean Rayleigh speckle."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    inside = ((yy - 0.5) / 0.3) ** 2 + ((xx - 0.5) / 0.22) ** 2 < 1
    clean = cv2.GaussianBlur(np.where(inside, 0.6, 0.25).astype(np.float32), (0, 0), 1.0)
    noisy = np.clip(clean * rng.rayleigh(np.sqrt(2 / np.pi), clean.shape), 0, 1).astype(np.float32)
    return noisy, clean


def step_image(size: int = 64, lo: float = 0.3, hi: float = 0.7) -> np.ndarray:
    img = np.full((size, size), lo, np.float32)
    img[:, size // 2 :] = hi
    return img


def check_image(out: np.ndarray, shape: tuple[int, int]) -> None:
    assert out.shape == shape
    assert out.dtype == np.float32
    assert np.isfinite(out).all()
    assert out.min() >= 0.0 and out.max() <= 1.0


# --------------------------------------------------------------------------------------------------
# operators


@pytest.mark.parametrize("name", sorted(E.OPERATORS))
def test_every_operator_keeps_shape_dtype_range(name):
    noisy, _ = speckled(size=80)
    img = noisy[:, :70]  # non-square catches transposed shapes
    out = E.OPERATORS[name](img)
    check_image(out, img.shape)
    assert not np.shares_memory(out, img)  # a new array: callers may keep the input
    check_image(E.OPERATORS[name](np.zeros((20, 30), np.float32)), (20, 30))  # a black frame is fine


def test_operators_do_not_modify_their_input():
    img, _ = speckled(size=48)
    before = img.copy()
    for fn in E.OPERATORS.values():
        fn(img)
    np.testing.assert_array_equal(img, before)


def test_hist_eq_spreads_a_narrow_histogram():
    rng = np.random.default_rng(1)
    img = rng.uniform(0.4, 0.6, (64, 64)).astype(np.float32)
    out = E.hist_eq(img)
    assert out.min() < 0.05 and out.max() > 0.95
    assert np.corrcoef(img.ravel(), out.ravel())[0, 1] > 0.95  # monotonic remap, same order


def test_clahe_increases_local_contrast():
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[:128, :128]
    img = (0.45 + 0.05 * np.sin(xx / 4.0) + 0.2 * (yy > 64) + rng.normal(0, 0.005, (128, 128))).astype(np.float32)
    out = E.clahe(img, clip_limit=3.0, tiles=4)
    local_std = lambda a: np.sqrt(cv2.blur(a * a, (9, 9)) - cv2.blur(a, (9, 9)) ** 2).mean()  # noqa: E731
    assert local_std(out) > 1.5 * local_std(img)
    check_image(E.clahe(img, tiles=[2, 4]), img.shape)


def test_median_removes_salt_noise():
    rng = np.random.default_rng(3)
    img = np.full((64, 64), 0.5, np.float32)
    img[rng.random(img.shape) < 0.03] = 1.0
    assert np.allclose(E.median(img, ksize=3), 0.5)
    assert np.allclose(E.median(img, ksize=7), 0.5, atol=1 / 255)  # the 8-bit path for large kernels


def test_gaussian_and_bilateral_smooth_noise_bilateral_keeps_the_edge():
    rng = np.random.default_rng(4)
    clean = step_image()
    noisy = (clean + rng.normal(0, 0.03, clean.shape)).astype(np.float32)
    for out in (E.gaussian(noisy, sigma=1.5), E.bilateral(noisy, d=7, sigma_color=0.1, sigma_space=3)):
        assert np.abs(out - clean)[:, :24].std() < 0.5 * np.abs(noisy - clean)[:, :24].std()
    g, b = E.gaussian(noisy, sigma=3.0), E.bilateral(noisy, d=7, sigma_color=0.1, sigma_space=3)
    edge = lambda a: (a[:, 33] - a[:, 30]).mean()  # noqa: E731  rise across the step
    assert edge(b) > 0.9 * 0.4 > edge(g)


def test_nlm_denoises():
    noisy, clean = speckled(size=96)
    assert psnr(E.nlm(noisy, h=40), clean) > psnr(noisy, clean) + 3


def test_gamma_below_one_brightens_and_keeps_end_points():
    img = np.linspace(0, 1, 101, dtype=np.float32).reshape(1, -1).repeat(3, 0)
    out = E.gamma(img, gamma=0.5)
    assert out.mean() > img.mean()
    assert out[0, 0] == 0 and out[0, -1] == pytest.approx(1.0)
    assert E.gamma(img, gamma=2.0).mean() < img.mean()


def test_log_compress_lifts_weak_echoes():
    img = np.linspace(0, 1, 101, dtype=np.float32).reshape(1, -1)
    out = E.log_compress(img, c=50.0)
    assert (out >= img - 1e-6).all() and out[0, 10] > 3 * img[0, 10]
    assert out[0, 0] == 0 and out[0, -1] == pytest.approx(1.0)
    assert (np.diff(out[0]) > 0).all()


def test_unsharp_and_laplacian_sharpen_steepen_an_edge_and_leave_flat_images_alone():
    blurred = E.gaussian(step_image(), sigma=2.0)
    flat = np.full((32, 32), 0.4, np.float32)
    for fn in (lambda a: E.unsharp(a, sigma=2.0, amount=1.5), lambda a: E.laplacian_sharpen(a, strength=1.0)):
        out = fn(blurred)
        assert (out[:, 33] - out[:, 30]).mean() > 1.1 * (blurred[:, 33] - blurred[:, 30]).mean()
        np.testing.assert_allclose(fn(flat), flat, atol=1e-6)


def test_scharr_edge_mask_marks_a_unit_step():
    img = np.zeros((16, 16), np.float32)
    img[:, 8:] = 1.0
    mag = E.scharr_edge_mask(img, threshold=None)
    np.testing.assert_allclose(mag[:, 7:9], 1.0)  # a unit step scores 1 on both sides
    assert not mag[:, :6].any() and not mag[:, 10:].any()
    mask = E.scharr_edge_mask(img, threshold=0.25)
    assert set(np.unique(mask)) == {0.0, 1.0}
    assert mask[:, 7:9].all() and not mask[:, :6].any() and not mask[:, 10:].any()


def test_edge_masked_sharpening_spares_flat_speckle():
    noisy, _ = speckled(size=96)
    flat = (slice(2, 20), slice(2, 20))  # background, away from the ellipse
    plain = E.laplacian_sharpen(noisy, strength=1.0)
    masked = E.laplacian_sharpen(noisy, strength=1.0, edge_threshold=0.5)
    assert np.abs(masked - noisy)[flat].mean() < 0.5 * np.abs(plain - noisy)[flat].mean()


def test_percentile_norm_maps_percentiles_to_0_and_1():
    rng = np.random.default_rng(5)
    img = rng.uniform(0.2, 0.7, (50, 50)).astype(np.float32)
    out = E.percentile_norm(img, low=5, high=95)
    assert np.mean(out <= 0) == pytest.approx(0.05, abs=0.01)
    assert np.mean(out >= 1) == pytest.approx(0.05, abs=0.01)
    lo, hi = np.percentile(img, [5, 95])
    mid = (img > lo) & (img < hi)
    np.testing.assert_allclose(out[mid], (img[mid] - lo) / (hi - lo), atol=1e-5)
    flat = np.full((8, 8), 0.3, np.float32)
    np.testing.assert_array_equal(E.percentile_norm(flat), flat)


# --------------------------------------------------------------------------------------------------
# chains and presets


def test_build_chain_composes_in_order_and_empty_is_identity():
    img, _ = speckled(size=48)
    chain = E.build_chain([{"op": "median", "ksize": 3}, {"op": "gamma", "gamma": 0.5}])
    np.testing.assert_array_equal(chain(img), E.gamma(E.median(img, ksize=3), gamma=0.5))
    np.testing.assert_array_equal(E.build_chain([])(img), img)


@pytest.mark.parametrize(
    ("ops", "needles"),
    [
        ([{"op": "sharpen_more"}], ["sharpen_more", "clahe", "srad"]),
        ([{"op": "clahe", "clip": 2.0}], ["clahe", "clip", "clip_limit", "tiles"]),
        ([{"op": "median", "ksize": 4}], ["median", "ksize"]),
        ([{"op": "gaussian", "sigma": -1}], ["gaussian", "sigma"]),
        ([{"op": "nlm", "h": "strong"}], ["nlm"]),
        ([{"ksize": 3}], ["op"]),
        (["median"], ["op"]),
        ({"op": "median"}, ["list"]),
    ],
)
def test_build_chain_rejects_bad_specs_naming_the_op(ops, needles):
    with pytest.raises(ValueError) as err:
        E.build_chain(ops)
    for needle in needles:
        assert needle in str(err.value)


def test_chain_rejects_colour_images():
    with pytest.raises(ValueError, match="2-D"):
        E.build_chain([{"op": "gamma", "gamma": 0.8}])(np.zeros((8, 8, 3), np.float32))


@pytest.fixture(scope="module")
def hc18_image(hc18_root) -> np.ndarray:
    raw = read_gray(sorted((hc18_root / "images").glob("*_HC.png"))[0])
    return cv2.resize(raw, (raw.shape[1] // 3, raw.shape[0] // 3), interpolation=cv2.INTER_AREA)


def test_presets_exist():
    assert {"none", "seed", "clahe", "srad_clahe", "nlm_clahe"} <= {p.stem for p in PRESETS.glob("*.yaml")}


@pytest.mark.parametrize("path", sorted(PRESETS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_preset_loads_and_runs_on_a_real_image(path, hc18_image):
    cfg = OmegaConf.load(path)
    assert cfg.name == path.stem
    out = E.apply_enhancement(hc18_image, cfg)  # uint8 in
    check_image(out, hc18_image.shape)
    np.testing.assert_array_equal(out, E.apply_enhancement(hc18_image.astype(np.float32) / 255, cfg))
    np.testing.assert_array_equal(out, E.build_chain(cfg.ops)(hc18_image / 255.0))  # omegaconf ops directly
    if cfg.ops:
        assert not np.array_equal(out, hc18_image / np.float32(255))


def test_chains_scale_integer_inputs():
    img16 = np.full((8, 8), 65535, np.uint16)
    np.testing.assert_array_equal(E.apply_enhancement(img16, {"name": "none", "ops": []}), np.ones((8, 8)))
    img8, _ = speckled(size=32)
    chain = E.build_chain([{"op": "median", "ksize": 3}])
    np.testing.assert_array_equal(chain((img8 * 255).round().astype(np.uint8)),
                                  chain((img8 * 255).round() / np.float32(255)))


# --------------------------------------------------------------------------------------------------
# SRAD


@pytest.fixture(scope="module")
def speckle_batch() -> np.ndarray:
    return np.stack([speckled(size=64, seed=s)[0] for s in range(4)])


@pytest.mark.parametrize("kw", [{}, {"q0": 0.3, "decay": 0.0, "dt": 0.25}, {"iterations": 20, "dt": 1.0}])
def test_srad_matches_the_numpy_reference(speckle_batch, kw):
    ref = np.stack([srad_reference(im, iterations=kw.get("iterations", 30), **{k: v for k, v in kw.items()
                                                                            if k != "iterations"})
                    for im in speckle_batch])
    out = srad(torch.from_numpy(speckle_batch), iterations=kw.get("iterations", 30),
               **{k: v for k, v in kw.items() if k != "iterations"})
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == speckle_batch.shape
    assert np.abs(out.numpy() - ref).max() <= 1e-3
    assert np.abs(ref - speckle_batch).max() > 0.05  # it did something


def test_srad_batch_equals_per_image_and_numpy_in_numpy_out(speckle_batch):
    batch = srad(torch.from_numpy(speckle_batch), iterations=15)
    for i, im in enumerate(speckle_batch):
        single = srad(im, iterations=15)
        assert isinstance(single, np.ndarray) and single.dtype == np.float32 and single.shape == im.shape
        np.testing.assert_allclose(single, batch[i].numpy(), atol=1e-6)
    as64 = srad(torch.from_numpy(speckle_batch).double(), iterations=15)
    assert as64.dtype == torch.float64
    np.testing.assert_allclose(as64.numpy(), batch.numpy(), atol=1e-4)


def test_srad_q0_estimate_torch_matches_numpy(speckle_batch):
    est = estimate_q0_torch(torch.from_numpy(speckle_batch)).numpy()
    np.testing.assert_allclose(est, [estimate_q0_reference(im) for im in speckle_batch], rtol=1e-4)
    assert 0.3 < est.mean() < 0.7  # unit-mean Rayleigh speckle: sigma / mu = 0.52
    assert estimate_q0_reference(np.zeros((16, 16), np.float32)) == pytest.approx(0.1)  # all-dark fallback


def test_srad_reduces_speckle_and_keeps_the_edge():
    noisy, clean = speckled(size=128, seed=7)
    out = srad(noisy, iterations=50, dt=0.25, decay=0.0)
    flat_in = np.zeros(noisy.shape, bool)
    flat_in[56:72, 56:72] = True  # inside the ellipse
    flat_out = np.zeros(noisy.shape, bool)
    flat_out[4:20, 4:30] = True  # background
    for region in (flat_in, flat_out):
        assert speckle_index(out, region) < 0.6 * speckle_index(noisy, region)
    assert abs(out[flat_in].mean() - noisy[flat_in].mean()) < 0.05  # brightness kept (diffusion conserves)
    # the ellipse border: contrast across it survives, and edges match the clean image better than before
    assert cnr(out, flat_in, flat_out) > 2 * cnr(noisy, flat_in, flat_out)
    assert edge_preservation(E.gaussian(out, sigma=1.0), clean) > edge_preservation(E.gaussian(noisy, sigma=1.0), clean)
    assert psnr(out, clean) > psnr(noisy, clean) + 3


def test_srad_zero_iterations_is_identity_and_bad_parameters_fail(speckle_batch):
    np.testing.assert_array_equal(srad(speckle_batch[0], iterations=0), speckle_batch[0])
    for kw in ({"dt": 0}, {"iterations": -1}, {"decay": -1}, {"q0": 0.0}):
        with pytest.raises(ValueError, match="srad"):
            srad(speckle_batch[0], **kw)
    with pytest.raises(ValueError, match="shape"):
        srad(np.zeros((2, 2, 8, 8), np.float32))
    tiny = speckle_batch[0, :3, :4]  # smaller than a q0 block: falls back to q0 = 0.1
    np.testing.assert_allclose(srad(tiny, iterations=5), srad_reference(tiny, iterations=5), atol=1e-6)


@pytest.mark.slow
def test_srad_compiled_matches_the_reference(speckle_batch):
    out = srad(torch.from_numpy(speckle_batch), iterations=30, compile=True)
    ref = np.stack([srad_reference(im, iterations=30) for im in speckle_batch])
    assert np.abs(out.numpy() - ref).max() <= 1e-3


# --------------------------------------------------------------------------------------------------
# quality metrics


def test_psnr_and_ssim_known_values():
    ref = np.random.default_rng(8).uniform(0.2, 0.8, (64, 64))
    assert psnr(ref, ref) == float("inf")
    assert psnr(ref + 0.1, ref) == pytest.approx(20.0)  # MSE 0.01
    assert ssim(ref, ref) == pytest.approx(1.0)
    mask = np.zeros(ref.shape, bool)
    mask[10:30, 10:30] = True
    assert ssim(ref, ref, mask) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shape"):
        psnr(ref, ref[:10])


def test_denoising_raises_psnr_and_ssim():
    noisy, clean = speckled(size=96, seed=9)
    den = E.nlm(noisy, h=40)
    assert psnr(den, clean) > psnr(noisy, clean)
    assert ssim(den, clean) > ssim(noisy, clean)


def test_cnr_matches_the_analytic_value():
    img = np.zeros((40, 40))
    a = np.zeros(img.shape, bool)
    a[:, :20] = True
    img[a] = np.where(np.indices(img.shape)[1][a] % 2, 0.7, 0.5)  # mean 0.6, sigma 0.1
    img[~a] = np.where(np.indices(img.shape)[0][~a] % 2, 0.25, 0.15)  # mean 0.2, sigma 0.05
    assert cnr(img, a, ~a) == pytest.approx(0.4 / np.sqrt(0.1**2 + 0.05**2))
    assert cnr(np.full(img.shape, 0.5), a, ~a) == 0.0
    with pytest.raises(ValueError, match="empty"):
        cnr(img, a, np.zeros_like(a))


def test_speckle_index_and_edge_preservation():
    m = np.ones((20, 20), bool)
    img = np.where(np.indices((20, 20))[1] % 2, 0.6, 0.4)  # mean 0.5, sigma 0.1
    assert speckle_index(img, m) == pytest.approx(0.2)
    assert speckle_index(np.full((20, 20), 0.5), m) == 0.0
    noisy, clean = speckled(size=96, seed=10)
    assert edge_preservation(clean, clean) == pytest.approx(1.0)
    assert edge_preservation(E.gaussian(clean, sigma=3.0), clean) < 0.9
    rng = np.random.default_rng(11)
    assert abs(edge_preservation(rng.random(clean.shape), clean)) < 0.1


def test_enhancement_metrics_reports_every_region():
    noisy, clean = speckled(size=96, seed=12)
    yy, xx = np.mgrid[:96, :96] / 96
    r = ((yy - 0.5) / 0.3) ** 2 + ((xx - 0.5) / 0.22) ** 2
    masks = {"brain": r < 0.7, "skull": (r >= 0.8) & (r < 1.2), "empty": np.zeros((96, 96), bool)}
    m = enhancement_metrics(E.nlm(noisy, h=40), clean, masks)
    expected = {"psnr", "ssim", "epi", "cnr_brain_vs_skull"} | {
        f"{k}_{n}" for k in ("ssim", "epi", "speckle_index", "cnr") for n in ("brain", "skull")}
    assert set(m) == expected
    assert all(isinstance(v, float) and np.isfinite(v) for v in m.values())
    base = enhancement_metrics(noisy, clean, masks)
    assert m["psnr"] > base["psnr"] and m["speckle_index_brain"] < base["speckle_index_brain"]
