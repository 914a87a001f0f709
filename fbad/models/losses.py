"""Reconstruction losses, all maskable so training only looks inside the brain.

SSIM is written here as a per-pixel map (Gaussian window, Wang et al. 2004) rather than taken from
torchmetrics, because masking and per-pixel anomaly maps both need the map, not its mean.
"""

from __future__ import annotations

import torch
from torchmetrics.functional.image import structural_similarity_index_measure

LOSSES = ("mse", "l1", "ssim", "mse_ssim")


def ssim_map(
    x: torch.Tensor,
    y: torch.Tensor,
    window: int = 11,
    sigma: float = 1.5,
    data_range: float = 1.0,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Per-pixel, per-channel SSIM (B, C, H, W) with Gaussian weights (Wang et al. 2004), from torchmetrics;
    borders use reflect padding so the map keeps the input size.

    Away from the borders it equals scikit-image's `structural_similarity(..., gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, full=True)` map (and the hand-written version fbad had before,
    to 2e-6).
    """
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"ssim_map needs two (B, C, H, W) tensors of one shape, got {x.shape} and {y.shape}")
    _, full = structural_similarity_index_measure(
        x, y, gaussian_kernel=True, sigma=sigma, kernel_size=window, data_range=data_range, k1=k1, k2=k2,
        reduction="none", return_full_image=True)
    return full


def binary_mask(mask: torch.Tensor) -> torch.Tensor:
    """Bool mask from a bool or float one (a resized float mask counts where it is above 0.5)."""
    return mask if mask.dtype == torch.bool else mask > 0.5


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of `values` (B, C, H, W) over pixels where the (B, 1, H, W) mask is set, pooled over the batch."""
    if mask is None:
        return values.mean()
    m = binary_mask(mask).to(values.dtype).expand_as(values)
    return (values * m).sum() / m.sum().clamp_min(1.0)


def reconstruction_loss(
    name: str,
    recon: torch.Tensor,
    x: torch.Tensor,
    mask: torch.Tensor | None = None,
    ssim_weight: float = 0.5,
) -> torch.Tensor:
    """Scalar loss between `recon` and `x`, averaged only inside `mask` when one is given.

    `mse_ssim` = (1 - ssim_weight) * MSE + ssim_weight * (1 - SSIM).
    """
    if recon.shape != x.shape:
        raise ValueError(f"recon {tuple(recon.shape)} and input {tuple(x.shape)} differ in shape")
    if name == "mse":
        return masked_mean((recon - x) ** 2, mask)
    if name == "l1":
        return masked_mean((recon - x).abs(), mask)
    if name == "ssim":
        return masked_mean(1.0 - ssim_map(recon, x), mask)
    if name == "mse_ssim":
        if not 0.0 <= ssim_weight <= 1.0:
            raise ValueError(f"ssim_weight must lie in [0, 1], got {ssim_weight}")
        mse = masked_mean((recon - x) ** 2, mask)
        ssim = masked_mean(1.0 - ssim_map(recon, x), mask)
        return (1.0 - ssim_weight) * mse + ssim_weight * ssim
    raise ValueError(f"unknown loss {name!r}; expected one of {LOSSES}")
