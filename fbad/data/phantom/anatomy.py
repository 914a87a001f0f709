"""A normal fetal head scene: probe fan, pose and size of the head, the structures of each plane.

Everything here is geometry and echo levels drawn from one random generator; nothing is rendered.
Proportions follow second-trimester biometry: occipito-frontal / biparietal diameter 1.18-1.32,
transverse cerebellar diameter about 0.4 BPD, atrium width about 7 mm at BPD about 50 mm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import cast

import numpy as np

from fbad.data.phantom.config import PhantomConfig
from fbad.data.phantom.shapes import Blob, Frame, Poly, Shape, Stroke, ellipse_points
from fbad.data.records import HeadEllipse, Plane

APEX_Y = (-0.14, -0.10, -0.06, -0.02)  # probe apex heights (x image size); few, so scan maps are cached


@dataclass(frozen=True)
class Fan:
    apex_key: int
    apex_x: float
    apex_y: float
    half_angle_deg: float
    r_min: float  # skin line, pixels from the apex
    r_max: float  # imaging depth, pixels from the apex


@dataclass(frozen=True)
class Skull:
    """Outer skull ellipse (the HC18-style head outline) and a bone thickness that varies around it."""

    cx: float
    cy: float
    a: float
    b: float
    angle_deg: float
    thick: float  # mean bone thickness, pixels
    harm: tuple[tuple[float, float], ...]  # (relative amplitude, phase) of harmonics 1, 2, 3 of thickness
    csf_px: float  # extra-axial CSF band inside the bone
    level: float  # echo of bone met at right angles

    @property
    def ellipse(self) -> HeadEllipse:
        return HeadEllipse(self.cx, self.cy, self.a, self.b, self.angle_deg)

    def contours(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Outer bone, inner bone (intracranial) and brain-surface contours, each (n, 2) pixels."""
        outer, nrm, t = ellipse_points(self.cx, self.cy, self.a, self.b, self.angle_deg, n)
        rel = 1.0 + sum(amp * np.cos((k + 1) * t - ph) for k, (amp, ph) in enumerate(self.harm))
        thick = np.maximum(self.thick * rel, 1.2)[:, None]
        inner = outer - thick * nrm
        return outer, inner, inner - self.csf_px * nrm


@dataclass(frozen=True)
class Outside:
    """What surrounds the head: maternal tissue, near-field layers, amniotic fluid, a fetal body part."""

    tissue: float
    bands: tuple[tuple[float, float, float], ...]  # (radius px from apex, thickness px, level)
    fluid: np.ndarray = field(compare=False)  # (n, 2) pixel polygon of the amniotic fluid pocket
    fluid_level: float = 0.03
    body: tuple[float, float, float, float, float, float] | None = None  # cx, cy, ax, ay, angle, level


@dataclass(frozen=True)
class Scene:
    plane: Plane
    size: int
    fan: Fan
    skull: Skull
    frame: Frame  # anatomy frame: the normal head's intracranial ellipse (anomalies keep it)
    shapes: tuple[Shape, ...]
    parenchyma: float
    csf: float
    outside: Outside
    ga_weeks: float
    pixel_size_mm: float

    @property
    def aspect(self) -> float:
        return self.frame.A / self.frame.B


def bpd_mm(ga_weeks: float) -> float:
    """Biparietal diameter for gestational age, a linear fit to Hadlock's curve over 16-34 weeks."""
    return 2.8 * ga_weeks - 8.0


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def sample_scene(plane: Plane, cfg: PhantomConfig, rng: np.random.Generator) -> Scene:
    """A normal head of `plane` in random pose, size and gain setting."""
    S = cfg.size
    fan = _sample_fan(cfg, rng)
    skull = _sample_skull(cfg, fan, rng)
    a_in, b_in = skull.a - skull.thick, skull.b - skull.thick
    frame = Frame(skull.cx, skull.cy, a_in, b_in, skull.angle_deg)
    ga = _u(rng, *cfg.ga_weeks)
    shapes = tuple(_ANATOMY[plane](rng))
    outside = _sample_outside(S, fan, skull, rng)
    return Scene(
        plane=plane,
        size=S,
        fan=fan,
        skull=skull,
        frame=frame,
        shapes=shapes,
        parenchyma=_u(rng, 0.36, 0.42),
        csf=_u(rng, 0.08, 0.14),
        outside=outside,
        ga_weeks=ga,
        pixel_size_mm=bpd_mm(ga) / (2.0 * skull.b),
    )


def _sample_fan(cfg: PhantomConfig, rng: np.random.Generator) -> Fan:
    S = cfg.size
    key = int(rng.integers(len(APEX_Y)))
    apex_y = APEX_Y[key] * S
    return Fan(
        apex_key=key,
        apex_x=S / 2.0,
        apex_y=apex_y,
        half_angle_deg=_u(rng, *cfg.fan_half_angle_deg),
        r_min=-apex_y + _u(rng, 0.01, 0.05) * S,
        r_max=_u(rng, *cfg.fan_depth) * S - 0.5 * apex_y,
    )


