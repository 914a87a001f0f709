"""Burned-in scanner annotations: corner text, a grey bar, '+' calipers on the skull (image only)."""

from __future__ import annotations

import math

import cv2
import numpy as np

from fbad.data.records import HeadEllipse

_PROBES = ("C1-5", "C2-9", "RAB6", "C5-2", "AB2-7")


def burn_text(img: np.ndarray, rng: np.random.Generator, ga_weeks: float, depth_mm: float) -> None:
    """Scanner-style text in the top corners and a small grey-scale bar, drawn in place on uint8."""
    S = img.shape[0]
    k = S / 256.0
    scale, th = 0.28 * k, max(1, round(k))
    week, day = int(ga_weeks), int((ga_weeks % 1) * 7)
    left = [str(rng.choice(_PROBES)), f"{depth_mm / 10:.1f}cm", f"FR {int(rng.integers(18, 45))}Hz",
            f"G {int(rng.integers(40, 70))}"]
    right = [f"GA {week}w{day}d", f"MI {rng.uniform(0.6, 1.3):.1f}", f"TIs {rng.uniform(0.1, 0.6):.1f}"]
    color = int(rng.integers(190, 256))
    step = round(10 * k)
    for i, line in enumerate(left[: int(rng.integers(2, len(left) + 1))]):
        cv2.putText(img, line, (round(3 * k), step * (i + 1)), cv2.FONT_HERSHEY_SIMPLEX, scale, color, th, cv2.LINE_AA)
    for i, line in enumerate(right[: int(rng.integers(1, len(right) + 1))]):
        (w, _), _ = cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, scale, th)
        cv2.putText(img, line, (S - w - round(3 * k), step * (i + 1)), cv2.FONT_HERSHEY_SIMPLEX, scale, color, th,
                    cv2.LINE_AA)
    if rng.random() < 0.5:  # grey-scale bar at the left edge, as on many scanners
        y0, h, w = round(S * 0.2), round(S * 0.25), max(2, round(3 * k))
        img[y0:y0 + h, 1:1 + w] = np.linspace(255, 0, h, dtype=np.float32).astype(np.uint8)[:, None]


def burn_calipers(img: np.ndarray, ellipse: HeadEllipse, rng: np.random.Generator) -> None:
    """'+' marks at the ends of the biparietal and occipito-frontal diameters, on the outer skull."""
    S = img.shape[0]
    size = max(3, round(5 * S / 256))
    c, s = math.cos(math.radians(ellipse.angle_deg)), math.sin(math.radians(ellipse.angle_deg))
    ends = [(ellipse.a, 0.0), (-ellipse.a, 0.0), (0.0, ellipse.b), (0.0, -ellipse.b)]
    if rng.random() < 0.5:
        ends = ends[2:]  # BPD only
    for lx, ly in ends:
        x, y = ellipse.cx + lx * c - ly * s, ellipse.cy + lx * s + ly * c
        cv2.drawMarker(img, (round(x), round(y)), 255, cv2.MARKER_CROSS, size, 1)
    if rng.random() < 0.3:  # the dotted head-circumference trace
        pts = cv2.ellipse2Poly((round(ellipse.cx), round(ellipse.cy)), (round(ellipse.a), round(ellipse.b)),
                               round(ellipse.angle_deg), 0, 360, 6)
        for x, y in pts[::2]:
            cv2.circle(img, (int(x), int(y)), 0, 230, -1)
