"""Anomalies as edits of a normal scene; severity 0 is a barely visible change, 1 the gross form.

Each edit keeps the anatomy frame of the normal head, so that rendering the scene before and after
the edit and comparing echo levels gives the pixels that differ from normal anatomy (the anomaly mask).
Random choices (where a cyst sits, a mass's outline) come from the anomaly's own generator and do not
depend on severity, so a larger severity grows the same lesion.

The mask is every pixel whose echo level changes by more than `PhantomConfig.mask_threshold`: for a
cyst or mass the lesion itself, for ventriculomegaly the dilated fluid and the displaced choroid, for
microcephaly the band between the normal and the shrunken skull plus the widened CSF space inside it
(what changed; the head ellipse of the sample is the shrunken skull).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from fbad.data.phantom.anatomy import Scene, atria
from fbad.data.phantom.config import VALID_PLANES
from fbad.data.phantom.shapes import Blob, Poly, Shape, Stroke
from fbad.data.records import Plane

FLUID = 0.04


def _named(scene: Scene, *names: str) -> list[Shape]:
    return [s for s in scene.shapes if s.name in names]


def _without(scene: Scene, *names: str) -> list[Shape]:
    return [s for s in scene.shapes if s.name not in names]


def _lesion_site(rng: np.random.Generator, rho: tuple[float, float]) -> tuple[float, float]:
    ang = rng.uniform(0, 2 * np.pi)
    r = rng.uniform(*rho)
    return float(r * math.cos(ang)), float(r * math.sin(ang))


def ventriculomegaly(scene: Scene, s: float, rng: np.random.Generator) -> Scene:
    """Dilated atria (width grows from ~10 mm to > 15 mm) with the choroid plexus dangling in the fluid."""
    if scene.plane == Plane.TRANS_VENTRICULAR:
        atrium = _named(scene, "atrium")
        assert isinstance(atrium[1], Blob)  # `atria` makes them
        u, v, ru, rv = atrium[1].u, abs(atrium[1].v), atrium[1].ru, atrium[1].rv
        shapes = _without(scene, "atrium", "choroid")
    else:
        u, v, ru, rv = float(rng.uniform(0.5, 0.58)), float(rng.uniform(0.32, 0.38)), 0.12, 0.06
        shapes = list(scene.shapes)
    ru2, rv2 = ru + 0.05 + 0.2 * s, rv + 0.07 + 0.24 * s
    v2 = v + 0.5 * (rv2 - rv)
    for sh in atria(rng, u, v2, ru2, rv2):
        if sh.name == "choroid":  # keeps its normal size, falls against the lateral wall
            sgn = math.copysign(1.0, sh.v)
            sh = replace(sh, ru=0.17, rv=0.085, v=sh.v + sgn * (rv2 - 0.1), name="choroid_dangling")
        shapes.append(replace(sh, name=sh.name + "_dilated") if sh.name == "atrium" else sh)
    return replace(scene, shapes=tuple(shapes))


def hydrocephalus(scene: Scene, s: float, rng: np.random.Generator) -> Scene:
    """Both lateral ventricles balloon and thin the cortical mantle; the falx and thalami stay."""
    tc = scene.plane == Plane.TRANS_CEREBELLUM
    rv = 0.1 + 0.32 * s
    vc = 0.07 + rv
    uc = -0.28 if tc else 0.0
    ru = scene.aspect * ((0.3 + 0.25 * s) if tc else (0.42 + 0.38 * s))
    shapes = _without(scene, "vent_wall", "atrium", "choroid")
    for sgn in (-1, 1):
        shapes.append(Blob("ventricle_dilated", uc, sgn * vc, ru, rv, FLUID, 15, wall=0.5))
        shapes.append(Blob("choroid_dangling", uc + 0.55 * ru / scene.aspect, sgn * (vc + 0.45 * rv),
                           0.15, 0.07, float(rng.uniform(0.7, 0.8)), 30, rot=sgn * 20.0))
    return replace(scene, shapes=tuple(shapes))


def absent_csp(scene: Scene, s: float, rng: np.random.Generator) -> Scene:
    """No cavum: the falx runs through; with severity the frontal horns fuse into a box across the midline."""
    csp = _named(scene, "csp")[0]
    assert isinstance(csp, Poly)
    us = [p[0] for p in csp.pts]
    u = 0.5 * (min(us) + max(us)) - 0.04
    shapes = _without(scene, "csp", "frontal_horn")
    if s > 0.05:
        hu, hv = 0.08 + 0.15 * s, 0.08 + 0.3 * s
        shapes.append(Poly("fused_horns", ((u - hu, -hv), (u + hu, -hv * 0.8), (u + hu, hv * 0.8), (u - hu, hv)),
                           FLUID, 50))
    return replace(scene, shapes=tuple(shapes))


def cerebellar_hypoplasia(scene: Scene, s: float, rng: np.random.Generator) -> Scene:
    """Small hemispheres and vermis (low transverse cerebellar diameter); fluid takes their place."""
    cb = _named(scene, "cerebellum")
    assert isinstance(cb[1], Blob)  # `cerebellum` makes them
    u, c, r = cb[1].u, abs(cb[1].v), cb[1].ru
    shapes = _without(scene, "cerebellum", "vermis")
    shapes.append(Blob("posterior_fossa_fluid", u + 0.03, 0.0, r * 1.1, (c + r) * 1.05, FLUID, 6))
    k = 0.9 - 0.5 * s
    for sh in _named(scene, "cerebellum", "vermis"):
        assert isinstance(sh, Blob)
        shapes.append(replace(sh, v=sh.v * (0.9 - 0.4 * s), ru=sh.ru * k, rv=sh.rv * k, name=sh.name + "_small"))
    return replace(scene, shapes=tuple(shapes))


def posterior_fossa_cyst(scene: Scene, s: float, rng: np.random.Generator) -> Scene:
    """Blake's pouch to Dandy-Walker: a cyst splays the hemispheres apart and replaces the vermis."""
    cb = _named(scene, "cerebellum")
    assert isinstance(cb[1], Blob)  # `cerebellum` makes them
    u, c = cb[1].u, abs(cb[1].v)
    shapes = _without(scene, "cerebellum", "vermis", "cisterna_magna")
    for sh in cb:
        assert isinstance(sh, Blob)
        shapes.append(replace(sh, v=math.copysign(c + 0.2 * s, sh.v), name="cerebellum_splayed"))
    vermis = _named(scene, "vermis")[0]
    assert isinstance(vermis, Blob)
    shapes.append(replace(vermis, u=vermis.u - 0.1 * s, ru=vermis.ru * (1 - 0.7 * s), rv=vermis.rv * (1 - 0.7 * s)))
    cm = _named(scene, "cisterna_magna")[0]
    assert isinstance(cm, Blob)
    shapes.append(replace(cm, u=cm.u - 0.05 * s, ru=cm.ru + 0.12 * s, rv=cm.rv + 0.15 * s))
    shapes.append(Blob("pf_cyst", u + 0.08 + 0.06 * s, 0.0, 0.12 + 0.22 * s, 0.07 + 0.22 * s, FLUID, 22))
    return replace(scene, shapes=tuple(shapes))


