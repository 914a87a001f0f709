"""Reconstruction losses, all maskable so training only looks inside the brain.

SSIM is written here as a per-pixel map (Gaussian window, Wang et al. 2004) rather than taken from
torchmetrics, because masking and per-pixel anomaly maps both need the map, not its mean.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("mse", "l1", "ssim", "mse_ssim")


def _gaussian_kernel(window: int, sigma: float, channels: int, like: torch.Tensor) -> torch.Tensor:
    coords = torch.arange(window, dtype=like.dtype, device=like.device) - (window - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, window, window).contiguous()


def ssim_map(
    x: torch.Tensor,
    y: torch.Tensor,
    window: int = 11,
    sigma: float = 1.5,
    data_range: float = 1.0,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Per-pixel, per-channel SSIM (B, C, H, W); borders use reflect padding so the map keeps the input size.

    Away from the borders it equals scikit-image's `structural_similarity(..., gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, full=True)` map.
    """
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"ssim_map needs two (B, C, H, W) tensors of one shape, got {x.shape} and {y.shape}")
    c = x.shape[1]
    kernel = _gaussian_kernel(window, sigma, c, x)
    pad = window // 2
    # One grouped conv over the five statistics keeps it a single pass.
    stats = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    stats = F.pad(stats, (pad, pad, pad, pad), mode="reflect")
    blurred = F.conv2d(stats, kernel.repeat(5, 1, 1, 1), groups=5 * c)
    mu_x, mu_y, e_xx, e_yy, e_xy = blurred.split(c, dim=1)
    var_x = e_xx - mu_x * mu_x
    var_y = e_yy - mu_y * mu_y
    cov = e_xy - mu_x * mu_y
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return num / den


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
