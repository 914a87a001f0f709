"""Speckle physics for lesion insertion: the display <-> envelope mapping, local statistics, new speckle.

Model (standard B-mode speckle model):

* A scanner displays the log-compressed envelope: ``g = 255 * (1 + 20 log10(A / A_max) / DR)`` clipped
  to 0..255, with a dynamic range ``DR`` in dB (clinical default displays use 50-70 dB; fbad assumes
  60 dB, `DEFAULT_DYNAMIC_RANGE_DB`). Inverting it gives the envelope ``A`` up to a scale, and its log
  ``L = ln A`` is linear in the grey level, so local log statistics are local grey-level statistics.
* Fully developed speckle (many random scatterers per resolution cell) has a circular complex Gaussian
  echo signal, so its envelope is Rayleigh distributed (Burckhardt, "Speckle in ultrasound B-mode
  scans", IEEE Trans. Sonics Ultrason. 1978; Goodman, "Speckle phenomena in optics", 2007). After log
  compression the envelope's standard deviation is ``pi / sqrt(24)`` nepers = 5.57 dB whatever the mean
  (Tuthill, Sperry & Parker, "Deviations from Rayleigh statistics in ultrasonic speckle", Ultrasonic
  Imaging 1988; Kaplan & Ma 1994 for log-compressed speckle): speckle is multiplicative, and a lesion's
  echogenicity only shifts its log envelope.
* Real scanners filter and compound, so displayed speckle is smoother than Rayleigh, and tissue is not a
  uniform scatterer: its scatterer density varies above the resolution cell (the product, or compound,
  model of B-mode texture behind the K and Nakagami distributions: Jakeman & Pusey 1976; Shankar,
  "A general statistical model for ultrasonic backscattering from tissues", IEEE TUFFC 2000). fbad models
  the local log envelope in one of two ways. `MatchedTexture` (the default): the correlated Rayleigh field
  is mapped through its own CDF to uniform ranks (probability integral transform), mixed with a coarser
  Gaussian texture field in the share of variance the frame has above the speckle scale, and mapped
  through the empirical quantiles of the surrounding tissue's log-envelope fluctuations (histogram
  matching, as in Heeger & Bergen's texture synthesis, SIGGRAPH 1995): the grain is the frame's PSF, the
  grey-level distribution exactly the local tissue's, whatever the scanner's filtering and grey map did.
  `TextureModel` (textbook): ``ln mu + k (ln S - E ln S) + tau G``, a power of the Rayleigh field (k < 1
  is partly reduced speckle) plus the Gaussian texture field, with k and tau solved from the fine-scale
  and window-scale log variances measured the same way on the frame and on a reference patch.
* The speckle grain is the autocorrelation of the point-spread function (Wagner et al., "Statistics of
  speckle in ultrasound B-scans", IEEE Trans. Sonics Ultrason. 1983). fbad measures the frame's local
  autocorrelation, fits a Gaussian (a 2x2 covariance, so the grain's size and its orientation, lateral
  elongation in a sector image, come from the frame), and makes new speckle by filtering complex white
  noise with a Gaussian kernel of that covariance (the envelope's intensity autocorrelation is the
  squared field autocorrelation, Jensen, "Field II", Med. Biol. Eng. Comput. 1996 / Goodman): the same
  construction a simulator such as Field II uses, with the frame's own PSF size. A light low-pass of the
  ranks (`POST_FILTER`) stands in for the scanner's post-filtering, which rounds off Rayleigh's nulls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.special import ndtr, ndtri

DEFAULT_DYNAMIC_RANGE_DB = 60.0
LOG_RAYLEIGH_STD = math.pi / math.sqrt(24.0)  # std of ln(Rayleigh envelope), nepers (= 5.57 dB)
EULER_GAMMA = 0.5772156649015329
NEPER_DB = 20.0 / math.log(10.0)  # dB per neper of amplitude
DETREND_SIGMA = 8.0  # px: fluctuations below this scale are "fine" (speckle), the rest texture and anatomy
# Kernel covariance = measured grain / LOG_ACF_RATIO. On raw Rayleigh fields `speckle_covariance` reads
# 0.41-0.50 of the kernel's covariance (0.55 for very fine grains): the log's sharp nulls steepen the lobe
# at the origin. Real frames have smooth lobes (their scanner post-filtered them), and so does the
# synthetic texture after `POST_FILTER`; side by side on HC18 frames the grain matches best with the
# kernel set to the measured grain itself, hence 1 (a visual calibration, not a fitted one).
LOG_ACF_RATIO = 1.0


def to_log_envelope(image: np.ndarray, dynamic_range_db: float = DEFAULT_DYNAMIC_RANGE_DB) -> np.ndarray:
    """Displayed grey level -> log envelope ``ln(A / A_max)`` (nepers, <= 0), inverting the log compression."""
    g = np.asarray(image, dtype=np.float64)
    return (g / 255.0 - 1.0) * (dynamic_range_db / NEPER_DB)


def from_log_envelope(log_env: np.ndarray | float, dynamic_range_db: float = DEFAULT_DYNAMIC_RANGE_DB) -> np.ndarray:
    """Log envelope (nepers) -> grey level as float, not clipped: the inverse of `to_log_envelope`."""
    return 255.0 * (1.0 + np.asarray(log_env, dtype=np.float64) * (NEPER_DB / dynamic_range_db))


def to_envelope(image: np.ndarray, dynamic_range_db: float = DEFAULT_DYNAMIC_RANGE_DB) -> np.ndarray:
    """Displayed grey level -> envelope amplitude relative to the display's maximum (10**(-DR/20) .. 1)."""
    return np.exp(to_log_envelope(image, dynamic_range_db))


