"""Batched ellipse geometry: conics through point sets, conic -> (centre, axes, angle), contour sampling, masks.

Everything takes leading batch dimensions so that thousands of RANSAC hypotheses are fitted and scored in a
handful of numpy calls instead of a Python loop.
"""

from __future__ import annotations

import functools

import numpy as np


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

    Solved in closed form rather than as M 5x5 systems: the conics tangent to line L1 at P1 and to L2 at P2
    form the pencil  alpha L1 L2 + beta M^2  (M: the line P1P2), and passing through P3 fixes alpha : beta =
    M(P3)^2 : -L1(P3) L2(P3). Degenerate samples (repeated points, P3 on the chord and a tangent) give the
    zero conic, i.e. NaN coefficients, which `conic_to_ellipse` marks invalid.
    """
    ox, oy = x.mean(axis=1, keepdims=True), y.mean(axis=1, keepdims=True)
    u, v = x - ox, y - oy
    s = np.sqrt((u**2 + v**2).mean(axis=1, keepdims=True)) + 1e-9  # isotropic scaling for conditioning
    u, v = (u / s).T, (v / s).T  # (3, M)
    # tangent lines L_i(u, v) = a_i u + b_i v + c_i through P_i along (tx_i, ty_i); chord M through P1, P2
    a1, a2 = ty[:, 0], ty[:, 1]
    b1, b2 = -tx[:, 0], -tx[:, 1]
    c1, c2 = -(a1 * u[0] + b1 * v[0]), -(a2 * u[1] + b2 * v[1])
    mu, mv = v[1] - v[0], u[0] - u[1]
    mc = -(mu * u[0] + mv * v[0])
    l1, l2, m3 = a1 * u[2] + b1 * v[2] + c1, a2 * u[2] + b2 * v[2] + c2, mu * u[2] + mv * v[2] + mc
    alpha, beta = m3 * m3, -(l1 * l2)
    q = np.stack(
        [
            alpha * (a1 * a2) + beta * (mu * mu),
            alpha * (a1 * b2 + a2 * b1) + beta * (2 * mu * mv),
            alpha * (b1 * b2) + beta * (mv * mv),
            alpha * (a1 * c2 + a2 * c1) + beta * (2 * mu * mc),
            alpha * (b1 * c2 + b2 * c1) + beta * (2 * mv * mc),
        ],
        axis=1,
    )
    f = alpha * (c1 * c2) + beta * (mc * mc)
    sc = s[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        coef = q / (-f[:, None] * np.stack([sc**2, sc**2, sc**2, sc, sc], axis=1))  # constant -> -1, pixel units
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
    wgt = w + 1e-12
    s = np.sqrt(((u * u + v * v) * wgt).sum(axis=1) / wgt.sum(axis=1)) + 1e-9
    u /= s[:, None]
    v /= s[:, None]
    dt = np.stack([u * u, u * v, v * v, u, v], axis=1)  # (K, 5, N): the design matrix, transposed
    dwt = dt * w[:, None, :]
    m = dwt @ dt.transpose(0, 2, 1) + 1e-9 * np.eye(5)[None]
    rhs = dwt.sum(axis=2)
    coef = np.linalg.solve(m, rhs[..., None])[..., 0]
    coef = coef / np.stack([s**2, s**2, s**2, s, s], axis=1)
    return coef, ox, oy


def conic_to_ellipse(coef: np.ndarray, ox: np.ndarray, oy: np.ndarray) -> tuple[np.ndarray, ...]:
    """(cx, cy, a, b, theta_rad, valid) for conics from `conics_through`; a >= b, theta is the angle of a."""
    A, B, C, D, E = (coef[:, i] for i in range(5))
    F = -1.0
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        disc = B * B - 4 * A * C
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


@functools.lru_cache(maxsize=16)
def _unit_circle(k: int) -> np.ndarray:
    """(3, k) rows 1, cos t, sin t for k angles t evenly spaced over the circle (read-only, shared)."""
    t = np.linspace(0, 2 * np.pi, k, endpoint=False)
    basis = np.stack([np.ones(k), np.cos(t), np.sin(t)])
    basis.flags.writeable = False
    return basis


def sample_ellipses(
    cx: np.ndarray, cy: np.ndarray, a: np.ndarray, b: np.ndarray, theta: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """k points per ellipse, (M, k) each: x, y and the outward unit normal (nx, ny)."""
    x, y, nx, ny = sample_ellipses_raw(cx, cy, a, b, theta, k)
    norm = np.sqrt(nx * nx + ny * ny)
    norm += 1e-12
    return x, y, nx / norm, ny / norm


def sample_ellipses_raw(
    cx: np.ndarray, cy: np.ndarray, a: np.ndarray, b: np.ndarray, theta: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Like `sample_ellipses` but the normals are left unnormalised (length varies along the contour).

    Each output is one small matrix product (M, 3) @ (3, k) with the rows 1, cos t, sin t, which is several
    times faster than broadcasting the same arithmetic over (M, k) for thousands of hypotheses.
    """
    basis = _unit_circle(k)
    c, s = np.cos(theta), np.sin(theta)
    zero = np.zeros_like(c)
    ac, as_, bc, bs = a * c, a * s, b * c, b * s
    x = np.stack([cx, ac, -bs], axis=1) @ basis
    y = np.stack([cy, as_, bc], axis=1) @ basis
    nx = np.stack([zero, bc, -as_], axis=1) @ basis  # gradient of the implicit form, rotated to the image
    ny = np.stack([zero, bs, ac], axis=1) @ basis
    return x, y, nx, ny
