"""Shapes placed in a head-centred frame and painted with OpenCV at sub-pixel precision.

A shape's position is in the frame of the brain: `u` runs along the occipito-frontal axis (-1 frontal
bone, +1 occipital bone), `v` across it (+-1 the parietal bones), each in units of that semi-axis.
Sizes are in units of the brain's short semi-axis, so a round structure stays round whatever the
head's cephalic index. Echo levels are display levels in [0, 1] (0 anechoic, 1 bone).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

SHIFT = 4  # OpenCV fixed-point bits: coordinates are drawn to 1/16 pixel
_ONE = 1 << SHIFT


@dataclass(frozen=True)
class Frame:
    """The brain's frame in pixels: centre, semi-axes along u (A) and v (B), angle of +u in degrees."""

    cx: float
    cy: float
    A: float
    B: float
    angle_deg: float

    def to_px(self, u: np.ndarray | float, v: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        c, s = math.cos(math.radians(self.angle_deg)), math.sin(math.radians(self.angle_deg))
        du, dv = np.asarray(u, np.float64) * self.A, np.asarray(v, np.float64) * self.B
        return self.cx + du * c - dv * s, self.cy + du * s + dv * c


@dataclass(frozen=True)
class Blob:
    """A filled ellipse, optionally with an echogenic wall (cyst walls, cerebellar rim)."""

    name: str
    u: float
    v: float
    ru: float  # semi-axis along the (rotated) u direction, in units of B
    rv: float
    level: float
    z: int
    rot: float = 0.0  # degrees, relative to the frame's u axis
    wall: float | None = None
    wall_px: int = 1


@dataclass(frozen=True)
class Poly:
    """A filled polygon given by frame points (u, v)."""

    name: str
    pts: tuple[tuple[float, float], ...]
    level: float
    z: int
    wall: float | None = None
    wall_px: int = 1


@dataclass(frozen=True)
class Stroke:
    """An open polyline of echogenic (or anechoic) tissue: falx, ventricle walls, fissures."""

    name: str
    pts: tuple[tuple[float, float], ...]
    level: float
    z: int
    width: float = 1.0  # pixels at 256 px image size; scaled with the image


Shape = Blob | Poly | Stroke


def _fixed(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.round(np.stack([x, y], axis=-1) * _ONE).astype(np.int32)


def paint(canvas: np.ndarray, shapes: list[Shape], frame: Frame, scale: float) -> None:
    """Paint `shapes` in z order (stable) onto a float32 canvas in place; `scale` = image size / 256."""
    for sh in sorted(shapes, key=lambda s: s.z):
        if isinstance(sh, Blob):
            x, y = frame.to_px(sh.u, sh.v)
            centre = (round(float(x) * _ONE), round(float(y) * _ONE))
            axes = (max(1, round(sh.ru * frame.B * _ONE)), max(1, round(sh.rv * frame.B * _ONE)))
            angle = frame.angle_deg + sh.rot
            cv2.ellipse(canvas, centre, axes, angle, 0, 360, float(sh.level), -1, cv2.LINE_8, SHIFT)
            if sh.wall is not None:
                cv2.ellipse(canvas, centre, axes, angle, 0, 360, float(sh.wall), max(1, round(sh.wall_px * scale)),
                            cv2.LINE_8, SHIFT)
        elif isinstance(sh, Poly):
            u, v = np.array(sh.pts, np.float64).T
            pts = _fixed(*frame.to_px(u, v))
            cv2.fillPoly(canvas, [pts], float(sh.level), cv2.LINE_8, SHIFT)
            if sh.wall is not None:
                cv2.polylines(canvas, [pts], True, float(sh.wall), max(1, round(sh.wall_px * scale)),
                              cv2.LINE_8, SHIFT)
        else:
            u, v = np.array(sh.pts, np.float64).T
            pts = _fixed(*frame.to_px(u, v))
            cv2.polylines(canvas, [pts], False, float(sh.level), max(1, round(sh.width * scale)),
                          cv2.LINE_8, SHIFT)


def ellipse_points(cx: float, cy: float, a: float, b: float, angle_deg: float, n: int) -> tuple[np.ndarray, ...]:
    """Points on an ellipse and their outward unit normals, both (n, 2) float64."""
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    lx, ly = a * np.cos(t), b * np.sin(t)
    pts = np.stack([cx + lx * c - ly * s, cy + lx * s + ly * c], axis=1)
    nx, ny = b * np.cos(t), a * np.sin(t)  # gradient of the implicit form, local frame
    norm = np.hypot(nx, ny)
    nrm = np.stack([(nx * c - ny * s) / norm, (nx * s + ny * c) / norm], axis=1)
    return pts, nrm, t


def fill_mask(shape: tuple[int, int], contours: list[np.ndarray]) -> np.ndarray:
    """uint8 0/1 mask of polygons given as float (n, 2) pixel arrays (even-odd rule between contours)."""
    m = np.zeros(shape, np.uint8)
    cv2.fillPoly(m, [np.round(c * _ONE).astype(np.int32) for c in contours], 1, cv2.LINE_8, SHIFT)
    return m
