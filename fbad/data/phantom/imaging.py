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
# Scanners reduce speckle (spatial compounding, filtering): their log-speckle spread is about 0.6 of raw
# Rayleigh speckle's 5.6 dB. noise=1 means that; the envelope stays clean * speckle**(0.6 * noise).
SPECKLE_EXPONENT = 0.6


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
    pix_r: np.ndarray  # (size, size) distance of each pixel centre from the apex
    pix_theta: np.ndarray  # (size, size) beam angle of each pixel centre, radians


@lru_cache(maxsize=32)
def polar_geometry(size: int, apex_key: int, theta_all_deg: float) -> Polar:
    """Beam grid for one probe position; cached because only a few apex positions are used."""
    ax, ay = size / 2.0, APEX_Y[apex_key] * size
    r_all = math.hypot(size / 2.0, size - ay) + 2.0
    rows = cols = size
    th_all = math.radians(theta_all_deg)
    dr, dth = r_all / (rows - 1), 2 * th_all / (cols - 1)
    r = (np.arange(rows, dtype=np.float32) * dr)[:, None]
    th = (np.arange(cols, dtype=np.float32) * dth - th_all)[None, :]
    fx = (ax + r * np.sin(th)).astype(np.float32)
    fy = (ay + r * np.cos(th)).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dx, dy = xx - ax, yy - ay
    pr, pt = np.hypot(dx, dy), np.arctan2(dx, dy)
    br, bt = (pr / dr).astype(np.float32), ((pt + th_all) / dth).astype(np.float32)
    return Polar(rows, cols, dr, dth, th_all, r, th,
                 cv2.convertMaps(fx, fy, cv2.CV_16SC2), cv2.convertMaps(bt, br, cv2.CV_16SC2), pr, pt)


def fov_mask(fan: Fan, size: int, theta_all_deg: float) -> np.ndarray:
    """Pixels whose centre lies in the fan: between skin line and imaging depth, within the fan angle."""
    g = polar_geometry(size, fan.apex_key, float(theta_all_deg))
    m = np.abs(g.pix_theta) <= math.radians(fan.half_angle_deg)
    m &= g.pix_r >= fan.r_min
    m &= g.pix_r <= fan.r_max
    return m


