"""Batched ellipse geometry: conics through point sets, conic -> (centre, axes, angle), contour sampling, masks.

Everything takes leading batch dimensions so that thousands of RANSAC hypotheses are fitted and scored in a
handful of numpy calls instead of a Python loop.
"""

from __future__ import annotations

import cv2
import numpy as np

from fbad.data.records import HeadEllipse


def conics_through(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Conics A x^2 + B xy + C y^2 + D x + E y = 1 (in coordinates centred on each set's centroid) through
    5 points per row of `x`, `y` (shape (M, 5)). Returns (coef (M, 5), centroid x, centroid y).

    The centroid of points on an ellipse lies strictly inside it, so the constant term never vanishes there
    and fixing it to -1 turns the homogeneous 6-unknown problem into a cheap batched 5x5 solve.
    """
    ox, oy = x.mean(axis=1, keepdims=True), y.mean(axis=1, keepdims=True)
    u, v = x - ox, y - oy
    s = np.sqrt((u**2 + v**2).mean(axis=1, keepdims=True)) + 1e-9  # isotropic scaling for conditioning
    u, v = u / s, v / s
    a = np.stack([u * u, u * v, v * v, u, v], axis=2)
    det = np.linalg.det(a)
    ok = np.abs(det) > 1e-9
    coef = np.full((len(x), 5), np.nan)
    if ok.any():
        coef[ok] = np.linalg.solve(a[ok], np.ones((int(ok.sum()), 5, 1)))[..., 0]
    sc = s[:, 0]
    coef = coef / np.stack([sc**2, sc**2, sc**2, sc, sc], axis=1)  # back to pixel units, still centroid-centred
    return coef, ox[:, 0], oy[:, 0]


def conics_through_tangents(
    x: np.ndarray, y: np.ndarray, tx: np.ndarray, ty: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Conics through 3 points per row (x, y: (M, 3)) and tangent to the unit directions (tx, ty: (M, 2)) at
    the first two: 5 linear constraints, so a minimal sample is 3 ridge points instead of 5 (RANSAC needs far
    fewer hypotheses to draw an all-inlier one). Same output convention as `conics_through`.
    """
    ox, oy = x.mean(axis=1, keepdims=True), y.mean(axis=1, keepdims=True)
    u, v = x - ox, y - oy
    s = np.sqrt((u**2 + v**2).mean(axis=1, keepdims=True)) + 1e-9
    u, v = u / s, v / s
    pts = np.stack([u * u, u * v, v * v, u, v], axis=2)  # (M, 3, 5), right-hand side 1
    u2, v2, tx, ty = u[:, :2], v[:, :2], tx, ty
    tan = np.stack([2 * u2 * tx, v2 * tx + u2 * ty, 2 * v2 * ty, tx, ty], axis=2)  # (M, 2, 5), rhs 0
    a = np.concatenate([pts, tan], axis=1) + np.eye(5)[None] * 1e-12
    rhs = np.concatenate([np.ones((len(x), 3)), np.zeros((len(x), 2))], axis=1)[..., None]
    with np.errstate(all="ignore"):
        try:
            coef = np.linalg.solve(a, rhs)[..., 0]
        except np.linalg.LinAlgError:  # an exactly singular sample somewhere: solve row by row pseudo-inversely
            coef = (np.linalg.pinv(a) @ rhs)[..., 0]
    sc = s[:, 0]
    coef = coef / np.stack([sc**2, sc**2, sc**2, sc, sc], axis=1)
    return coef, ox[:, 0], oy[:, 0]


def refit_conics(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, ox: np.ndarray, oy: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted least-squares conics, one per row of weights `w` (K, N) over the shared points `x`, `y` (N,),
    in coordinates centred on (ox, oy) (K,), which must lie inside each ellipse (e.g. its previous centre).

    Same parametrisation as `conics_through`, so `conic_to_ellipse` reads the result.
    """
    u = x[None] - ox[:, None]
    v = y[None] - oy[:, None]
    s = np.sqrt(np.average(u**2 + v**2, axis=1, weights=w + 1e-12)) + 1e-9
    u, v = u / s[:, None], v / s[:, None]
    d = np.stack([u * u, u * v, v * v, u, v], axis=2)  # (K, N, 5)
    dw = d * w[..., None]
    m = dw.transpose(0, 2, 1) @ d + 1e-9 * np.eye(5)[None]
    rhs = dw.sum(axis=1)
    coef = np.linalg.solve(m, rhs[..., None])[..., 0]
    coef = coef / np.stack([s**2, s**2, s**2, s, s], axis=1)
    return coef, ox, oy


def conic_to_ellipse(coef: np.ndarray, ox: np.ndarray, oy: np.ndarray) -> tuple[np.ndarray, ...]:
    """(cx, cy, a, b, theta_rad, valid) for conics from `conics_through`; a >= b, theta is the angle of a."""
    A, B, C, D, E = (coef[:, i] for i in range(5))
    F = -1.0
    disc = B * B - 4 * A * C
    with np.errstate(invalid="ignore", divide="ignore"):
        x0 = (2 * C * D - B * E) / disc
        y0 = (2 * A * E - B * D) / disc
        f0 = F + 0.5 * (D * x0 + E * y0)  # constant term once translated to the centre
        root = np.sqrt((A - C) ** 2 + B * B)
        lam1 = 0.5 * (A + C - root)  # smaller eigenvalue -> longer axis
        lam2 = 0.5 * (A + C + root)
        a = np.sqrt(-f0 / lam1)
        b = np.sqrt(-f0 / lam2)
        theta = 0.5 * np.arctan2(B, A - C) + np.pi / 2  # eigenvector of lam1
    valid = (disc < 0) & np.isfinite(a) & np.isfinite(b) & (a > 0) & (b > 0)
    return x0 + ox, y0 + oy, a, b, theta, valid


def sample_ellipses(
    cx: np.ndarray, cy: np.ndarray, a: np.ndarray, b: np.ndarray, theta: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """k points per ellipse, (M, k) each: x, y and the outward unit normal (nx, ny)."""
    t = np.linspace(0, 2 * np.pi, k, endpoint=False)
    ct, st = np.cos(t)[None], np.sin(t)[None]
    c, s = np.cos(theta)[:, None], np.sin(theta)[:, None]
    a_, b_ = a[:, None], b[:, None]
    x = cx[:, None] + a_ * ct * c - b_ * st * s
    y = cy[:, None] + a_ * ct * s + b_ * st * c
    gx, gy = b_ * ct, a_ * st  # gradient of the implicit form in the ellipse frame, up to scale
    nx, ny = gx * c - gy * s, gx * s + gy * c
    norm = np.sqrt(nx * nx + ny * ny) + 1e-12
    return x, y, nx / norm, ny / norm


def ellipse_mask(shape: tuple[int, int], e: HeadEllipse) -> np.ndarray:
    """Filled ellipse as a bool mask, drawn with 1/16 px precision (OpenCV fixed-point shift)."""
    mask = np.zeros(shape, np.uint8)
    sh = 4
    f = 1 << sh
    centre = (round(e.cx * f), round(e.cy * f))
    axes = (max(0, round(e.a * f)), max(0, round(e.b * f)))
    cv2.ellipse(mask, centre, axes, float(e.angle_deg), 0, 360, 1, thickness=-1, lineType=cv2.LINE_8, shift=sh)
    return mask.astype(bool)


def scale_ellipse(e: HeadEllipse, factor: float, offset: float = 0.0) -> HeadEllipse:
    """Ellipse in another resolution (`factor`), optionally grown by `offset` px along both axes first."""
    return HeadEllipse(
        (e.cx + 0.5) * factor - 0.5,
        (e.cy + 0.5) * factor - 0.5,
        (e.a + offset) * factor,
        (e.b + offset) * factor,
        e.angle_deg,
    )
