"""Head-ellipse geometry shared by every method, the truth and the metrics: one way to draw, grow, rescale and
fit a head ellipse."""

from __future__ import annotations

import math

import cv2
import numpy as np

from fbad.data.records import HeadEllipse


def ellipse_mask(shape: tuple[int, int], e: HeadEllipse) -> np.ndarray:
    """Filled ellipse as a bool mask, drawn with 1/16 px precision (OpenCV fixed-point shift)."""
    mask = np.zeros(shape, np.uint8)
    sh = 4
    f = 1 << sh
    centre = (round(e.cx * f), round(e.cy * f))
    axes = (max(0, round(e.a * f)), max(0, round(e.b * f)))
    cv2.ellipse(mask, centre, axes, float(e.angle_deg), 0, 360, 1, thickness=-1, lineType=cv2.LINE_8, shift=sh)
    return mask.view(bool)  # 0/1 bytes: a valid bool array without a copy


def scale_ellipse(e: HeadEllipse, factor: float, offset: float = 0.0) -> HeadEllipse:
    """Ellipse in another resolution (`factor`), optionally grown by `offset` px along both axes first."""
    return HeadEllipse(
        (e.cx + 0.5) * factor - 0.5,
        (e.cy + 0.5) * factor - 0.5,
        (e.a + offset) * factor,
        (e.b + offset) * factor,
        e.angle_deg,
    )


def grow(e: HeadEllipse, d: float) -> HeadEllipse:
    """The ellipse with both semi-axes grown by `d` px (shrunk for d < 0; never below 1 px)."""
    return HeadEllipse(e.cx, e.cy, max(e.a + d, 1.0), max(e.b + d, 1.0), e.angle_deg)


def fit_ellipse_points(xy: np.ndarray) -> HeadEllipse | None:
    """OpenCV's least-squares ellipse through >= 6 points; None for degenerate sets (collinear, tiny)."""
    if len(xy) < 6:
        return None
    try:
        (cx, cy), (d1, d2), ang = cv2.fitEllipse(xy.astype(np.float32))
    except cv2.error:  # degenerate point sets (all on a line)
        return None
    if not all(map(math.isfinite, (cx, cy, d1, d2, ang))) or min(d1, d2) <= 1.0:
        return None
    return HeadEllipse(float(cx), float(cy), float(d1 / 2), float(d2 / 2), float(ang) % 180.0)


def ellipse_distance(e: HeadEllipse, xy: np.ndarray) -> np.ndarray:
    """Approximate geometric distance (px) of points to the ellipse (radial scaling, exact on circles)."""
    t = np.radians(e.angle_deg)
    dx, dy = xy[:, 0] - e.cx, xy[:, 1] - e.cy
    u = dx * np.cos(t) + dy * np.sin(t)
    v = -dx * np.sin(t) + dy * np.cos(t)
    rho = np.sqrt((u / e.a) ** 2 + (v / e.b) ** 2) + 1e-12
    return np.abs(rho - 1.0) * np.sqrt(u * u + v * v) / rho


def fit_head_ellipse(xy: np.ndarray, trim: float = 3.0, iterations: int = 3) -> HeadEllipse | None:
    """Least-squares ellipse through boundary points, refitted without the points far off it -- more than
    `trim` robust standard deviations and 2 px -- until the kept set settles (at most `iterations` times).

    Trimming removes moderate bumps (a leak into neighbouring tissue on a part of the border); on held-out
    HC18 borders it changes little, as the network's borders are mostly clean.
    """
    xy = np.asarray(xy, np.float64)
    e = fit_ellipse_points(xy)
    keep = np.ones(len(xy), bool)
    for _ in range(iterations):
        if e is None:
            return None
        d = ellipse_distance(e, xy)
        new = d <= max(2.0, trim * 1.4826 * float(np.median(d)))
        if new.sum() < 6 or np.array_equal(new, keep):
            break
        keep = new
        e = fit_ellipse_points(xy[keep]) or e
    return e


def ellipse_from_mask(mask: np.ndarray) -> HeadEllipse | None:
    """Ellipse fitted to the outer contour of a filled head mask (for HC from a reference mask)."""
    m = np.asarray(mask, bool).astype(np.uint8)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    c = max(contours, key=cv2.contourArea)
    if len(c) < 5:
        return None
    (cx, cy), (d1, d2), ang = cv2.fitEllipse(c)
    return HeadEllipse(cx, cy, d1 / 2, d2 / 2, ang)