def arachnoid_cyst(scene: Scene, s: float, rng: np.random.Generator) -> Scene:
    """A smooth anechoic cyst with a thin bright wall, anywhere between the hemispheres and the bone."""
    u, v = _lesion_site(rng, (0.2, 0.6))
    r = 0.11 + 0.3 * s
    cyst = Blob("arachnoid_cyst", u, v, r * float(rng.uniform(1.0, 1.35)), r, 0.03, 60,
                rot=float(rng.uniform(-90, 90)), wall=0.55)
    return replace(scene, shapes=(*scene.shapes, cyst))


def echogenic_mass(scene: Scene, s: float, rng: np.random.Generator) -> Scene:
    """A bright, lobulated, heterogeneous mass (tumour or haemorrhage)."""
    u, v = _lesion_site(rng, (0.05, 0.5))
    r = 0.08 + 0.28 * s
    n = 16
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    rad = r * (1 + sum(rng.uniform(0, 0.15) * np.cos(k * t - rng.uniform(0, 6.28)) for k in (2, 3, 5)))
    pts = tuple((u + float(x) / scene.aspect, v + float(y)) for x, y in zip(rad * np.cos(t), rad * np.sin(t),
                                                                          strict=True))
    level = 0.62 + 0.26 * s
    shapes: list[Shape] = [*scene.shapes, Poly("echogenic_mass", pts, level, 60)]
    for _ in range(3):  # heterogeneity: brighter and darker foci inside
        du, dv = _lesion_site(rng, (0.0, 0.45 * r))
        rr = r * float(rng.uniform(0.2, 0.4))
        shapes.append(Blob("mass_focus", u + du / scene.aspect, v + dv, rr, rr * 0.8,
                           level + float(rng.uniform(-0.15, 0.12)), 61))
    return replace(scene, shapes=tuple(shapes))


