"""Scene -> echogenicity map (display levels before the scanner) and the ground-truth masks."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from fbad.data.phantom.anatomy import Scene, Skull
from fbad.data.phantom.shapes import SHIFT, fill_mask, paint


@dataclass
class Textures:
    """Slow tissue heterogeneity; shared by the normal and the anomalous rendering of one image."""

    tissue: np.ndarray
    brain: np.ndarray


@dataclass
class Echo:
    level: np.ndarray  # float32 (S, S) display level the tissue would show without scanner effects
    skull: np.ndarray  # bool
    brain: np.ndarray  # bool, intracranial (inside the inner bone surface)


def _field(rng: np.random.Generator, size: int, grid: int, amp: float) -> np.ndarray:
    coarse = rng.standard_normal((grid, grid)).astype(np.float32) * amp
    return cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)


def sample_textures(size: int, rng: np.random.Generator) -> Textures:
    return Textures(tissue=_field(rng, size, 9, 0.14) + _field(rng, size, 28, 0.06),
                    brain=_field(rng, size, 12, 0.07) + _field(rng, size, 32, 0.05))


def paint_outside(scene: Scene, tex: Textures) -> np.ndarray:
    """Maternal tissue with its near-field layers, the amniotic fluid pocket and perhaps a fetal body part."""
    S, out = scene.size, scene.outside
    d = np.full((S, S), out.tissue, np.float32)
    one = 1 << SHIFT
    cv2.fillPoly(d, [np.round(out.fluid * one).astype(np.int32)], out.fluid_level, cv2.LINE_8, SHIFT)
    if out.body is not None:
        bx, by, ax, ay, ang, lvl = out.body
        cv2.ellipse(d, (round(bx * one), round(by * one)), (round(ax * one), round(ay * one)), ang, 0, 360,
                    lvl, -1, cv2.LINE_8, SHIFT)
    apex = (round(scene.fan.apex_x * one), round(scene.fan.apex_y * one))
    for r, th, lvl in out.bands:
        cv2.ellipse(d, apex, (round(r * one), round(r * one)), 0, 0, 360, lvl, max(1, round(th)), cv2.LINE_8, SHIFT)
    d *= 1.0 + tex.tissue
    return d


def _skull_echo(skull: Skull, ys: np.ndarray, xs: np.ndarray, apex: tuple[float, float]) -> np.ndarray:
    """Bone is brightest where the beam meets it at right angles (specular reflection)."""
    c, s = np.cos(np.radians(skull.angle_deg)), np.sin(np.radians(skull.angle_deg))
    dx, dy = xs - skull.cx, ys - skull.cy
    lx, ly = dx * c + dy * s, -dx * s + dy * c
    gx, gy = lx / skull.a**2, ly / skull.b**2  # normal of the ellipse family through the pixel, local frame
    nx, ny = gx * c - gy * s, gx * s + gy * c
    bx, by = xs - apex[0], ys - apex[1]
    cos = (nx * bx + ny * by) / (np.hypot(nx, ny) * np.hypot(bx, by) + 1e-9)
    return (skull.level * (0.6 + 0.4 * cos * cos)).astype(np.float32)


def paint_head(scene: Scene, outside: np.ndarray, tex: Textures) -> Echo:
    """The head over `outside`: bone ring, extra-axial CSF band, then the plane's structures."""
    S = scene.size
    n = max(64, S // 2)
    outer, inner, surface = scene.skull.contours(n)
    head = fill_mask((S, S), [outer]).astype(bool)
    brain = fill_mask((S, S), [inner]).astype(bool)
    paren = fill_mask((S, S), [surface]).astype(bool)
    skull = head & ~brain

    tissue = np.full((S, S), scene.parenchyma, np.float32)
    paint(tissue, list(scene.shapes), scene.frame, S / 256.0)
    tissue *= 1.0 + tex.brain

    d = outside.copy()
    d[brain] = scene.csf
    np.copyto(d, tissue, where=paren & brain)
    ys, xs = np.nonzero(skull)
    d[ys, xs] = _skull_echo(scene.skull, ys.astype(np.float32), xs.astype(np.float32),
                            (scene.fan.apex_x, scene.fan.apex_y))
    return Echo(level=d, skull=skull, brain=brain)