def to_display(envelope: np.ndarray, dynamic_range_db: float = DEFAULT_DYNAMIC_RANGE_DB) -> np.ndarray:
    """Envelope -> 8-bit display: log compression, clipping to the dynamic range, rounding."""
    with np.errstate(divide="ignore"):
        log_env = np.log(np.maximum(np.asarray(envelope, dtype=np.float64), 0.0))
    return quantize(from_log_envelope(log_env, dynamic_range_db))


def quantize(gray: np.ndarray) -> np.ndarray:
    """Float grey levels -> uint8 (rounded, clipped as the display clips below the floor and above white)."""
    return np.clip(np.rint(gray), 0, 255).astype(np.uint8)


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur (replicated border) in float32; wide ones at reduced resolution, as an image pyramid does.

    A blur of sigma > 6 px is done on a copy downsampled (area averaging) by about sigma / 3 and
    upsampled back bilinearly: the same low-pass at a fraction of the cost of a 6-sigma-wide kernel.
    """
    a = np.asarray(img, dtype=np.float32)
    h, w = a.shape
    f = int(sigma // 3) if sigma > 6 else 1
    if f <= 1 or min(h, w) < 4 * f:
        return cv2.GaussianBlur(a, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE).astype(np.float64)
    small = cv2.resize(a, (max(1, round(w / f)), max(1, round(h / f))), interpolation=cv2.INTER_AREA)
    sf = small.shape[1] / w
    small = cv2.GaussianBlur(small, (0, 0), math.sqrt(max(sigma**2 * sf * sf - 0.25, 0.25)),
                             borderType=cv2.BORDER_REPLICATE)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float64)


def weighted_blur(values: np.ndarray, weights: np.ndarray, sigma: float) -> np.ndarray:
    """Normalised convolution (Knutsson & Westin 1993): a Gaussian-window mean over the weighted pixels only.

    Lets local statistics ignore pixels that are not tissue (outside the fan, skull, the lesion's own band).
    """
    w = np.asarray(weights, dtype=np.float64)
    num = gaussian_blur(np.asarray(values, dtype=np.float64) * w, sigma)
    den = gaussian_blur(w, sigma)
    return num / np.maximum(den, 1e-6)


def local_log_stats(log_env: np.ndarray, weights: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Local mean and standard deviation of the log envelope in a Gaussian window of `sigma` pixels."""
    mean = weighted_blur(log_env, weights, sigma)
    mean_sq = weighted_blur(log_env * log_env, weights, sigma)
    return mean, np.sqrt(np.maximum(mean_sq - mean * mean, 0.0))


def speckle_covariance(log_env: np.ndarray, weights: np.ndarray, max_lag: int = 4,
                       detrend_sigma: float = DETREND_SIGMA, fallback: float = 2.0) -> np.ndarray:
    """Gaussian fit (2x2 covariance in (x, y) pixels) to the main lobe of the local speckle autocorrelation.

    The log envelope minus its local mean (normalised convolution over `weights`) is autocorrelated by
    FFT, normalised by the autocorrelation of the weights (masked autocorrelation), and
    ``-2 ln rho = a dx**2 + 2 b dx dy + c dy**2`` is fitted by least squares on the lags up to `max_lag`
    where rho > 0.5: the curvature of the lobe at the origin, which sets the grain one sees. (Real tissue
    adds long, laterally extended correlation from specular interfaces; a fit over all lags would average
    it into a grain several times too long. That part is left to the coarse texture field.)
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.sum() < 64:
        return np.eye(2) * fallback**2
    fluct = (log_env - weighted_blur(log_env, w, detrend_sigma)) * w
    h, wd = fluct.shape
    ph, pw = cv2.getOptimalDFTSize(h + max_lag + 1), cv2.getOptimalDFTSize(wd + max_lag + 1)
    f_hat = np.fft.rfft2(fluct, s=(ph, pw))
    m_hat = np.fft.rfft2(w, s=(ph, pw))
    ac = np.fft.irfft2(np.abs(f_hat) ** 2, s=(ph, pw))
    an = np.fft.irfft2(np.abs(m_hat) ** 2, s=(ph, pw))
    lags = np.arange(-max_lag, max_lag + 1)
    ac = ac[np.ix_(lags % ph, lags % pw)]
    an = an[np.ix_(lags % ph, lags % pw)]
    ok = an > 16
    rho = np.where(ok, ac / np.maximum(an, 1.0), 0.0)
    if rho[max_lag, max_lag] <= 0:
        return np.eye(2) * fallback**2
    rho = rho / rho[max_lag, max_lag]
    dy, dx = np.meshgrid(lags, lags, indexing="ij")
    sel = ok & (rho > 0.5) & (rho < 1.0)
    if sel.sum() < 4:
        return np.eye(2) * fallback**2
    x, y, r = dx[sel].astype(np.float64), dy[sel].astype(np.float64), rho[sel]
    design = np.stack([x * x, 2 * x * y, y * y], axis=1)
    coef, *_ = np.linalg.lstsq(design, -2.0 * np.log(r), rcond=None)
    prec = np.array([[coef[0], coef[1]], [coef[1], coef[2]]])
    evals, evecs = np.linalg.eigh(prec)
    if not np.all(np.isfinite(evals)) or evals.max() <= 0:
        return np.eye(2) * fallback**2
    var = np.clip(1.0 / np.maximum(evals, 1e-9), 0.5**2, 16.0**2)
    return (evecs * var) @ evecs.T


def gaussian_kernel(cov: np.ndarray, truncate: float = 3.0) -> np.ndarray:
    """Anisotropic Gaussian kernel exp(-x^T cov^-1 x / 2) (rows = y, cols = x), unit L2 norm."""
    cov = np.asarray(cov, dtype=np.float64)
    r = int(math.ceil(truncate * math.sqrt(max(np.linalg.eigvalsh(cov).max(), 0.25))))
    ys, xs = np.mgrid[-r:r + 1, -r:r + 1].astype(np.float64)
    p = np.linalg.inv(cov)
    q = p[0, 0] * xs * xs + 2 * p[0, 1] * xs * ys + p[1, 1] * ys * ys
    k = np.exp(-0.5 * q)
    return (k / np.sqrt((k * k).sum())).astype(np.float32)


def correlated_rayleigh(shape: tuple[int, int], kernel_cov: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rayleigh envelope field with E[S**2] = 1: |h * n|, complex white noise n through a Gaussian PSF h.

    The filtered field stays circular Gaussian, so |.| is exactly Rayleigh; h has unit L2 norm, so
    E|h * n|**2 = E|n|**2 = 1 without any sample estimate. The intensity autocorrelation is the squared
    field autocorrelation, a Gaussian with the kernel's covariance `kernel_cov` (px^2, x then y).
    """
    kern = gaussian_kernel(kernel_cov)
    pad = kern.shape[0] // 2
    h, w = shape[0] + 2 * pad, shape[1] + 2 * pad
    noise = rng.standard_normal((2, h, w), dtype=np.float32) * np.float32(math.sqrt(0.5))
    re = cv2.filter2D(noise[0], -1, kern, borderType=cv2.BORDER_CONSTANT)[pad:pad + shape[0], pad:pad + shape[1]]
    im = cv2.filter2D(noise[1], -1, kern, borderType=cv2.BORDER_CONSTANT)[pad:pad + shape[0], pad:pad + shape[1]]
    return np.hypot(re, im).astype(np.float64)


_REF_SHAPE = (160, 160)
COARSE_SCALE = 1.5  # coarse texture field's correlation length / the speckle kernel's
COARSE_MAX = 0.5
POST_FILTER = 0.3  # post-filter covariance / speckle kernel covariance
_REF_SEED = 0x7E57


def fine_variance(log_env: np.ndarray, weights: np.ndarray, sigma: float, detrend: float = DETREND_SIGMA) -> np.ndarray:
    """Local variance (window `sigma`) of the log envelope minus its local mean at the `detrend` scale."""
    fluct = log_env - weighted_blur(log_env, weights, detrend)
    return weighted_blur(fluct * fluct, weights, sigma)


def window_variance(log_env: np.ndarray, weights: np.ndarray, sigma: float) -> np.ndarray:
    """Local variance of the log envelope in a Gaussian window of `sigma` (all scales below the window)."""
    return local_log_stats(log_env, weights, sigma)[1] ** 2


@dataclass(frozen=True)
class TextureModel:
    """Synthetic texture matched to a frame: Rayleigh grain kernel, speckle exponent k, texture amplitude tau."""

    kernel_cov: np.ndarray  # covariance of the Gaussian PSF kernel filtering complex noise (x, y), px^2
    k: float
    tau: float  # nepers: std of the coarse Gaussian texture field
    grain_cov: np.ndarray  # the frame's measured grain (`speckle_covariance`)

    @property
    def texture_cov(self) -> np.ndarray:
        """The coarse texture field's correlation: twice the grain's length in every direction."""
        return 4.0 * self.grain_cov

    @classmethod
    def fit(cls, grain_cov: np.ndarray, fine_var: float, window_var: float, sigma: float) -> TextureModel:
        """Match a reference synthetic patch to the frame's measurements (moments, measured the same way).

        Kernel: the grain covariance over `LOG_ACF_RATIO`. Then k from the fine-scale variance,
        ``k**2 = fine_var / f_S``, and tau from what the speckle leaves of the window variance,
        ``tau**2 = (window_var - k**2 w_S) / w_G``, where f_*, w_* are the same variances measured on a
        reference Rayleigh log envelope (S) and a reference unit texture field (G). k is capped at 1
        (fully developed speckle): more fine-scale spread than Rayleigh is structure, given to G.
        """
        target = _project_pd(np.asarray(grain_cov, dtype=np.float64))
        kern = _project_pd(target / LOG_ACF_RATIO)
        ones = np.ones(_REF_SHAPE)
        ref = np.log(np.maximum(correlated_rayleigh(_REF_SHAPE, kern, np.random.default_rng(_REF_SEED)), 1e-12))
        ref -= ref.mean()
        tex = gaussian_field(_REF_SHAPE, 4.0 * target, np.random.default_rng(_REF_SEED + 1))
        inner = (slice(32, -32), slice(32, -32))
        f_s = float(fine_variance(ref, ones, sigma)[inner].mean())
        w_s = float(window_variance(ref, ones, sigma)[inner].mean())
        w_g = float(window_variance(tex, ones, sigma)[inner].mean())
        k = float(np.clip(math.sqrt(max(fine_var, 0.0) / max(f_s, 1e-9)), 0.05, 1.0))
        tau2 = max(window_var - k * k * w_s, 0.0) / max(w_g, 1e-9)
        return cls(kernel_cov=kern, k=k, tau=float(math.sqrt(tau2)), grain_cov=target)

    def describe(self) -> dict[str, float | list[float]]:
        """Numbers for a lesion's metadata: speckle exponent, texture amplitude (dB), the kernel."""
        return {"speckle_k": self.k, "texture_tau_db": self.tau * NEPER_DB,
                "speckle_kernel_cov": [round(float(v), 3) for v in self.kernel_cov.ravel()]}

    def sample(self, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        """Zero-mean log-envelope fluctuation: k (ln S - E ln S) + tau G."""
        s = correlated_rayleigh(shape, self.kernel_cov, rng)
        out = self.k * (np.log(np.maximum(s, 1e-12)) + 0.5 * EULER_GAMMA)
        if self.tau > 0:
            out += self.tau * gaussian_field(shape, self.texture_cov, rng)
        return out


def _project_pd(cov: np.ndarray, lo: float = 0.25, hi: float = 24.0**2) -> np.ndarray:
    evals, evecs = np.linalg.eigh((cov + cov.T) / 2)
    return (evecs * np.clip(evals, lo, hi)) @ evecs.T


def gaussian_field(shape: tuple[int, int], cov: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian random field, white noise filtered by a Gaussian of covariance `cov`."""
    kern = gaussian_kernel(np.asarray(cov, dtype=np.float64) / 2.0)  # its autocorrelation has covariance `cov`
    pad = kern.shape[0] // 2
    noise = rng.standard_normal((shape[0] + 2 * pad, shape[1] + 2 * pad)).astype(np.float32)
    return cv2.filter2D(noise, -1, kern, borderType=cv2.BORDER_CONSTANT)[pad:pad + shape[0], pad:pad + shape[1]].astype(
        np.float64)


@dataclass(frozen=True)
class MatchedTexture:
    """Synthetic texture with the frame's grain and the local tissue's exact grey-level distribution.

    quantiles: the tissue's log-envelope fluctuation (around its local mean) at `levels`; coarse: the share
    of the fluctuation's variance above the speckle scale (1 - fine / window variance), carried by a
    Gaussian field `COARSE_SCALE` times the grain's size (the laterally long correlation of specular
    interfaces).
    """

    kernel_cov: np.ndarray
    grain_cov: np.ndarray
    levels: np.ndarray
    quantiles: np.ndarray
    coarse: float

    @classmethod
    def fit(cls, grain_cov: np.ndarray, fluctuations: np.ndarray, fine_var: float, window_var: float,
            n_levels: int = 257) -> MatchedTexture:
        """From the grain covariance, a sample of tissue fluctuations (nepers) and the two local variances.

        The PSF kernel is the grain over `LOG_ACF_RATIO` (see there). The coarse share is capped at
        `COARSE_MAX`: above it the texture turns into smooth streaks that no speckle shows.
        """
        target = _project_pd(np.asarray(grain_cov, dtype=np.float64))
        f = np.asarray(fluctuations, dtype=np.float64).ravel()
        if f.size < 16:
            raise ValueError("too few tissue pixels to measure the local speckle")
        levels = np.linspace(0.0, 1.0, n_levels)
        coarse = float(np.clip(1.0 - fine_var / max(window_var, 1e-12), 0.0, COARSE_MAX))
        return cls(kernel_cov=_project_pd(target / LOG_ACF_RATIO), grain_cov=target, levels=levels,
                   quantiles=np.quantile(f - f.mean(), levels), coarse=coarse)

    def sample(self, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        """Zero-mean log-envelope fluctuation field (nepers)."""
        s = correlated_rayleigh(shape, self.kernel_cov, rng)
        u = -np.expm1(-s * s)  # Rayleigh CDF for E[S^2] = 1: exactly uniform ranks
        z = ndtri(np.clip(u, 1e-9, 1 - 1e-9))
        if POST_FILTER > 0:  # the scanner's post-filtering rounds off the nulls (real lobes are smooth at 0)
            z = _filter(z, POST_FILTER * self.kernel_cov)
            z = (z - z.mean()) / max(float(z.std()), 1e-9)
        if self.coarse > 0:
            g = gaussian_field(shape, COARSE_SCALE**2 * self.kernel_cov, rng)
            z = math.sqrt(1.0 - self.coarse) * z + math.sqrt(self.coarse) * g
        return np.interp(ndtr(z), self.levels, self.quantiles)

    def describe(self) -> dict[str, float | list[float]]:
        """Numbers for a lesion's metadata: the texture's spread (dB), its coarse share, the kernel."""
        q = np.interp(np.linspace(0.001, 0.999, 999), self.levels, self.quantiles)
        return {"texture_std_db": float(np.std(q) * NEPER_DB), "texture_coarse_share": self.coarse,
                "speckle_kernel_cov": [round(float(v), 3) for v in self.kernel_cov.ravel()]}


def _filter(img: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Anisotropic Gaussian low-pass (unit DC gain), replicated border."""
    k = gaussian_kernel(cov).astype(np.float64)
    k /= k.sum()
    return cv2.filter2D(np.asarray(img, dtype=np.float32), -1, k.astype(np.float32),
                        borderType=cv2.BORDER_REPLICATE).astype(np.float64)
