"""How good is an enhancement? Full-reference and region metrics against a noise-free image.

On the phantom the noise-free `clean` image and the brain / skull masks are known, so speckle
reduction, contrast and edge keeping can be measured rather than judged by eye. All functions take
float images in [0, 1] (H, W) and boolean (or 0/1) masks of the same shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import combinations

import cv2
import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity


def _f64(img: np.ndarray) -> np.ndarray:
    return np.asarray(img, dtype=np.float64)


def _mask(mask: np.ndarray, shape: tuple[int, ...], name: str = "mask") -> np.ndarray:
    m = np.asarray(mask).astype(bool)
    if m.shape != shape:
        raise ValueError(f"{name} shape {m.shape} differs from the image shape {shape}")
    if not m.any():
        raise ValueError(f"{name} is empty")
    return m


def _same_shape(img: np.ndarray, ref: np.ndarray) -> None:
    if np.shape(img) != np.shape(ref):
        raise ValueError(f"image shape {np.shape(img)} differs from the reference shape {np.shape(ref)}")


def psnr(img: np.ndarray, ref: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB for data range 1 (inf for identical images)."""
    _same_shape(img, ref)
    if np.array_equal(img, ref):
        return float("inf")
    return float(peak_signal_noise_ratio(_f64(ref), _f64(img), data_range=1.0))


def ssim(img: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Structural similarity (skimage, data range 1); with a mask, the SSIM map averaged inside it."""
    _same_shape(img, ref)
    mean, full = structural_similarity(_f64(ref), _f64(img), data_range=1.0, full=True)
    if mask is None:
        return float(mean)
    return float(full[_mask(mask, full.shape)].mean())


def cnr(img: np.ndarray, roi_mask: np.ndarray, background_mask: np.ndarray) -> float:
    """Contrast-to-noise ratio |mu_a - mu_b| / sqrt(sigma_a^2 + sigma_b^2) between two regions."""
    x = _f64(img)
    a, b = x[_mask(roi_mask, x.shape, "roi_mask")], x[_mask(background_mask, x.shape, "background_mask")]
    diff, noise = abs(a.mean() - b.mean()), np.sqrt(a.var() + b.var())
    if noise == 0:
        return float("inf") if diff > 0 else 0.0
    return float(diff / noise)


def speckle_index(img: np.ndarray, mask: np.ndarray) -> float:
    """sigma / mu inside a (homogeneous) region: lower means less speckle; nan for a black region."""
    x = _f64(img)[_mask(mask, np.shape(img))]
    mu = x.mean()
    return float(x.std() / mu) if mu > 0 else float("nan")


def edge_preservation(img: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Edge preservation index (Sattar et al. 1997): correlation of the Laplacian high-pass images.

    1 = the edges of ref are all there with the same shape; near 0 = unrelated; nan if either
    high-pass image is flat (no edges to compare).
    """
    _same_shape(img, ref)
    hp = [cv2.Laplacian(_f64(a), cv2.CV_64F, ksize=1, borderType=cv2.BORDER_REPLICATE) for a in (img, ref)]
    if mask is not None:
        m = _mask(mask, np.shape(img))
        hp = [h[m] for h in hp]
    d, r = (h.ravel() - h.mean() for h in hp)
    den = np.sqrt((d * d).sum() * (r * r).sum())
    return float((d * r).sum() / den) if den > 0 else float("nan")


def enhancement_metrics(enhanced: np.ndarray, clean: np.ndarray, masks: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Every metric of an enhanced image against its noise-free version, per region where it applies.

    Keys: psnr, ssim, epi (whole image); for each non-empty mask NAME: ssim_NAME, epi_NAME,
    speckle_index_NAME, cnr_NAME (region vs the rest of the image); for each pair of masks A, B in
    the given order: cnr_A_vs_B. Empty masks are skipped.
    """
    _same_shape(enhanced, clean)
    out = {"psnr": psnr(enhanced, clean), "ssim": ssim(enhanced, clean), "epi": edge_preservation(enhanced, clean)}
    regions = {k: np.asarray(m).astype(bool) for k, m in masks.items()}
    regions = {k: m for k, m in regions.items() if m.any()}
    for name, m in regions.items():
        out[f"ssim_{name}"] = ssim(enhanced, clean, m)
        out[f"epi_{name}"] = edge_preservation(enhanced, clean, m)
        out[f"speckle_index_{name}"] = speckle_index(enhanced, m)
        if (~m).any():
            out[f"cnr_{name}"] = cnr(enhanced, m, ~m)
    for (a, ma), (b, mb) in combinations(regions.items(), 2):
        if (ma & ~mb).any() and (mb & ~ma).any():
            out[f"cnr_{a}_vs_{b}"] = cnr(enhanced, ma & ~mb, mb & ~ma)
    return out
