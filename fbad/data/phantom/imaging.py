"""The scanner: beams from a convex probe, bone shadowing, speckle, log compression, scan conversion.

Work happens on the beam grid (rows = depth along a beam, columns = beam angle), as in a real scanner:
attenuation accumulates down each beam (posterior acoustic shadow behind the skull), the point-spread
function is separable there (axial sharper than lateral), and scan conversion back to the image grid
makes speckle arc-shaped and the field of view a fan with black outside.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from fbad.data.phantom.anatomy import APEX_Y, Fan

DR_REF = 50.0  # dB spanned by display levels 0..1 in the echo map
_K = DR_REF * math.log(10.0) / 20.0
_DB = math.log(10.0) / 20.0
EULER_DB = 10.0 * math.log10(math.e) * 0.5772156649  # mean log of exponential speckle intensity, in dB


@dataclass(frozen=True)
class Polar:
    rows: int
    cols: int
    dr: float  # pixels per row
    dtheta: float  # radians per column
    theta_all: float
    r: np.ndarray  # (rows, 1) radius of each row, pixels
    theta: np.ndarray  # (1, cols) beam angle of each column, radians (0 = straight down, + = right)
    fwd: tuple[np.ndarray, np.ndarray]  # remap maps image -> beam grid
    back: tuple[np.ndarray, np.ndarray]  # remap maps beam grid -> image


@lru_cache(maxsize=32)
def polar_geometry(size: int, apex_key: int, theta_all_deg: float) -> Polar:
    """Beam grid for one probe position; cached because only a few apex positions are used."""
    ax, ay = size / 2.0, APEX_Y[apex_key] * size
    r_all = math.hypot(size / 2.0, size - ay) + 2.0
    rows, cols = int(1.15 * size), int(1.3 * size)
    th_all = math.radians(theta_all_deg)
    dr, dth = r_all / (rows - 1), 2 * th_all / (cols - 1)
    r = (np.arange(rows, dtype=np.float32) * dr)[:, None]
    th = (np.arange(cols, dtype=np.float32) * dth - th_all)[None, :]
    fx = (ax + r * np.sin(th)).astype(np.float32)
    fy = (ay + r * np.cos(th)).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dx, dy = xx - ax, yy - ay
    br = (np.hypot(dx, dy) / dr).astype(np.float32)
    bt = ((np.arctan2(dx, dy) + th_all) / dth).astype(np.float32)
    return Polar(rows, cols, dr, dth, th_all, r, th,
                 cv2.convertMaps(fx, fy, cv2.CV_16SC2), cv2.convertMaps(bt, br, cv2.CV_16SC2))


@dataclass(frozen=True)
class ScanSettings:
    dynamic_range_db: float
    gain_db: float
    shadow_db: float  # attenuation of one perpendicular crossing of the skull
    depth_db: float  # residual attenuation over the imaging depth after time-gain compensation
    axial_px: float  # point-spread sigma along the beam, pixels
    lateral_px: float  # point-spread sigma across the beam, pixels at mid depth
    floor: float  # electronic noise floor, display level


def sample_settings(size: int, dynamic_range_db: tuple[float, float], gain_db: tuple[float, float],
                    rng: np.random.Generator) -> ScanSettings:
    k = size / 256.0
    return ScanSettings(
        dynamic_range_db=float(rng.uniform(*dynamic_range_db)),
        gain_db=float(rng.uniform(*gain_db)),
        shadow_db=float(rng.uniform(5.0, 9.0)),
        depth_db=float(rng.uniform(0.0, 7.0)),
        axial_px=float(rng.uniform(0.55, 0.8)) * k,
        lateral_px=float(rng.uniform(1.3, 1.9)) * k,
        floor=float(rng.uniform(0.04, 0.1)),
    )


def _kernel(sigma: float) -> np.ndarray:
    half = max(1, math.ceil(3.0 * sigma))
    return cv2.getGaussianKernel(2 * half + 1, sigma, cv2.CV_32F).ravel()


def scan(level: np.ndarray, skull: np.ndarray, fan: Fan, bone_px: float, st: ScanSettings, noise: float,
         rng: np.random.Generator, theta_all_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """(image, clean) float32 in [0, 1]: the B-mode display of an echo map, with and without speckle."""
    size = level.shape[0]
    g = polar_geometry(size, fan.apex_key, float(theta_all_deg))
    amp = np.exp((level - 1.0) * _K)
    beams = cv2.remap(np.dstack([amp, skull.astype(np.float32)]), *g.fwd, cv2.INTER_LINEAR,
                      borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    p, bone = beams[..., 0], beams[..., 1]

    shadow = np.cumsum(bone, axis=0)
    shadow -= 0.5 * bone
    shadow *= st.shadow_db * g.dr / max(bone_px, 1.0)
    np.minimum(shadow, 40.0, out=shadow)
    depth = (g.r - fan.r_min) / (fan.r_max - fan.r_min)
    edge = (g.theta / math.radians(fan.half_angle_deg)) ** 4
    gain = (-st.depth_db * depth - 3.0 * edge) - shadow
    p *= np.exp(gain * _DB)
    p += math.exp((st.floor - 1.0) * _K)

    kr = _kernel(st.axial_px / g.dr)
    kc = _kernel(st.lateral_px / (0.55 * size * g.dtheta))
    kr2, kc2 = kr * kr, kc * kc
    norm = float(kr2.sum() * kc2.sum())
    clean_i = cv2.sepFilter2D(p * p, -1, kc2 / kc2.sum(), kr2 / kr2.sum(), borderType=cv2.BORDER_REFLECT)
    n = rng.standard_normal((g.rows, g.cols, 2), dtype=np.float32)
    n *= p[..., None]
    z = cv2.sepFilter2D(n, -1, kc, kr, borderType=cv2.BORDER_REFLECT)
    speck = z[..., 0] * z[..., 0]
    speck += z[..., 1] * z[..., 1]
    speck *= 1.0 / (2.0 * norm)

    dr_db = st.dynamic_range_db
    np.maximum(clean_i, 1e-12, out=clean_i)
    np.maximum(speck, 1e-12, out=speck)
    log_clean = np.log10(clean_i) * 10.0
    disp_clean = (log_clean + (dr_db + st.gain_db)) / dr_db
    disp = (np.log10(speck) * 10.0 - log_clean + EULER_DB) * (noise / dr_db) + disp_clean

    inside = (g.r >= fan.r_min) & (g.r <= fan.r_max) & (np.abs(g.theta) <= math.radians(fan.half_angle_deg))
    both = np.dstack([disp, disp_clean])
    both *= inside[..., None]
    np.clip(both, 0.0, 1.0, out=both)
    img = cv2.remap(both, *g.back, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return np.ascontiguousarray(img[..., 0]), np.ascontiguousarray(img[..., 1])