def _extent(a: float, b: float, angle_deg: float, direction_deg: float) -> float:
    """Half-width of an ellipse along a direction (support function)."""
    al = math.radians(direction_deg - angle_deg)
    return math.hypot(a * math.cos(al), b * math.sin(al))


def _sample_skull(cfg: PhantomConfig, fan: Fan, rng: np.random.Generator) -> Skull:
    S = cfg.size
    r_c = -fan.apex_y + _u(rng, 0.47, 0.58) * S
    th_c = math.radians(_u(rng, -7.0, 7.0))
    cx, cy = fan.apex_x + r_c * math.sin(th_c), fan.apex_y + r_c * math.cos(th_c)
    a = _u(rng, *cfg.head_fill) * S / 2.0
    b = a / _u(rng, 1.18, 1.32)
    angle = _u(rng, -25.0, 25.0) + (180.0 if rng.random() < 0.5 else 0.0)  # which way the face points
    # shrink the head until it sits inside the image and the fan with a margin
    m = 0.03 * S
    half = fan.half_angle_deg
    room = [
        (cx - m, _extent(a, b, angle, 0.0)), (S - m - cx, _extent(a, b, angle, 0.0)),
        (cy - m, _extent(a, b, angle, 90.0)), (S - m - cy, _extent(a, b, angle, 90.0)),
        (r_c - fan.r_min - m, _extent(a, b, angle, 90.0 - math.degrees(th_c))),
        (fan.r_max - r_c - m, _extent(a, b, angle, 90.0 - math.degrees(th_c))),
    ]
    for sign in (1.0, -1.0):  # the two fan edges: distance from the centre along each inward normal
        ed = math.radians(half)
        nx, ny = (-math.cos(ed), math.sin(ed)) if sign > 0 else (math.cos(ed), math.sin(ed))
        dist = (cx - fan.apex_x) * nx + (cy - fan.apex_y) * ny
        room.append((dist - m, _extent(a, b, angle, math.degrees(math.atan2(ny, nx)))))
    k = min(1.0, *(r / e for r, e in room))
    a, b = a * k, b * k
    thick = max(1.5, _u(rng, 0.04, 0.065) * b)
    harm = ((_u(rng, 0.0, 0.12), _u(rng, 0, 6.28)), (_u(rng, 0.1, 0.3), _u(rng, 0, 6.28)),
            (_u(rng, 0.0, 0.12), _u(rng, 0, 6.28)))
    return Skull(cx, cy, a, b, angle, thick, harm, csf_px=max(1.0, _u(rng, 0.015, 0.03) * b),
                 level=_u(rng, 0.95, 1.0))


def _sample_outside(S: int, fan: Fan, skull: Skull, rng: np.random.Generator) -> Outside:
    bands = []
    r = fan.r_min
    for _ in range(int(rng.integers(2, 5))):
        r += _u(rng, 0.02, 0.06) * S
        bands.append((r, _u(rng, 0.008, 0.02) * S, _u(rng, 0.6, 0.78)))
    n = 48
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    k = _u(rng, 1.15, 1.5) + sum(_u(rng, 0, 0.25 / j) * np.cos(j * t - _u(rng, 0, 6.28)) for j in (1, 2, 3, 4))
    c, s = math.cos(math.radians(skull.angle_deg)), math.sin(math.radians(skull.angle_deg))
    lx, ly = skull.a * k * np.cos(t), skull.b * k * np.sin(t) * _u(rng, 1.0, 1.3)
    fluid = np.stack([skull.cx + lx * c - ly * s, skull.cy + lx * s + ly * c], axis=1)
    body = None
    if rng.random() < 0.6:  # neck / trunk behind the occiput, or a limb beside the head
        ang = math.radians(skull.angle_deg + _u(rng, -50, 50))
        d = skull.a * _u(rng, 1.05, 1.35)
        body = (skull.cx + d * math.cos(ang), skull.cy + d * math.sin(ang), skull.a * _u(rng, 0.35, 0.7),
                skull.b * _u(rng, 0.3, 0.6), math.degrees(ang) + _u(rng, -30, 30), _u(rng, 0.38, 0.5))
    return Outside(tissue=_u(rng, 0.47, 0.6), bands=tuple(bands), fluid=fluid,
                   fluid_level=_u(rng, 0.0, 0.02), body=body)


# ---- plane anatomy: lists of shapes in the brain frame -------------------------------------------------


def _j(rng: np.random.Generator, x: float, sd: float) -> float:
    return x + float(rng.uniform(-sd, sd))


def _rect(u: float, v: float, hu: float, hv: float) -> tuple[tuple[float, float], ...]:
    return ((u - hu, v - hv), (u + hu, v - hv), (u + hu, v + hv), (u - hu, v + hv))


def _midline(rng: np.random.Generator, u0: float, u1: float) -> Stroke:
    return Stroke("falx", ((u0, 0.0), (u1, 0.0)), _j(rng, 0.72, 0.05), 40, width=_j(rng, 1.8, 0.3))


