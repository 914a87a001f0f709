"""From reconstructions to per-pixel anomaly maps and one score per image.

A map model's output is already the anomaly map (`method: map`, set by the model itself).

Every score has a direction: reconstruction errors are abnormal when ABOVE a threshold, the original
study's mean reconstruction intensity when BELOW it. `ScoreSpec.direction` carries that to thresholds
and metrics so nobody has to remember it.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

import torch

from fbad.models.losses import binary_mask, ssim_map

Direction = Literal["above", "below"]
MapKind = Literal["sq", "abs", "ssim"]
Reduction = Literal["mean", "topk", "max"]
Method = Literal["error", "mean_intensity", "map"]

DIRECTIONS: tuple[str, ...] = ("above", "below")


def anomaly_map(recon: torch.Tensor, x: torch.Tensor, kind: MapKind = "sq") -> torch.Tensor:
    """Per-pixel error (B, 1, H, W), averaged over channels."""
    if recon.shape != x.shape:
        raise ValueError(f"recon {tuple(recon.shape)} and input {tuple(x.shape)} differ in shape")
    if kind == "sq":
        err = (recon - x) ** 2
    elif kind == "abs":
        err = (recon - x).abs()
    elif kind == "ssim":
        err = 1.0 - ssim_map(recon, x)
    else:
        raise ValueError(f"unknown anomaly map kind {kind!r}; expected sq, abs or ssim")
    return err.mean(dim=1, keepdim=True)


def image_scores(
    amap: torch.Tensor,
    mask: torch.Tensor | None = None,
    reduction: Reduction = "mean",
    topk_percent: float = 1.0,
) -> torch.Tensor:
    """One score per image (B,) from a (B, 1, H, W) map, using only pixels inside the mask (> 0.5).

    `topk` is the mean of the highest `topk_percent` % of the pixels inside each image's mask (at least
    one pixel). An image with an empty mask gets NaN and a warning: a failed segmentation must not pass
    as a normal score.
    """
    b = amap.shape[0]
    values = amap.reshape(b, -1)
    if mask is None:
        inside = torch.ones_like(values, dtype=torch.bool)
    else:
        if mask.shape[0] != b or mask.shape[-2:] != amap.shape[-2:]:
            raise ValueError(f"mask {tuple(mask.shape)} does not match map {tuple(amap.shape)}")
        inside = binary_mask(mask).reshape(b, -1)
    count = inside.sum(dim=1)
    if bool((count == 0).any()):
        warnings.warn(
            f"{int((count == 0).sum())} image(s) have an empty mask; their scores are NaN", stacklevel=2
        )
    if reduction == "mean":
        total = torch.where(inside, values, torch.zeros_like(values)).sum(dim=1)
        return total / count.to(values.dtype)  # 0/0 -> NaN for empty masks
    if reduction == "max":
        masked = values.masked_fill(~inside, float("-inf")).amax(dim=1)
        return torch.where(count > 0, masked, torch.full_like(masked, float("nan")))
    if reduction == "topk":
        if not 0.0 < topk_percent <= 100.0:
            raise ValueError(f"topk_percent must lie in (0, 100], got {topk_percent}")
        k = torch.ceil(count.to(torch.float64) * topk_percent / 100.0).long().clamp_min(1)
        kmax = int(k.max())
        # Per-image k: take the largest kmax (outside-mask pixels sort last as -inf), then average the
        # first k of them with a rank mask.
        top = values.masked_fill(~inside, float("-inf")).topk(kmax, dim=1).values
        keep = torch.arange(kmax, device=values.device)[None, :] < k[:, None]
        total = torch.where(keep, top, torch.zeros_like(top)).sum(dim=1)
        scores = total / k.to(values.dtype)
        return torch.where(count > 0, scores, torch.full_like(scores, float("nan")))
    raise ValueError(f"unknown reduction {reduction!r}; expected mean, topk or max")


def mean_intensity(recon: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The original study's score (B,): mean reconstruction intensity; abnormal when BELOW its threshold."""
    return image_scores(recon.mean(dim=1, keepdim=True), mask, reduction="mean")


@dataclass(frozen=True)
class ScoreSpec:
    """How to turn (recon, input, mask) into image scores, and which side of a threshold is abnormal."""

    method: Method = "error"
    map_kind: MapKind = "sq"
    reduction: Reduction = "mean"
    topk_percent: float = 1.0

    def __post_init__(self) -> None:
        if self.method not in ("error", "mean_intensity", "map"):
            raise ValueError(f"unknown scoring method {self.method!r}; expected error, mean_intensity or map")

    @property
    def direction(self) -> Direction:
        return "below" if self.method == "mean_intensity" else "above"

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> ScoreSpec:
        cfg = dict(cfg or {})
        known = {f.name for f in fields(cls)}
        unknown = set(cfg) - known
        if unknown:
            raise ValueError(f"unknown scoring keys {sorted(unknown)}; expected {sorted(known)}")
        return cls(**cfg)


def pixel_map(output: torch.Tensor, x: torch.Tensor, spec: ScoreSpec) -> torch.Tensor:
    """The per-pixel anomaly map (B, 1, H, W) of a model's output: the output itself for a map model
    (`method: map`), else the reconstruction error (squared for the mean-intensity rule, which has no map)."""
    if spec.method == "map":
        return output
    return anomaly_map(output, x, spec.map_kind if spec.method == "error" else "sq")


def score_images(
    recon: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None = None, spec: ScoreSpec | None = None
) -> torch.Tensor:
    """Image scores (B,) under `spec` (default: mean squared error inside the mask)."""
    spec = spec or ScoreSpec()
    if spec.method == "mean_intensity":
        return mean_intensity(recon, mask)
    return image_scores(pixel_map(recon, x, spec), mask, spec.reduction, spec.topk_percent)
