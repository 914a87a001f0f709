"""Head and probe geometry the lesion synthesis needs: the head's axes and the beam direction (head masks and
ellipse fits are fbad's own, `fbad.segmentation.geometry` and `.truth`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from fbad.data.records import HeadEllipse


@dataclass(frozen=True)
class HeadAxes:
    """The head ellipse as a frame: centre, unit vectors of the major (u) and minor (v) axis, semi-axes."""

    cx: float
    cy: float
    u: tuple[float, float]
    v: tuple[float, float]
    semi_major: float
    semi_minor: float

    @classmethod
    def of(cls, head: HeadEllipse) -> HeadAxes:
        t = math.radians(head.angle_deg)
        ua = (math.cos(t), math.sin(t))
        va = (-math.sin(t), math.cos(t))
        if head.a >= head.b:
            return cls(head.cx, head.cy, ua, va, head.a, head.b)
        return cls(head.cx, head.cy, va, (-ua[0], -ua[1]), head.b, head.a)

    def to_image(self, s: np.ndarray | float, t: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Head coordinates -> image (x, y)."""
        return (self.cx + np.multiply(s, self.u[0]) + np.multiply(t, self.v[0]),
                self.cy + np.multiply(s, self.u[1]) + np.multiply(t, self.v[1]))


def estimate_apex(image: np.ndarray, min_rows: int = 40) -> tuple[float, float] | None:
    """Virtual apex of a sector (convex or phased array) scan: where the fan's two straight sides meet.

    The beams of a sector scan run radially from the apex, usually above the top edge of the image. Each
    row's first and last imaged pixel is taken, the two sides are fitted as lines x = p y + q by least
    squares with two rounds of trimming (scanner text, black rectangles and the curved skin line are
    outliers), and intersected. None when the sides do not converge above the image (a linear probe, or a
    fan wider than the frame): callers then use vertical beams.
    """
    g = np.asarray(image)
    h, w = g.shape
    fov = cv2.morphologyEx((cv2.blur(g, (5, 5)) > 2).astype(np.uint8), cv2.MORPH_OPEN, np.ones((9, 9), np.uint8)) > 0
    rows = np.flatnonzero(fov.sum(axis=1) > 0.1 * w)
    if rows.size < min_rows:
        return None
    sub = fov[rows]
    left = sub.argmax(axis=1).astype(np.float64)
    right = (w - 1 - sub[:, ::-1].argmax(axis=1)).astype(np.float64)
    y = rows.astype(np.float64)
    lines = []
    for xs, border in ((left, 0.0), (right, w - 1.0)):
        keep = np.abs(xs - border) > 3  # rows where the side is cut by the frame edge tell nothing
        if keep.sum() < min_rows:
            return None
        yy, xx = y[keep], xs[keep]
        for _ in range(3):
            p, q = np.polyfit(yy, xx, 1)
            res = np.abs(xx - (p * yy + q))
            tol = max(2.0, float(np.percentile(res, 60)) * 2)
            sel = res <= tol
            if sel.sum() < min_rows:
                return None
            yy, xx = yy[sel], xx[sel]
        p, q = np.polyfit(yy, xx, 1)
        span = yy.max() - yy.min()
        if span < 0.25 * h:
            return None
        lines.append((p, q))
    (pl, ql), (pr, qr) = lines
    if not (pl < -0.05 and pr > 0.05):  # sides must diverge with depth
        return None
    ya = (qr - ql) / (pl - pr)
    xa = pl * ya + ql
    if not (-2.0 * h < ya < 0.25 * h and -0.5 * w < xa < 1.5 * w):
        return None
    return float(xa), float(ya)


def beam_directions(x: np.ndarray, y: np.ndarray, apex: tuple[float, float] | None) -> tuple[np.ndarray, np.ndarray]:
    """Unit vector of the beam (pointing away from the probe) at image points; vertical without an apex."""
    if apex is None:
        return np.zeros_like(x, dtype=np.float64), np.ones_like(y, dtype=np.float64)
    dx, dy = x - apex[0], y - apex[1]
    n = np.maximum(np.hypot(dx, dy), 1e-9)
    return dx / n, dy / n