def _csp(rng: np.random.Generator) -> list[Shape]:
    u = _j(rng, -0.44, 0.04)
    hu, hv = _j(rng, 0.11, 0.015), _j(rng, 0.06, 0.01)
    horn = [Blob("frontal_horn", _j(rng, u - 0.13, 0.02), sgn * _j(rng, 0.15, 0.02), _j(rng, 0.11, 0.02),
                 _j(rng, 0.04, 0.01), 0.1, 10, rot=sgn * 18) for sgn in (-1, 1)]
    return [Poly("csp", _rect(u, 0.0, hu, hv), 0.04, 50, wall=_j(rng, 0.62, 0.06)), *horn]


def _sylvian(rng: np.random.Generator) -> list[Shape]:
    out: list[Shape] = []
    for sgn in (-1, 1):
        u0, v0 = _j(rng, -0.1, 0.06), sgn * _j(rng, 0.66, 0.05)
        out.append(Stroke("sylvian", ((u0, v0), (u0 + 0.12, v0 - sgn * 0.05), (u0 + 0.26, v0 - sgn * 0.02)),
                          _j(rng, 0.56, 0.06), 40, width=1.0))
    return out


def _vent_walls(rng: np.random.Generator, u0: float, u1: float) -> list[Shape]:
    out: list[Shape] = []
    for sgn in (-1, 1):
        v = sgn * _j(rng, 0.3, 0.03)
        out.append(Stroke("vent_wall", ((_j(rng, u0, 0.05), v), (_j(rng, u1, 0.05), v + sgn * 0.03)),
                          _j(rng, 0.58, 0.06), 40, width=1.0))
    return out


def _thalami(rng: np.random.Generator, level: float) -> list[Shape]:
    u, v = _j(rng, 0.06, 0.04), _j(rng, 0.16, 0.015)
    ru, rv = _j(rng, 0.22, 0.02), _j(rng, 0.12, 0.012)
    # list[Blob] + list[Stroke] is typed list[Blob | Stroke], which list[Shape] (invariant) does not take
    return cast(list[Shape], [
        Blob("thalamus", u, sgn * v, ru, rv, level, 20, rot=-sgn * _j(rng, 25, 5)) for sgn in (-1, 1)
    ] + [
        Stroke("third_ventricle", ((u - 0.16, 0.0), (u + 0.18, 0.0)), 0.1, 45, width=1.0)
    ])


def trans_thalamic(rng: np.random.Generator) -> list[Shape]:
    return [_midline(rng, -0.94, 0.94), *_csp(rng), *_thalami(rng, _j(rng, 0.19, 0.02)),
            *_vent_walls(rng, -0.38, 0.0), *_sylvian(rng)]


def atria(rng: np.random.Generator, u: float, v: float, ru: float, rv: float) -> list[Blob]:
    """Both atria of the lateral ventricles, each with its choroid plexus filling most of it."""
    out: list[Blob] = []
    for sgn in (-1, 1):
        rot = sgn * _j(rng, 15, 4)
        out.append(Blob("atrium", u, sgn * v, ru, rv, 0.05, 10, rot=rot, wall=_j(rng, 0.55, 0.05)))
        out.append(Blob("choroid", u, sgn * v, ru * _j(rng, 0.82, 0.04), rv * _j(rng, 0.72, 0.05),
                        _j(rng, 0.78, 0.05), 30, rot=rot))
    return out


def trans_ventricular(rng: np.random.Generator) -> list[Shape]:
    return [_midline(rng, -0.94, 0.94), *_csp(rng), *_vent_walls(rng, -0.45, 0.3),
            *atria(rng, _j(rng, 0.5, 0.04), _j(rng, 0.34, 0.03), _j(rng, 0.21, 0.02), _j(rng, 0.12, 0.015)),
            *_sylvian(rng)]


def cerebellum(rng: np.random.Generator, u: float, c: float, r: float) -> list[Shape]:
    """Two round hemispheres joined by the brighter vermis: the 'peanut' of the posterior fossa."""
    level, wall = _j(rng, 0.52, 0.03), _j(rng, 0.74, 0.04)
    out: list[Shape] = [Blob("cerebellum", u, sgn * c, r, r * _j(rng, 0.95, 0.04), level, 20, wall=wall)
                        for sgn in (-1, 1)]
    return [*out, Blob("vermis", u, 0.0, r * 0.62, c * 0.45, _j(rng, 0.7, 0.04), 21)]


def trans_cerebellum(rng: np.random.Generator) -> list[Shape]:
    u_cb = _j(rng, 0.6, 0.03)
    r = _j(rng, 0.2, 0.015)
    return [_midline(rng, -0.94, u_cb - 0.3), *_csp(rng), *_thalami(rng, _j(rng, 0.24, 0.02)),
            Blob("cisterna_magna", _j(rng, 0.93, 0.02), 0.0, _j(rng, 0.26, 0.03), _j(rng, 0.34, 0.03), 0.05, 5),
            *cerebellum(rng, u_cb, r * _j(rng, 1.0, 0.05), r), *_sylvian(rng)]


_ANATOMY = {
    Plane.TRANS_THALAMIC: trans_thalamic,
    Plane.TRANS_VENTRICULAR: trans_ventricular,
    Plane.TRANS_CEREBELLUM: trans_cerebellum,
}
