"""PatchCore: the coreset, the bank, the map it makes, weights-only round trip, a trained trunk loaded, ONNX."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fbad.anomaly.module import AutoencoderModule
from fbad.anomaly.scoring import image_scores
from fbad.inference.backends import export_onnx, onnx_max_abs_diff
from fbad.models import PatchCore
from fbad.models.patchcore import gaussian_blur, greedy_coreset
from fbad.planes.classifier import make_weights
from fbad.planes.net import PlaneNet


def _textures(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Smooth random 'tissue' in [0.3, 0.7]: every image of one kind, none of them alike."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 1, size // 4, size // 4, generator=g)
    return 0.3 + 0.4 * nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


def test_greedy_coreset_covers_every_cluster_first():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    points = torch.cat([c + 0.1 * torch.randn(50, 2, generator=g) for c in centres])  # 4 tight clusters
    chosen = greedy_coreset(points, 4, seed=3)
    assert sorted((chosen // 50).tolist()) == [0, 1, 2, 3]  # one point of each cluster, whatever the start
    assert len(set(greedy_coreset(points, 60).tolist())) == 60  # never the same point twice


def test_gaussian_blur_keeps_the_mean_and_spreads_a_peak():
    x = torch.zeros(1, 1, 21, 21)
    x[0, 0, 10, 10] = 1.0
    y = gaussian_blur(x, 1.5)
    assert y.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert y[0, 0, 10, 10] < 0.2 and y[0, 0, 10, 12] > 0.01
    torch.testing.assert_close(gaussian_blur(x, 0.0), x)


def test_bank_size_follows_the_coreset_fraction_inside_the_mask():
    x = _textures(6)
    mask = torch.zeros_like(x)
    mask[..., :16, :] = 1  # the upper half: half the patches of the 8x8 grid of blocks (1, 2) at 32 px
    pc = PatchCore(widths=(8, 16, 32), blocks=(1, 2), coreset_fraction=0.25).fit(x, mask)
    assert pc.bank.shape == (int(np.ceil(0.25 * 6 * 32)), 16 + 32)
    # blocks in any order: the finest block's grid is the patch grid
    swapped = PatchCore(widths=(8, 16, 32), blocks=(2, 1), coreset_fraction=0.25).fit(x, mask)
    assert swapped.blocks == [1, 2] and swapped.bank.shape == pc.bank.shape


def test_a_foreign_patch_scores_highest_where_it_is():
    train, test = _textures(24, seed=0), _textures(4, seed=1)
    pc = PatchCore(widths=(8, 16, 32), blocks=(0, 1), coreset_fraction=0.5).fit(train)
    odd = test.clone()
    odd[:, :, 4:12, 18:26] = 0.0  # a black cyst in tissue that is never darker than 0.3
    with torch.no_grad():
        normal_map, odd_map = pc(test), pc(odd)
    assert normal_map.shape == odd_map.shape == (4, 1, 32, 32)
    assert (image_scores(odd_map, reduction="max") > image_scores(normal_map, reduction="max")).all()
    inside = odd_map[:, 0, 4:12, 18:26].mean((1, 2))
    outside = odd_map[:, 0, 20:, :12].mean((1, 2))
    assert (inside > 2 * outside).all()


def test_state_dict_round_trip_with_weights_only(tmp_path):
    x = _textures(8)
    pc = PatchCore(widths=(8, 16, 32), coreset_fraction=0.3, seed=1).fit(x)
    torch.save(pc.state_dict(), tmp_path / "pc.pt")
    loaded = PatchCore(widths=(8, 16, 32), seed=7)  # another seed: every weight must come from the file
    loaded.load_state_dict(torch.load(tmp_path / "pc.pt", weights_only=True))
    loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), pc(x))
    with pytest.raises(RuntimeError, match="no memory bank"):
        PatchCore(widths=(8, 16, 32))(x)


def test_a_plane_classifier_trunk_is_the_backbone(tmp_path):
    net = PlaneNet(4, widths=(8, 16, 32))
    for p in net.features.parameters():
        nn.init.normal_(p, 0.0, 0.3)
    path = tmp_path / "plane_classifier.pt"
    torch.save(make_weights(net, ["a", "b", "c", "d"], 96, "fov", 0.5), path)
    pc = PatchCore(widths=(8, 16, 32), weights=str(path)).fit(_textures(4))
    for k, v in net.features.state_dict().items():
        torch.testing.assert_close(pc.features.state_dict()[k], v)
    with pytest.raises(ValueError, match="widths"):
        PatchCore(widths=(8, 16, 64), weights=str(path)).fit(_textures(4))


def test_module_scores_patchcore_maps_as_maps_and_onnx_agrees(tmp_path):
    module = AutoencoderModule({"name": "patchcore", "widths": [8, 16, 32], "coreset_fraction": 0.5},
                               {"method": "error", "reduction": "max"})
    assert module.spec.method == "map" and module.spec.direction == "above"
    x = _textures(6)
    module.net.fit(x)
    mask = torch.ones_like(x)
    scores, amap, out = module.score_batch({"image": x, "mask": mask})
    torch.testing.assert_close(amap, out)  # the output is the map: no reconstruction error taken of it
    torch.testing.assert_close(scores, out.flatten(1).amax(1))
    path = export_onnx(module, tmp_path / "pc.onnx", 32)
    # unseen images: at a bank point itself the distance is ~0, where sqrt magnifies float rounding
    assert onnx_max_abs_diff(module, path, _textures(6, seed=5).numpy()) <= 1e-4
