"""PatchCore: a memory bank of patch features of normal images; a pixel is as abnormal as its patch is far
from every normal patch (Roth et al., "Towards Total Recall in Industrial Anomaly Detection", CVPR 2022).

Its output is an anomaly map, not a reconstruction (`output_kind = "map"`), so the scoring code takes it as
the per-pixel map. The backbone is fbad's small CNN trunk (`fbad.models.backbone`), in-domain: no ImageNet
weights exist on this machine. It is either
- `random`: seeded random convolutions, with batch-norm statistics taken from the normal training images
  (the bank compares patches of one network, so the features need not be semantic, only stable), or
- `weights: <file>`: the trunk of a trained plane classifier (`fbad train-planes`' `plane_classifier.pt`, or
  any weights file whose `state_dict` holds `features.*` of the same layout and whose `model` names its
  `widths` / `convs_per_block`), so the features are those that tell brain planes apart on real frames.

The bank is kept as a buffer, so `model.pt` is self-contained (weights_only loading) and ONNX-exportable
(distances by matrix products, no cdist).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fbad.models.backbone import DEFAULT_WIDTHS, block_outputs, conv_blocks

log = logging.getLogger(__name__)


class PatchCore(nn.Module):
    output_kind = "map"

    def __init__(self, widths: Sequence[int] = DEFAULT_WIDTHS, convs_per_block: int = 2,
                 blocks: Sequence[int] = (1, 2), weights: str | None = None, coreset_fraction: float = 0.1,
                 max_bank: int = 16384, blur_sigma: float = 1.0, seed: int = 0) -> None:
        super().__init__()
        if not 0.0 < coreset_fraction <= 1.0:
            raise ValueError(f"coreset_fraction must lie in (0, 1], got {coreset_fraction}")
        self.widths, self.convs_per_block = [int(w) for w in widths], int(convs_per_block)
        self.blocks = sorted({int(b) for b in blocks})  # finest first: the grid every feature is brought to
        if not self.blocks or max(self.blocks) >= len(self.widths) or min(self.blocks) < 0:
            raise ValueError(f"blocks {self.blocks} must index the {len(self.widths)} blocks of widths {self.widths}")
        self.weights = weights or None
        self.coreset_fraction, self.max_bank = float(coreset_fraction), int(max_bank)
        self.blur_sigma, self.seed = float(blur_sigma), int(seed)
        torch.manual_seed(self.seed)
        self.features = conv_blocks(self.widths, self.convs_per_block)
        self.register_buffer("bank", torch.empty(0, 0))  # (M, D) normal patch features, filled by fit()

    @property
    def is_fitted(self) -> bool:
        return self.bank.numel() > 0

    def patch_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D, h, w) locally aggregated features of the chosen blocks at the finest block's grid."""
        maps = block_outputs(self.features, x, self.blocks)
        size = maps[0].shape[-2:]
        # 3x3 neighbourhood aggregation (PatchCore section 3.1), deeper blocks upsampled to the finest grid
        maps = [F.avg_pool2d(m, 3, stride=1, padding=1) for m in maps]
        maps = [m if m.shape[-2:] == size else F.interpolate(m, size=size, mode="bilinear", align_corners=False)
                for m in maps]
        return torch.cat(maps, dim=1)

    @torch.no_grad()
    def fit(self, x: torch.Tensor, mask: torch.Tensor | None = None, batch_size: int = 64) -> PatchCore:
        """Fill the bank from normal training images (N, 1, H, W); with a brain mask only patches inside it."""
        if self.weights:
            self.load_backbone(self.weights)
        else:
            self._adapt_batchnorm(x, batch_size)
        self.eval()
        feats = []
        for i in range(0, len(x), batch_size):
            f = self.patch_features(x[i:i + batch_size])
            f = f.permute(0, 2, 3, 1).reshape(-1, f.shape[1])
            if mask is not None:
                m = F.adaptive_avg_pool2d(mask[i:i + batch_size].float(), self._grid(x)).reshape(-1) > 0.5
                f = f[m] if bool(m.any()) else f
            feats.append(f)
        bank = torch.cat(feats)
        n = min(self.max_bank, max(1, math.ceil(self.coreset_fraction * len(bank))))
        self.bank = bank[greedy_coreset(bank, n, self.seed)].contiguous() if n < len(bank) else bank
        log.info("patchcore: %d patches of %d dims -> a bank of %d", len(bank), bank.shape[1], len(self.bank))
        return self

    def _grid(self, x: torch.Tensor) -> tuple[int, int]:
        f = 2 ** (min(self.blocks) + 1)
        return x.shape[-2] // f, x.shape[-1] // f

    def _adapt_batchnorm(self, x: torch.Tensor, batch_size: int) -> None:
        """Batch-norm statistics of the random trunk from the training images (a cumulative average)."""
        for m in self.features.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None
        self.features.train()
        for i in range(0, len(x), batch_size):
            block_outputs(self.features, x[i:i + batch_size], self.blocks)
        self.features.eval()

    def load_backbone(self, path: str | Path) -> None:
        """The `features.*` weights of a trained trunk of the same layout (a plane classifier's file)."""
        blob = torch.load(str(path), map_location="cpu", weights_only=True)
        state = blob.get("state_dict", blob) if isinstance(blob, dict) else blob
        spec = blob.get("model", {}) if isinstance(blob, dict) else {}
        widths = [int(w) for w in spec.get("widths", self.widths)]
        cpb = int(spec.get("convs_per_block", self.convs_per_block))
        if widths != self.widths or cpb != self.convs_per_block:
            raise ValueError(f"backbone weights {path}: widths {widths} x {cpb} convs, but the model is configured "
                             f"with widths {self.widths} x {self.convs_per_block}; set model.widths to match")
        trunk = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
        if not trunk:
            raise ValueError(f"backbone weights {path}: no features.* tensors in its state_dict")
        self.features.load_state_dict(trunk)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Anomaly map (B, 1, H, W): distance of each patch to its nearest normal patch, upsampled, smoothed."""
        if not self.is_fitted:
            raise RuntimeError("PatchCore has no memory bank; call fit(normal images) or load_state_dict first")
        f = self.patch_features(x)
        b, d, h, w = f.shape
        q = f.permute(0, 2, 3, 1).reshape(-1, d)
        # squared distances by ||q||^2 - 2 q.m + ||m||^2 (ONNX-exportable, one matrix product)
        d2 = (q * q).sum(1, keepdim=True) - 2.0 * q @ self.bank.T + (self.bank * self.bank).sum(1)[None]
        dist = d2.amin(dim=1).clamp_min(0.0).sqrt().reshape(b, 1, h, w)
        amap = F.interpolate(dist, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return gaussian_blur(amap, self.blur_sigma * int(x.shape[-1]) / 64.0)  # int(): a constant when traced

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        saved = state_dict.get(prefix + "bank")
        if saved is not None:  # the bank starts empty; take the saved shape
            self.bank = torch.empty_like(saved, device=self.bank.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def greedy_coreset(features: torch.Tensor, n: int, seed: int = 0, projection_dim: int = 128) -> torch.Tensor:
    """Indices of `n` rows chosen by greedy k-center selection (Sener & Savarese 2018), on a random
    projection of the features as PatchCore does: the bank then covers every kind of normal patch, rare
    ones included, at a fraction of the size."""
    gen = torch.Generator().manual_seed(seed)
    z = features
    if features.shape[1] > projection_dim:
        proj = torch.randn(features.shape[1], projection_dim, generator=gen) / math.sqrt(projection_dim)
        z = features @ proj.to(features)
    chosen = torch.empty(n, dtype=torch.long)
    chosen[0] = int(torch.randint(len(z), (1,), generator=gen))
    nearest = ((z - z[chosen[0]]) ** 2).sum(1)
    for i in range(1, n):
        chosen[i] = nearest.argmax()
        nearest = torch.minimum(nearest, ((z - z[chosen[i]]) ** 2).sum(1))
    return chosen


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian smoothing of (B, 1, H, W) maps (reflect borders); sigma <= 0 leaves them as they are."""
    if sigma <= 0:
        return x
    radius = max(1, int(round(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), k.view(1, 1, -1, 1))
