"""Models, losses, PCA baseline and the model config group."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from skimage.metrics import structural_similarity
from torch import nn

from fbad.models import (
    CLOSED_FORM,
    ConvAE,
    PatchCore,
    PCABaseline,
    SeedAE,
    build_model,
    reconstruction_loss,
    split_model_config,
    ssim_map,
)

CONF = Path(__file__).resolve().parents[2] / "conf" / "model"


@pytest.fixture(autouse=True)
def _one_thread():
    """These models are tiny: one thread avoids OpenMP sync overhead that dominates on a busy 2-core box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _blobs(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """Smooth random images in [0, 1]: something with structure for an AE to learn."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 1, size // 8, size // 8, generator=g)
    return nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


# --- shapes -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("widths", "size", "bottleneck", "downsample", "norm"),
    [
        ((8, 16), 32, "dense", "stride", "batch"),
        ((8, 16, 32), 64, "spatial", "pool", "group"),
        ((8, 16, 32, 64), 96, "dense", "pool", "none"),
        ((8, 16, 32, 64), 128, "spatial", "stride", "batch"),
        ((4, 8, 16, 32, 64), 64, "dense", "stride", "group"),
    ],
)
def test_conv_ae_output_shape(widths, size, bottleneck, downsample, norm):
    model = ConvAE(1, widths, downsample, norm, latent_dim=16, bottleneck=bottleneck, input_size=size)
    x = torch.rand(2, 1, size, size)
    y = model(x)
    assert y.shape == x.shape
    assert float(y.detach().min()) >= 0.0 and float(y.detach().max()) <= 1.0  # sigmoid output


def test_conv_ae_rgb_and_rectangular_input():
    model = ConvAE(
        3, (8, 16, 32), latent_dim=8, bottleneck="dense", input_size=(64, 96), output_activation="none"
    )
    x = torch.rand(2, 3, 64, 96)
    assert model(x).shape == x.shape


def test_spatial_bottleneck_accepts_any_divisible_size():
    model = ConvAE(1, (8, 16, 32), latent_dim=4, bottleneck="spatial")
    for size in (32, 64, 120):
        assert model(torch.rand(1, 1, size, size)).shape == (1, 1, size, size)
    assert model.encode(torch.rand(1, 1, 64, 64)).shape == (1, 4, 8, 8)


def test_dense_bottleneck_rejects_wrong_sizes():
    model = ConvAE(1, (8, 16), latent_dim=8, bottleneck="dense", input_size=32)
    assert model.encode(torch.rand(3, 1, 32, 32)).shape == (3, 8)
    with pytest.raises(ValueError, match="input_size"):
        model(torch.rand(1, 1, 64, 64))
    with pytest.raises(ValueError, match="divisible"):
        ConvAE(1, (8, 16, 32), bottleneck="dense", input_size=100)
    with pytest.raises(ValueError, match="divisible"):
        ConvAE(1, (8, 16, 32), bottleneck="spatial")(torch.rand(1, 1, 36, 36))


def test_bad_choices_are_named():
    with pytest.raises(ValueError, match="norm"):
        ConvAE(norm="layer")
    with pytest.raises(ValueError, match="bottleneck"):
        ConvAE(bottleneck="vq")
    with pytest.raises(ValueError, match="downsample"):
        ConvAE(downsample="avg")


def test_seed_ae_shapes_grayscale_and_rgb():
    for channels, size in ((1, 64), (3, 32), (1, 224)):
        x = torch.rand(1, channels, size, size)
        assert SeedAE(channels)(x).shape == x.shape
    with pytest.raises(ValueError, match="divisible by 8"):
        SeedAE()(torch.rand(1, 1, 36, 36))


def test_seed_ae_matches_the_published_architecture():
    model = SeedAE(in_channels=1)
    enc = [(type(m).__name__, getattr(m, "out_channels", None)) for m in model.encoder]
    assert enc == [
        ("Conv2d", 32), ("ReLU", None), ("MaxPool2d", None),
        ("Conv2d", 64), ("ReLU", None), ("MaxPool2d", None),
        ("Conv2d", 128), ("ReLU", None), ("MaxPool2d", None),
    ]  # fmt: skip
    dec = [(type(m).__name__, getattr(m, "out_channels", None)) for m in model.decoder]
    assert dec == [
        ("Conv2d", 128), ("ReLU", None), ("Upsample", None),
        ("Conv2d", 64), ("ReLU", None), ("Upsample", None),
        ("Conv2d", 32), ("ReLU", None), ("Upsample", None),
        ("Conv2d", 1),
    ]  # fmt: skip
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) and c.stride == (1, 1) for c in convs)
    assert all(m.kernel_size == 2 for m in model.encoder if isinstance(m, nn.MaxPool2d))
    assert all(
        m.scale_factor == 2 and m.mode == "nearest" for m in model.decoder if isinstance(m, nn.Upsample)
    )
    assert isinstance(model.decoder[-1], nn.Conv2d)  # linear output, no activation
    # Keras parameter count of this model: 9*(1*32+32*64+64*128+128*128+128*64+64*32+32*1) + biases.
    assert sum(p.numel() for p in model.parameters()) == 332_801


# --- training behaviour ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model_fn", [lambda: SeedAE(), lambda: ConvAE(1, (8, 16, 32), latent_dim=8, input_size=32)]
)
def test_gradients_reach_every_parameter(model_fn):
    torch.manual_seed(0)
    model = model_fn()
    x = _blobs(4, 32)
    reconstruction_loss("mse", model(x), x).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_same_seed_same_model_and_output():
    x = _blobs(2, 64)
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        model = build_model({"name": "conv_ae", "widths": [8, 16, 32], "latent_dim": 8, "input_size": 64})
        model.eval()
        outs.append(model(x))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


@pytest.mark.parametrize(
    ("model_fn", "lr"),
    [
        (lambda: SeedAE(widths=(8, 16, 32)), 3e-3),
        (lambda: ConvAE(1, (8, 16, 32), latent_dim=16, input_size=32), 3e-3),
    ],
)
def test_tiny_overfit_reduces_loss(model_fn, lr):
    torch.manual_seed(0)
    model = model_fn()
    x = _blobs(6, 32, seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = reconstruction_loss("mse", model(x), x)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


# --- losses ----------------------------------------------------------------------------------------------


def test_losses_zero_on_perfect_reconstruction():
    x = _blobs(2, 32)
    for name in ("mse", "l1", "ssim", "mse_ssim"):
        assert reconstruction_loss(name, x.clone(), x).item() == pytest.approx(0.0, abs=1e-5)


def test_masked_loss_averages_inside_the_mask_only():
    x = torch.zeros(2, 1, 8, 8)
    recon = torch.zeros_like(x)
    recon[:, :, :4] = 1.0  # error 1 in the top half, 0 below
    mask = torch.zeros_like(x, dtype=torch.bool)
    mask[0, :, :4] = True  # image 0: only the top half
    mask[1] = True  # image 1: everything
    # inside: 32 pixels of error 1 (image 0) + 32 of 1 and 32 of 0 (image 1) -> 64 / 96
    assert reconstruction_loss("mse", recon, x, mask).item() == pytest.approx(64 / 96)
    assert reconstruction_loss("l1", recon, x, mask.float()).item() == pytest.approx(64 / 96)
    assert reconstruction_loss("mse", recon, x).item() == pytest.approx(0.5)


def test_mse_ssim_is_the_weighted_sum():
    x, recon = _blobs(2, 32, seed=1), _blobs(2, 32, seed=2)
    mse = reconstruction_loss("mse", recon, x)
    ssim = reconstruction_loss("ssim", recon, x)
    both = reconstruction_loss("mse_ssim", recon, x, ssim_weight=0.25)
    assert both.item() == pytest.approx(0.75 * mse.item() + 0.25 * ssim.item())
    with pytest.raises(ValueError, match="unknown loss"):
        reconstruction_loss("huber", recon, x)


def test_ssim_map_matches_scikit_image_away_from_borders():
    rng = np.random.default_rng(0)
    a = rng.random((48, 48))
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1)
    _, ref = structural_similarity(
        a, b, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, full=True
    )
    ours = ssim_map(torch.from_numpy(a)[None, None], torch.from_numpy(b)[None, None])[0, 0].numpy()
    assert ours.shape == a.shape
    np.testing.assert_allclose(ours[5:-5, 5:-5], ref[5:-5, 5:-5], atol=1e-8)


# --- PCA baseline -----------------------------------------------------------------------------------------


def test_pca_reconstructs_its_training_set_with_n_minus_one_components():
    x = torch.rand(12, 1, 16, 16, dtype=torch.float64)
    pca = PCABaseline(n_components=11).fit(x)
    torch.testing.assert_close(pca(x), x, rtol=0, atol=1e-9)
    fewer = PCABaseline(n_components=3).fit(x)
    assert (fewer(x) - x).pow(2).mean() > 1e-4  # a real bottleneck


def test_pca_save_and_load_with_weights_only(tmp_path):
    x = _blobs(20, 32)
    pca = PCABaseline(n_components=5).fit(x)
    torch.save(pca.state_dict(), tmp_path / "pca.pt")
    state = torch.load(tmp_path / "pca.pt", weights_only=True)
    loaded = PCABaseline(n_components=5)
    loaded.load_state_dict(state)
    torch.testing.assert_close(loaded(x), pca(x))
    assert loaded.components.shape == (5, 32 * 32)


def test_pca_errors_are_clear():
    with pytest.raises(RuntimeError, match="not fitted"):
        PCABaseline()(torch.rand(1, 1, 8, 8))
    with pytest.warns(UserWarning, match="n_components"):
        pca = PCABaseline(n_components=50).fit(torch.rand(10, 1, 8, 8))
    assert pca.components.shape[0] == 10
    with pytest.raises(ValueError, match="fitted on images"):
        pca(torch.rand(1, 1, 16, 16))


# --- config group -----------------------------------------------------------------------------------------


def _model_yaml(name: str, image_size: int = 64) -> dict:
    """The model group as train.yaml composes it (input_size may interpolate preprocess.image_size)."""
    root = OmegaConf.create({"preprocess": {"image_size": image_size}, "seed": 0})
    root.model = OmegaConf.load(CONF / f"{name}.yaml")
    return OmegaConf.to_container(root.model, resolve=True)


@pytest.mark.parametrize("name", ["seed_ae", "conv_ae", "pca", "patchcore"])
def test_model_yamls_build(name):
    cfg = _model_yaml(name)
    assert cfg["name"] == name
    model_name, kwargs, train = split_model_config(cfg)
    assert model_name == name and {"lr", "loss", "weight_decay"} <= set(train)
    assert not {"lr", "loss", "weight_decay"} & set(kwargs)
    model = build_model(cfg)
    assert isinstance(model, {"seed_ae": SeedAE, "conv_ae": ConvAE, "pca": PCABaseline, "patchcore": PatchCore}[name])
    if name not in CLOSED_FORM:
        size = cfg.get("input_size", 64)
        assert model(torch.rand(2, 1, size, size)).shape == (2, 1, size, size)


def test_build_model_from_omegaconf_and_errors():
    cfg = OmegaConf.create({"name": "seed_ae", "in_channels": 3, "lr": 1e-3, "loss": "mse"})
    assert build_model(cfg).in_channels == 3
    with pytest.raises(ValueError, match="unknown model"):
        build_model({"name": "vae"})
    with pytest.raises(ValueError, match="bad parameters"):
        build_model({"name": "seed_ae", "depth": 4})