@lru_cache(maxsize=8)
def _speckle_bank(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Complex white noise, twice the beam grid each way, drawn once per process from a fixed seed.

    Each image reads a window at a random offset and orientation: drawing fresh Gaussian noise per
    image would cost more than all the rest of the simulation.
    """
    rng = np.random.default_rng(0x5EC1E)
    return (rng.standard_normal((2 * rows, 2 * cols), dtype=np.float32),
            rng.standard_normal((2 * rows, 2 * cols), dtype=np.float32))


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
        shadow_db=float(rng.uniform(3.0, 6.0)),
        depth_db=float(rng.uniform(0.0, 7.0)),
        axial_px=float(rng.uniform(0.5, 0.7)) * k,
        lateral_px=float(rng.uniform(1.0, 1.4)) * k,
        floor=float(rng.uniform(-0.2, -0.05)),
    )


def _kernel(sigma: float) -> np.ndarray:
    half = max(1, math.ceil(3.0 * sigma))
    return cv2.getGaussianKernel(2 * half + 1, sigma, cv2.CV_32F).ravel()


_UNIT = (np.arange(256, dtype=np.float32) / 255.0).astype(np.float32)
_LEVEL_LN = ((np.arange(256, dtype=np.float32) / 255.0 - 1.0) * _K).astype(np.float32)  # ln amplitude


def scan(level: np.ndarray, skull: np.ndarray, fan: Fan, bone_px: float, st: ScanSettings, noise: float,
         rng: np.random.Generator, theta_all_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """(image uint8, clean float32 in [0, 1]): the B-mode display of an echo map with and without speckle.

    The clean image carries the same 8-bit quantisation as the image, so the two differ by speckle only.
    """
    size = level.shape[0]
    g = polar_geometry(size, fan.apex_key, float(theta_all_deg))
    src = cv2.merge([cv2.convertScaleAbs(level, alpha=255.0), skull.view(np.uint8) * np.uint8(255)])
    beams = cv2.remap(src, *g.fwd, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    lvl, bone = cv2.split(beams)

    # attenuation down each beam, in natural-log amplitude: bone crossed before this depth (posterior
    # shadow, capped at 40 dB), residual depth attenuation, fall-off at the fan's edges
    acc = cv2.integral(bone, sdepth=cv2.CV_32F)
    shadow: np.ndarray = cv2.subtract(acc[:-1, 1:], acc[:-1, :-1])
    shadow *= st.shadow_db * _DB * g.dr / (255.0 * max(bone_px, 1.0))
    np.minimum(shadow, 40.0 * _DB, out=shadow)
    depth = (g.r - fan.r_min) * (-st.depth_db * _DB / (fan.r_max - fan.r_min))
    edge = (g.theta / math.radians(fan.half_angle_deg)) ** 4 * (-3.0 * _DB)
    ln_amp: np.ndarray = cv2.LUT(lvl, _LEVEL_LN)
    ln_amp -= shadow
    ln_amp += cv2.multiply(shadow, bone, scale=0.7 / 255.0, dtype=cv2.CV_32F)  # bone echoes from its surface
    ln_amp += depth + edge
    p: np.ndarray = cv2.exp(ln_amp)
    p += math.exp((st.floor - 1.0) * _K)

    # point-spread function: coherent sum of scatterers (speckle) and its expected intensity (clean)
    kr = _kernel(st.axial_px / g.dr)
    kc = _kernel(st.lateral_px / (0.55 * size * g.dtheta))
    kr2, kc2 = kr * kr, kc * kc
    norm = 2.0 * float(kr2.sum() * kc2.sum())
    clean_i = cv2.sepFilter2D(cv2.multiply(p, p), -1, kc2 / kc2.sum(), kr2 / kr2.sum(),
                              borderType=cv2.BORDER_REFLECT)
    re, im = _speckle_bank(g.rows, g.cols)
    oy, ox = (int(v) for v in rng.integers(0, (g.rows, g.cols)))
    win = np.s_[oy:oy + g.rows, ox:ox + g.cols]
    zr = cv2.sepFilter2D(cv2.multiply(re[win], p), -1, kc, kr, borderType=cv2.BORDER_REFLECT)
    zi = cv2.sepFilter2D(cv2.multiply(im[win], p), -1, kc, kr, borderType=cv2.BORDER_REFLECT)
    # OpenCV takes a scalar for src2 of cv2.max; its stubs say an array only
    ln_clean = cv2.log(cv2.max(clean_i, 1e-12))  # type: ignore[call-overload]
    ln_mag = cv2.log(cv2.max(cv2.magnitude(zr, zi), 1e-6))  # type: ignore[call-overload]

    # log compression: clean display d = (10 log10 I + DR + gain) / DR; the image adds w times the
    # speckle's log ratio 10 log10(|z|^2 / (norm I)) + Euler (zero mean), w = noise x SPECKLE_EXPONENT.
    # Both are written straight to 8 bits (addWeighted saturates: clips to [0, 1] of the display).
    dr_db, w = st.dynamic_range_db, noise * SPECKLE_EXPONENT
    k = 255.0 / dr_db
    db10 = 10.0 / math.log(10.0)
    offset = dr_db + st.gain_db
    both = cv2.merge([
        cv2.addWeighted(ln_mag, 2.0 * w * db10 * k, ln_clean, (1.0 - w) * db10 * k,
                        k * (offset + w * (EULER_DB - 10.0 * math.log10(norm))), dtype=cv2.CV_8U),
        cv2.addWeighted(ln_clean, db10 * k, ln_clean, 0.0, k * offset, dtype=cv2.CV_8U),
    ])

    # field of view: a rectangle on the beam grid, a fan on the image; one sample in from the edge so
    # that interpolation in scan conversion leaves everything outside the fan black
    r0, r1 = math.ceil(fan.r_min / g.dr + 1), math.floor(fan.r_max / g.dr - 1) + 1
    half = math.radians(fan.half_angle_deg)
    c0 = math.ceil((g.theta_all - half) / g.dtheta + 1)
    c1 = math.floor((g.theta_all + half) / g.dtheta - 1) + 1
    both[:r0] = 0
    both[r1:] = 0
    both[:, :c0] = 0
    both[:, c1:] = 0
    img, clean8 = cv2.split(cv2.remap(both, *g.back, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                      borderValue=0))
    clean = cv2.LUT(clean8, _UNIT)
    return img, clean
