"""Scene -> echogenicity map (display levels before the scanner) and the ground-truth masks."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from fbad.data.phantom.anatomy import Scene, Skull
from fbad.data.phantom.shapes import SHIFT, fill_mask, paint


@dataclass
class Textures:
    """Slow tissue heterogeneity (factors around 1); shared by the normal and anomalous rendering of an image."""

    tissue: np.ndarray
    brain: np.ndarray


@dataclass
class Echo:
    level: np.ndarray  # float32 (S, S) display level the tissue would show without scanner effects
    skull: np.ndarray  # bool
    brain: np.ndarray  # bool, intracranial (inside the inner bone surface)


def sample_textures(size: int, rng: np.random.Generator) -> Textures:
    """Two smooth random fields (tissue, brain), each a coarse blotch pattern plus a finer one."""
    # the fine pattern has fewer columns than rows: blotches elongated sideways, like tissue layers
    # numpy's stubs take np.float32(x) for a scalar only; given a list it makes a float32 array
    fine = rng.standard_normal((30, 14, 2)).astype(np.float32) * np.float32([0.12, 0.06])  # type: ignore[arg-type, operator]
    coarse = rng.standard_normal((8, 8, 2)).astype(np.float32) * np.float32([0.16, 0.07])  # type: ignore[arg-type, operator]
    fine += cv2.resize(coarse, (14, 30), interpolation=cv2.INTER_CUBIC)
    both = cv2.resize(fine, (size, size), interpolation=cv2.INTER_CUBIC)
    both += 1.0  # multiplicative: 1 + relative echo fluctuation
    return Textures(tissue=np.ascontiguousarray(both[..., 0]), brain=np.ascontiguousarray(both[..., 1]))


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
    cv2.multiply(d, tex.tissue, dst=d)
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
    return (skull.level * (0.7 + 0.3 * cos * cos)).astype(np.float32)


def paint_head(scene: Scene, outside: np.ndarray, tex: Textures) -> Echo:
    """The head over `outside`: bone ring, extra-axial CSF band, then the plane's structures."""
    S = scene.size
    n = max(64, S // 2)
    outer, inner, surface = scene.skull.contours(n)
    brain = fill_mask((S, S), [inner])
    skull = cv2.subtract(fill_mask((S, S), [outer]), brain)
    paren = fill_mask((S, S), [surface])

    tissue = np.full((S, S), scene.parenchyma, np.float32)
    paint(tissue, list(scene.shapes), scene.frame, S / 256.0)
    cv2.multiply(tissue, tex.brain, dst=tissue)

    d = outside.copy()
    d[brain.view(bool)] = scene.csf
    cv2.copyTo(tissue, paren, d)
    pts = cv2.findNonZero(skull)
    if pts is not None:
        pts = pts.reshape(-1, 2)
        xs, ys = pts[:, 0], pts[:, 1]
        d[ys, xs] = _skull_echo(scene.skull, ys.astype(np.float32), xs.astype(np.float32),
                                (scene.fan.apex_x, scene.fan.apex_y))
    return Echo(level=d, skull=skull.view(bool), brain=brain.view(bool))