def holoprosencephaly(scene: Scene, s: float, rng: np.random.Generator) -> Scene:
    """Lobar to alobar: the falx disappears from the front, the ventricles fuse, the thalami merge."""
    falx = _named(scene, "falx")[0]
    assert isinstance(falx, Stroke)
    u_end = falx.pts[-1][0]
    u0 = -0.94 + 1.88 * min(1.0, 0.35 + 0.75 * s)
    shapes = _without(scene, "csp", "frontal_horn", "third_ventricle", "falx", "thalamus", "vent_wall")
    if u0 < u_end - 0.05:
        shapes.append(replace(falx, pts=((u0, 0.0), (u_end, 0.0)), name="falx_partial"))
    r = 0.25 + 0.45 * s
    uc = -0.55 + 0.3 * s
    shapes.append(Blob("monoventricle", uc, 0.0, r * scene.aspect * 0.8, r, FLUID, 15, wall=0.5))
    shapes.append(Blob("mantle", uc + 0.55 * r, 0.0, r * scene.aspect * 0.55, r * 0.7, scene.parenchyma, 16))
    thal = _named(scene, "thalamus")
    level = thal[0].level if thal else 0.26
    shapes.append(Blob("thalami_fused", 0.12 + 0.1 * s, 0.0, 0.24, 0.2 + 0.06 * (1 - s), level, 20))
    return replace(scene, shapes=tuple(shapes))


def microcephaly(scene: Scene, s: float, rng: np.random.Generator) -> Scene:
    """A small vault with a receding forehead around normal-sized deep structures, and wider CSF spaces.

    The head ellipse (the annotation) becomes the small skull; pixel size stays that of the normal
    head, so head circumference in mm is low for the gestational age, as it would be measured.
    """
    sk = scene.skull
    a2, b2 = sk.a * (0.97 - 0.28 * s), sk.b * (0.98 - 0.2 * s)
    shift = 0.55 * (sk.a - a2)  # towards the occiput (+u): the frontal bone recedes most
    ang = math.radians(sk.angle_deg)
    skull = replace(sk, cx=sk.cx + shift * math.cos(ang), cy=sk.cy + shift * math.sin(ang), a=a2, b=b2,
                    csf_px=sk.csf_px + (0.03 + 0.12 * s) * sk.b)
    return replace(scene, skull=skull)


ANOMALIES: dict[str, Callable[[Scene, float, np.random.Generator], Scene]] = {
    "ventriculomegaly": ventriculomegaly,
    "hydrocephalus": hydrocephalus,
    "absent_csp": absent_csp,
    "cerebellar_hypoplasia": cerebellar_hypoplasia,
    "posterior_fossa_cyst": posterior_fossa_cyst,
    "arachnoid_cyst": arachnoid_cyst,
    "echogenic_mass": echogenic_mass,
    "holoprosencephaly": holoprosencephaly,
    "microcephaly": microcephaly,
}


def apply_anomaly(scene: Scene, kind: str, severity: float, rng: np.random.Generator) -> Scene:
    if kind not in ANOMALIES:
        raise ValueError(f"unknown anomaly type {kind!r}; known: {sorted(ANOMALIES)}")
    if scene.plane not in VALID_PLANES[kind]:
        valid = [p.value for p in VALID_PLANES[kind]]
        raise ValueError(f"anomaly {kind!r} does not show on plane {scene.plane.value!r}; valid planes: {valid}")
    if not 0.0 <= severity <= 1.0:
        raise ValueError(f"severity must lie in [0, 1], got {severity}")
    return ANOMALIES[kind](scene, float(severity), rng)
