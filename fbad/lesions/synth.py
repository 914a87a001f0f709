"""Synthetic lesions inserted into real normal fetal heads, formed the way a B-mode image forms them.

Why: when normal and abnormal images are the same real frames, a detector cannot tell them apart by
scanner, framing or post-processing, only by anatomy. A painted blob would be found by its flat grey or
its hard edge, so a lesion here is made in the physics of the image rather than on top of it:

1. The 8-bit frame is mapped back to its log envelope (inverse log compression, `Imaging.dynamic_range_db`;
   see `speckle`), where speckle is multiplicative and a lesion's echogenicity is an offset.
2. The tissue the lesion replaces gives the local echogenicity (a least-squares plane of the log envelope
   over the site, so gain and depth gradients carry on but no anatomy; fan edges and skull excluded),
   the speckle grain (a Gaussian fit to the local autocorrelation's main lobe,
   `speckle.speckle_covariance`) and the local grey-level distribution of its fluctuations.
3. The lesion is an echogenicity map relative to that tissue (contrast in dB: ``20 log10`` of the ratio of
   mean envelopes, lesion to tissue) with a smooth, irregular outline (a radius perturbed by a few random
   Fourier harmonics) and a soft edge as wide as the point-spread function blurs it.
4. Its interior is NEW speckle with the target echogenicity: ``ln A = ln mu_tissue + ln c + F`` with F a
   zero-mean fluctuation field made from correlated Rayleigh speckle of the frame's grain (Burckhardt
   1978; Wagner et al. 1983) and given the local tissue's exact distribution (`speckle.MatchedTexture`;
   the textbook ``mu c S**k``, `speckle.TextureModel`, with ``Imaging(speckle_model="rayleigh")``). A fluid
   (attenuation < 0.1 dB/cm/MHz) takes the fine-scale fluctuations only: no tissue structure in it. Being
   multiplicative, the same field at any contrast has the same speckle contrast (std / mean of the
   envelope). It is mixed with the frame in intensity, ``I = (1 - w) I_frame + w I_lesion`` with the soft
   weight w: the incoherent sum of the echoes of the two scatterer populations in a resolution cell.
5. Propagation: a beam that crosses the lesion is attenuated by ``2 f * integral(alpha_lesion - alpha_tissue)``
   dB more (or less) than its neighbours (two-way, alpha in dB/cm/MHz, f in MHz; Szabo, "Diagnostic
   Ultrasound Imaging: Inside Out", ch. 4; tissue values after Duck, "Physical Properties of Tissue", 1990),
   so fluid casts posterior acoustic enhancement and a dense mass or calcification a shadow, distal to
   it along the beam. Beams run radially from the apex of a sector scan (`geometry.estimate_apex`) or,
   when the fan's sides are not in the frame (most HC18 frames are zoomed in, their apex far above),
   vertically: a documented approximation, good to a few degrees there. The scanner's time-gain and
   compounding fill the effect in with depth, which fbad models with a Hann taper over
   `Imaging.distal_length` lesion diameters past the lesion, and it is laterally as wide as the beam.
   Walls that reflect specularly (cyst capsule, ventricular ependyma) are brighter where the beam meets
   them at normal incidence.
6. The log compression is applied again and only the pixels that changed are written back: everything
   outside the lesion's soft edge, wall and distal zone keeps its exact grey level.

Kinds (`KINDS`): ``cyst`` (arachnoid or porencephalic cyst: anechoic to hypoechoic, smooth, posterior
enhancement), ``echogenic`` (haemorrhage or tumour: hyperechoic, lobulated, heterogeneous; the
``dense`` variant attenuates and shadows), ``calcification`` (small, very bright, dense shadow),
``ventriculomegaly`` (a dilated lateral ventricle: a fluid teardrop lateral to the midline, widest at the
atrium, bright walls, sometimes a dangling echogenic choroid plexus), ``midline`` (the falx echo
``absent``, filled with the neighbouring texture, or ``shifted``: the real echo displaced in a bow).

Sizes are fractions of the head's minor axis (the biparietal diameter at the outer skull in HC18), or mm
when the pixel size is known; every lesion stays inside the head, `Imaging.margin_frac` of the minor axis
away from its outline. All randomness comes from the `numpy.random.Generator` passed in (or one seeded by
`LesionSpec.seed`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import cv2
import numpy as np

from fbad.data.records import HeadEllipse
from fbad.lesions import speckle as sp
from fbad.lesions.geometry import HeadAxes, beam_directions, estimate_apex
from fbad.segmentation.geometry import ellipse_from_mask, ellipse_mask

KINDS: tuple[str, ...] = ("cyst", "echogenic", "calcification", "ventriculomegaly", "midline")
MIN_STAT_PIXELS = 400  # tissue pixels the local statistics of a lesion site are measured on, at least
MIN_MIDLINE_SCORE = 10.0  # grey levels the falx echo must stand above its surroundings to be edited
FLUID_ATTENUATION = 0.002  # dB/cm/MHz, water (Duck 1990); cerebrospinal fluid and cyst fluid are close to it


class LesionPlacementError(ValueError):
    """The lesion does not fit in the brain region of this head (too large, or the head lies outside the fan)."""


@dataclass(frozen=True)
class KindDefaults:
    """Ranges a kind's free parameters are drawn from (uniformly) when a spec leaves them open."""

    size: tuple[float, float]  # diameter / head minor axis (ventriculomegaly: atrial width; midline: length)
    contrast_db: tuple[float, float]  # lesion / tissue mean envelope, dB
    attenuation: tuple[float, float]  # dB/cm/MHz of the lesion material
    irregularity: tuple[float, float] = (0.03, 0.08)  # relative amplitude of the outline's harmonics
    aspect: tuple[float, float] = (1.0, 1.5)
    wall_db: tuple[float, float] = (0.0, 0.0)  # specular wall brightness over tissue, dB
    heterogeneity_db: tuple[float, float] = (0.0, 0.0)  # std of slow echogenicity variation inside, dB
    variants: tuple[str, ...] = ("",)
    dense_attenuation: tuple[float, float] = (3.0, 10.0)  # the `dense` variant's attenuation


KIND_DEFAULTS: dict[str, KindDefaults] = {
    "cyst": KindDefaults(size=(0.12, 0.32), contrast_db=(-24.0, -6.0), attenuation=(FLUID_ATTENUATION,) * 2,
                         irregularity=(0.02, 0.06), aspect=(1.0, 1.6), wall_db=(2.0, 6.0)),
    "echogenic": KindDefaults(size=(0.10, 0.28), contrast_db=(4.0, 15.0), attenuation=(0.6, 1.2),
                              irregularity=(0.06, 0.14), aspect=(1.0, 1.8), heterogeneity_db=(1.5, 3.5),
                              variants=("soft", "dense"), dense_attenuation=(1.5, 3.5)),
    "calcification": KindDefaults(size=(0.025, 0.07), contrast_db=(12.0, 24.0), attenuation=(8.0, 20.0),
                                  irregularity=(0.05, 0.15), aspect=(1.0, 2.5)),
    "ventriculomegaly": KindDefaults(size=(0.14, 0.28), contrast_db=(-24.0, -10.0),
                                     attenuation=(FLUID_ATTENUATION,) * 2, irregularity=(0.02, 0.06),
                                     wall_db=(6.0, 12.0), variants=("plain", "choroid")),
    "midline": KindDefaults(size=(0.4, 1.2), contrast_db=(0.0, 0.0), attenuation=(0.5, 0.5),
                            variants=("absent", "shifted")),
}


@dataclass(frozen=True)
class LesionSpec:
    """What to insert; every None is drawn from `KIND_DEFAULTS[kind]` by the generator.

    size: diameter as a fraction of the head's minor axis (`size_mm` wins where the pixel size is known);
    contrast_db: lesion / tissue mean envelope in dB (midline: the fill's); center: (x, y) pixels;
    attenuation: dB/cm/MHz of the lesion; variant: "soft"/"dense" (echogenic), "plain"/"choroid"
    (ventriculomegaly), "absent"/"shifted" (midline); shift: midline displacement / semi-minor axis;
    irregularity: outline harmonics' relative amplitude; wall_db: specular wall brightness; seed: seeds
    the generator when none is passed.
    """

    kind: str
    size: float | None = None
    contrast_db: float | None = None
    center: tuple[float, float] | None = None
    seed: int | None = None
    size_mm: float | None = None
    attenuation: float | None = None
    variant: str | None = None
    shift: float | None = None
    irregularity: float | None = None
    wall_db: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KIND_DEFAULTS:
            raise ValueError(f"unknown lesion kind {self.kind!r}; expected one of {list(KIND_DEFAULTS)}")
        if self.size is not None and not self.size > 0:
            raise ValueError(f"lesion size must be > 0, got {self.size}")
        if self.variant is not None and self.variant not in KIND_DEFAULTS[self.kind].variants:
            raise ValueError(f"{self.kind} has variants {KIND_DEFAULTS[self.kind].variants}, got {self.variant!r}")


@dataclass(frozen=True)
class Imaging:
    """Assumptions about the scanner that made the frame (none is stored in an 8-bit PNG).

    dynamic_range_db: log compression's range; freq_mhz: transmit frequency (obstetric convex probes
    work at 2-6 MHz, 5 MHz is typical mid-gestation); tissue_attenuation: brain, dB/cm/MHz (0.6-0.9
    after Duck 1990); pixel_size_mm: used when the frame's is unknown (HC18's median is 0.114);
    distal_length: reach of enhancement/shadow past the lesion, lesion diameters; max_distal_db: cap of
    the effect; margin_frac: least distance of a lesion from the head outline, fraction of the minor axis;
    speckle_model: "matched" (the tissue's own grey-level distribution) or "rayleigh" (see `speckle`).
    """

    dynamic_range_db: float = sp.DEFAULT_DYNAMIC_RANGE_DB
    freq_mhz: float = 5.0
    tissue_attenuation: float = 0.6
    pixel_size_mm: float = 0.12
    distal_length: float = 3.0
    max_distal_db: float = 30.0
    margin_frac: float = 0.08
    speckle_model: str = "matched"

    def __post_init__(self) -> None:
        if self.speckle_model not in ("matched", "rayleigh"):
            raise ValueError(f"speckle_model must be 'matched' or 'rayleigh', got {self.speckle_model!r}")


@dataclass
class Lesion:
    """One insertion: the new frame, the lesion mask, the soft weight, the distal gain and the metadata.

    `affected` is every pixel whose value may differ from the input (soft edge, wall, distal zone);
    `distal_db` is the enhancement (> 0) or shadow (< 0) applied along the beam, in dB.
    """

    image: np.ndarray
    mask: np.ndarray
    weight: np.ndarray
    distal_db: np.ndarray
    affected: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


def sample_specs(n: int, rng: np.random.Generator, kinds: Sequence[str] = KINDS,
                 size: tuple[float, float] | Mapping[str, tuple[float, float]] | None = None,
                 contrast_db: tuple[float, float] | Mapping[str, tuple[float, float]] | None = None,
                 weights: Sequence[float] | None = None) -> list[LesionSpec]:
    """`n` specs with kinds, sizes and contrasts drawn uniformly from config-like ranges, each with its own seed.

    `size` / `contrast_db`: one (low, high) range for every kind, a per-kind mapping, or None for
    `KIND_DEFAULTS`. Each spec's seed makes its insertion reproducible on its own, in any order.
    """
    kinds = list(kinds)
    for k in kinds:
        if k not in KIND_DEFAULTS:
            raise ValueError(f"unknown lesion kind {k!r}; expected one of {list(KIND_DEFAULTS)}")
    p = None if weights is None else np.asarray(weights, float) / np.sum(weights)

    def pick(ranges: Any, kind: str, default: tuple[float, float]) -> tuple[float, float]:
        if ranges is None:
            return default
        if isinstance(ranges, Mapping):
            return cast(tuple[float, float], tuple(ranges.get(kind, default)))
        return cast(tuple[float, float], tuple(ranges))

    specs = []
    for _ in range(n):
        kind = kinds[int(rng.choice(len(kinds), p=p))]
        d = KIND_DEFAULTS[kind]
        lo, hi = pick(size, kind, d.size)
        clo, chi = pick(contrast_db, kind, d.contrast_db)
        specs.append(LesionSpec(kind=kind, size=float(rng.uniform(lo, hi)), contrast_db=float(rng.uniform(clo, chi)),
                                seed=int(rng.integers(2**63 - 1))))
    return specs


# ---------------------------------------------------------------------------------------------- helpers

def _u(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    lo, hi = lo_hi
    return float(lo) if hi == lo else float(rng.uniform(lo, hi))


def _smoothstep(x: np.ndarray) -> np.ndarray:
    """0 for x <= 0, 1 for x >= 1, C1-smooth between: a soft edge without the ringing of a Gaussian cut."""
    t = np.clip(x, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _soft(phi: np.ndarray, edge: float) -> np.ndarray:
    """Soft weight from a signed distance (px, < 0 inside): 0.5 on the outline, 0 beyond edge/2 outside.

    Weights below 1e-3 (under a tenth of a grey level of change) are dropped, so the support stays tight.
    """
    w = _smoothstep(0.5 - phi / edge)
    w[w < 1e-3] = 0.0
    return w


@dataclass
class _Frame:
    """Everything derived from the input frame once."""

    image: np.ndarray
    log_env: np.ndarray
    head_mask: np.ndarray
    allowed: np.ndarray  # where a lesion may lie: head minus the margin, inside the fan
    tissue: np.ndarray  # weights of the pixels local statistics come from
    dist: np.ndarray  # distance of each allowed pixel to the nearest disallowed one
    axes: HeadAxes
    minor: float  # head minor axis (diameter), px
    px_mm: float
    px_known: bool
    apex: tuple[float, float] | None
    imaging: Imaging
    margin_px: float


@dataclass
class _Shape:
    """A placed lesion before rendering: its support box and a map evaluator on crop coordinates."""

    bbox: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive) of the soft support and wall
    center: tuple[float, float]
    size_px: float
    evaluate: Any  # (X, Y) -> dict(w, contrast [nepers], alpha [dB/cm/MHz], rim [0..1])
    extra: dict[str, Any] = field(default_factory=dict)


def _frame(image: np.ndarray, head_mask: np.ndarray | None, head: HeadEllipse | None, imaging: Imaging,
           pixel_size_mm: float | None, apex: tuple[float, float] | str | None) -> _Frame:
    img = np.asarray(image)
    if img.ndim != 2 or img.dtype != np.uint8:
        raise ValueError(f"expected a 2-D uint8 image, got {img.dtype} {img.shape}")
    if head_mask is None and head is None:
        raise ValueError("give the head region: a boolean head mask and/or a HeadEllipse")
    if head_mask is None:
        head_mask = ellipse_mask(img.shape, head)  # type: ignore[arg-type]
    head_mask = np.asarray(head_mask).astype(bool)
    if head_mask.shape != img.shape:
        raise ValueError(f"head mask {head_mask.shape} does not match the image {img.shape}")
    if not head_mask.any():
        raise ValueError("head mask is empty")
    if head is None:
        head = ellipse_from_mask(head_mask)
        if head is None:
            raise ValueError("head mask is empty or too small to fit an ellipse")
    axes = HeadAxes.of(head)
    minor = 2.0 * axes.semi_minor
    margin = imaging.margin_frac * minor
    # the fan: pixels with echo nearby (zero rectangles and the outside of the sector are not tissue)
    fov = cv2.morphologyEx((cv2.blur(img, (7, 7)) > 1).astype(np.uint8), cv2.MORPH_CLOSE, np.ones((7, 7), np.uint8))
    region = (head_mask & (fov > 0)).astype(np.uint8)
    # distance to the head's outline and to the fan's edge, whichever is nearer
    dist = cv2.distanceTransform(np.pad(region, 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
    allowed = dist > margin
    if isinstance(apex, str):
        if apex != "auto":
            raise ValueError(f"apex must be (x, y), None (vertical beams) or 'auto', got {apex!r}")
        apex = estimate_apex(img)
    return _Frame(image=img, log_env=sp.to_log_envelope(img, imaging.dynamic_range_db), head_mask=head_mask,
                  allowed=allowed, tissue=allowed.astype(np.float64), dist=dist - margin,
                  axes=axes, minor=minor, px_mm=pixel_size_mm or imaging.pixel_size_mm,
                  px_known=pixel_size_mm is not None, apex=apex, imaging=imaging, margin_px=margin)


def _diameter_px(spec_size: float, spec_mm: float | None, fr: _Frame) -> float:
    if spec_mm is not None and fr.px_known:
        return spec_mm / fr.px_mm
    return spec_size * fr.minor


def _pick_center(fr: _Frame, reach: float, rng: np.random.Generator,
                 center: tuple[float, float] | None) -> tuple[float, float]:
    """A centre whose disc of radius `reach` lies in the allowed region (uniform over such centres)."""
    if center is not None:
        x, y = int(round(center[0])), int(round(center[1]))
        h, w = fr.dist.shape
        if not (0 <= x < w and 0 <= y < h) or fr.dist[y, x] < reach:
            raise LesionPlacementError(f"a lesion of reach {reach:.1f} px does not fit at {center} in the brain region")
        return float(center[0]), float(center[1])
    ok = np.flatnonzero(fr.dist.ravel() >= reach + 0.5)
    if ok.size == 0:
        raise LesionPlacementError(f"no site for a lesion of reach {reach:.1f} px in this head (brain too small)")
    i = int(ok[rng.integers(ok.size)])
    y, x = divmod(i, fr.dist.shape[1])
    return float(x) + float(rng.uniform(-0.5, 0.5)), float(y) + float(rng.uniform(-0.5, 0.5))


def _harmonics(rng: np.random.Generator, irregularity: float, n: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Random Fourier harmonics 2..n+1 of an outline, amplitudes falling as 1/order (smooth lobulation)."""
    orders = np.arange(2, n + 2)
    amp = irregularity * rng.uniform(0.3, 1.0, n) * 2.0 / orders
    phase = rng.uniform(0, 2 * np.pi, n)
    return amp, phase


def _outline_factor(theta: np.ndarray | float, amp: np.ndarray, phase: np.ndarray) -> np.ndarray:
    orders = np.arange(2, amp.size + 2)
    return 1.0 + np.tensordot(np.cos(np.multiply.outer(theta, orders) + phase), amp, axes=([-1], [0]))


# ------------------------------------------------------------------------------------------- the kinds

def _blob(fr: _Frame, spec: LesionSpec, p: dict[str, Any], rng: np.random.Generator) -> _Shape:
    """Cyst, echogenic mass, calcification: an irregular ellipse; a mass also gets heterogeneous echotexture."""
    diam = _diameter_px(p["size"], spec.size_mm, fr)
    r0 = diam / 2.0
    aspect, ang = p["aspect"], float(rng.uniform(0, np.pi))
    ra, rb = r0 * math.sqrt(aspect), r0 / math.sqrt(aspect)
    amp, phase = _harmonics(rng, p["irregularity"])
    f_max = float(_outline_factor(np.linspace(0, 2 * np.pi, 720), amp, phase).max())
    edge = min(p["edge"], max(2.0, 0.8 * r0))  # a lesion below the PSF's size is as blurred as it can be
    p["edge"] = edge
    wall_w = p["wall_w"]
    reach = ra * f_max + max(edge / 2, 3 * wall_w if p["wall_db"] else 0.0) + 1.0
    cx, cy = _pick_center(fr, reach, rng, spec.center)
    c, s = math.cos(ang), math.sin(ang)
    het_sigma = max(r0 / 3.0, 2.0)
    het_db = p["heterogeneity_db"]
    het_seed = int(rng.integers(2**63 - 1))

    def evaluate(X: np.ndarray, Y: np.ndarray) -> dict[str, np.ndarray]:
        dx, dy = X - cx, Y - cy
        xp, yp = dx * c + dy * s, -dx * s + dy * c
        xr, yr = xp / ra, yp / rb
        rho = np.maximum(np.hypot(xr, yr), 1e-9)
        f = _outline_factor(np.arctan2(yr, xr), amp, phase)
        grad = np.hypot(xp / ra**2, yp / rb**2) / rho  # |grad rho|: first-order signed distance, in pixels
        phi = (rho - f) / np.maximum(grad, 1e-9)
        out = {"w": _soft(phi, edge), "phi": phi, "alpha": np.full(X.shape, p["attenuation"])}
        contrast = np.full(X.shape, p["contrast_db"] / sp.NEPER_DB)
        if het_db > 0:
            contrast += (het_db / sp.NEPER_DB) * sp.gaussian_field(X.shape, np.eye(2) * het_sigma**2,
                                                                    np.random.default_rng(het_seed))
        out["contrast"] = contrast
        return out

    b = int(math.ceil(reach)) + 1
    return _Shape(bbox=(int(cx) - b, int(cy) - b, int(cx) + b + 1, int(cy) + b + 1), center=(cx, cy),
                  size_px=diam, evaluate=evaluate, extra={"aspect": aspect, "angle_deg": math.degrees(ang)})


def _find_midline(fr: _Frame, max_offset: float = 0.15, max_angle_deg: float = 10.0) -> dict[str, float]:
    """The falx echo: the brightest line near the head's major axis (offset and angle searched, Radon-style).

    The central half of the major axis is resampled (cv2.remap) for each candidate angle; the mean log
    envelope across it gives a profile whose peak above its median is the midline; its half-maximum width
    gives the echo's thickness. Falls back to the major axis itself when no line stands out.
    """
    ax = fr.axes
    A, B = ax.semi_major, ax.semi_minor
    s = np.linspace(-0.5 * A, 0.5 * A, max(16, int(A)))
    t = np.arange(-max_offset * B, max_offset * B + 0.5, 0.5)
    best = (-np.inf, 0.0, 0.0, 3.0)
    for ang in np.arange(-max_angle_deg, max_angle_deg + 0.1, 1.0):
        a = math.radians(ang)
        du = (ax.u[0] * math.cos(a) - ax.u[1] * math.sin(a), ax.u[0] * math.sin(a) + ax.u[1] * math.cos(a))
        dv = (-du[1], du[0])
        X = (ax.cx + s[None, :] * du[0] + t[:, None] * dv[0]).astype(np.float32)
        Y = (ax.cy + s[None, :] * du[1] + t[:, None] * dv[1]).astype(np.float32)
        vals = cv2.remap(fr.image.astype(np.float32), X, Y, cv2.INTER_LINEAR, borderValue=0)
        valid = cv2.remap(fr.tissue.astype(np.float32), X, Y, cv2.INTER_NEAREST, borderValue=0) > 0
        cols = valid.mean(axis=0) > 0.8  # lines along s that stay in tissue over the whole offset range
        if cols.sum() < 8:
            continue
        prof = vals[:, cols].mean(axis=1)
        prof = np.convolve(prof, np.ones(3) / 3, mode="same")
        i = int(np.argmax(prof[1:-1])) + 1
        base = float(np.median(prof))
        score = float(prof[i] - base)
        if score > best[0]:
            above = prof > base + 0.5 * score
            lo, hi = i, i
            while lo > 0 and above[lo - 1]:
                lo -= 1
            while hi < len(prof) - 1 and above[hi + 1]:
                hi += 1
            best = (score, float(ang), float(t[i]), (hi - lo + 1) * 0.5)
    score, ang, off, fwhm = best
    if not np.isfinite(score) or score < 4.0:
        return {"angle_deg": 0.0, "offset_px": 0.0, "half_width_px": max(2.0, 0.015 * B), "score": 0.0}
    # the band covers the echo's blurred flanks too, not only its half-maximum core
    return {"angle_deg": ang, "offset_px": off, "half_width_px": float(np.clip(0.75 * fwhm + 2.0, 2.5, 0.06 * B)),
            "score": score}


@dataclass(frozen=True)
class _Line:
    """The midline as a frame: origin, unit direction d (along the falx), normal n."""

    ox: float
    oy: float
    d: tuple[float, float]
    n: tuple[float, float]

    @classmethod
    def of(cls, fr: _Frame, ml: dict[str, float]) -> _Line:
        a = math.radians(ml["angle_deg"])
        u = fr.axes.u
        d = (u[0] * math.cos(a) - u[1] * math.sin(a), u[0] * math.sin(a) + u[1] * math.cos(a))
        n = (-d[1], d[0])
        ox, oy = fr.axes.to_image(0.0, ml["offset_px"])
        return cls(float(ox), float(oy), d, n)

    def coords(self, X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dx, dy = X - self.ox, Y - self.oy
        return dx * self.d[0] + dy * self.d[1], dx * self.n[0] + dy * self.n[1]

    def point(self, p: np.ndarray | float, q: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        return (self.ox + np.multiply(p, self.d[0]) + np.multiply(q, self.n[0]),
                self.oy + np.multiply(p, self.d[1]) + np.multiply(q, self.n[1]))


def _fits(fr: _Frame, xs: np.ndarray, ys: np.ndarray, reach: float) -> bool:
    """Whether discs of radius `reach` around all the points lie in the allowed region."""
    h, w = fr.dist.shape
    xi, yi = np.rint(xs).astype(int), np.rint(ys).astype(int)
    inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
    if not inside.all():
        return False
    return bool((fr.dist[yi, xi] >= reach).all())


def _ventricle(fr: _Frame, spec: LesionSpec, p: dict[str, Any], rng: np.random.Generator) -> _Shape:
    """A dilated lateral ventricle: a fluid teardrop beside the midline, widest at the atrium, tapering forward.

    In head coordinates along the detected midline (p) and across it (q): the atrium is a disc of half the
    atrial width h0 at a quarter to a half of the semi-major axis toward one pole (which pole is posterior
    is unknown in a 2-D frame, so it is drawn), a third to a half of the semi-minor axis to one side; the
    body runs forward for 2-3 widths, bowing out and converging toward the midline, its half-width falling
    to a quarter (Pilu et al. / ISUOG guidelines: atrial width >= 10 mm is ventriculomegaly). The choroid
    variant adds the dangling choroid plexus: an echogenic ellipse against the ventricle's lateral wall.
    """
    ml = _find_midline(fr)
    line = _Line.of(fr, ml)
    A, B = fr.axes.semi_major, fr.axes.semi_minor
    width = _diameter_px(p["size"], spec.size_mm, fr)
    edge, wall_w = p["edge"], p["wall_w"]
    pad = max(edge / 2, 3 * wall_w) + 1.0
    t_samples = np.linspace(0.0, 1.0, 64)
    for attempt in range(40):
        scale = 0.92 ** (attempt // 4)
        h0 = 0.5 * width * (scale if attempt >= 20 else 1.0)
        length = 2 * h0 * float(rng.uniform(2.0, 3.0)) * scale
        s_p, s_q = float(rng.choice([-1.0, 1.0])), float(rng.choice([-1.0, 1.0]))
        p_a = s_p * float(rng.uniform(0.2, 0.45)) * A
        q_a = s_q * (ml["half_width_px"] + h0 + float(rng.uniform(0.1, 0.3)) * B)
        bow = s_q * float(rng.uniform(0.03, 0.1)) * B
        converge = float(rng.uniform(0.3, 0.55))
        amp, phase = _harmonics(rng, p["irregularity"], 3)
        if spec.center is not None:  # the atrium's centre was given
            pa, qa = line.coords(np.array(spec.center[0]), np.array(spec.center[1]))
            p_a, q_a = float(pa), float(qa)
            s_p = -1.0 if p_a < 0 else 1.0
            s_q = -1.0 if q_a < 0 else 1.0

        def geometry(t: np.ndarray, p_a=p_a, q_a=q_a, bow=bow, converge=converge, length=length, h0=h0,
                     s_p=s_p, amp=amp, phase=phase) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            pc = p_a - s_p * t * length
            qc = q_a * (1 - converge * t) + bow * np.sin(np.pi * t)
            hw = h0 * (1 - 0.75 * t**1.3) * _outline_factor(np.pi * t, amp, phase) / _outline_factor(0.0, amp, phase)
            return pc, qc, hw

        pc, qc, hw = geometry(t_samples)
        xs, ys = line.point(pc, qc)
        if _fits(fr, xs, ys, hw + pad + 1.0):
            break
        if spec.center is not None and attempt >= 3:
            raise LesionPlacementError("the ventricle does not fit at the given centre")
    else:
        raise LesionPlacementError(f"no site for a ventricle of width {width:.1f} px in this head")
    choroid = p["variant"] == "choroid"
    cp_db = float(rng.uniform(4.0, 9.0))
    cp_p = p_a + s_p * float(rng.uniform(-0.2, 0.3)) * h0
    cp_q = q_a + s_q * 0.35 * h0
    cp_ra, cp_rb = 0.6 * h0, 0.32 * h0

    def evaluate(X: np.ndarray, Y: np.ndarray, geometry=geometry, p_a=p_a, q_a=q_a, s_p=s_p, length=length,
                 h0=h0) -> dict[str, np.ndarray]:
        P, Q = line.coords(X, Y)
        t = s_p * (p_a - P) / length
        pc, qc, hw = geometry(np.clip(t, 0.0, 1.0))
        phi_band = np.abs(Q - qc) - hw
        # past either end: distance to the end's corner where both are outside (a rounded-box distance)
        beyond = np.where(t > 1.0, (t - 1.0) * length, np.where(t < 0.0, -t * length, -np.inf))
        phi_band = np.where(np.isfinite(beyond) & (phi_band > 0), np.hypot(np.maximum(phi_band, 0), beyond),
                            np.maximum(phi_band, beyond))
        phi_disc = np.hypot(P - p_a, Q - q_a) - h0
        phi = np.minimum(phi_band, phi_disc)
        w = _soft(phi, edge)
        contrast = np.full(X.shape, p["contrast_db"] / sp.NEPER_DB)
        alpha = np.full(X.shape, p["attenuation"])
        if choroid:
            wc = _soft((np.hypot((P - cp_p) / cp_ra, (Q - cp_q) / cp_rb) - 1.0) * math.sqrt(cp_ra * cp_rb), edge)
            contrast = contrast * (1 - wc) + (cp_db / sp.NEPER_DB) * wc
            alpha = alpha * (1 - wc) + fr.imaging.tissue_attenuation * wc
        return {"w": w, "phi": phi, "contrast": contrast, "alpha": alpha}

    x0, x1 = float(xs.min() - hw.max() - pad), float(xs.max() + hw.max() + pad)
    y0, y1 = float(ys.min() - hw.max() - pad), float(ys.max() + hw.max() + pad)
    cx, cy = line.point(p_a, q_a)
    return _Shape(bbox=(int(x0) - 1, int(y0) - 1, int(x1) + 2, int(y1) + 2), center=(float(cx), float(cy)),
                  size_px=2 * h0, evaluate=evaluate,
                  extra={"length_px": length, "side": s_q, "pole": s_p, "choroid": choroid,
                         "midline_angle_deg": ml["angle_deg"], "midline_score": ml["score"]})


# ------------------------------------------------------------------------------------------- rendering

@dataclass
class _Crop:
    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def sl(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        ys, xs = np.mgrid[self.y0:self.y1, self.x0:self.x1]
        return xs.astype(np.float64), ys.astype(np.float64)


def _crop_for(fr: _Frame, bbox: tuple[int, int, int, int], pad: int, distal_px: float) -> _Crop:
    """The support box, padded for the statistics window and stretched distally along the beam."""
    h, w = fr.image.shape
    x0, y0, x1, y1 = bbox
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    bx, by = beam_directions(np.array(cx), np.array(cy), fr.apex)
    ex, ey = float(bx) * distal_px, float(by) * distal_px
    X0, X1 = min(x0, x0 + ex), max(x1, x1 + ex)
    Y0, Y1 = min(y0, y0 + ey), max(y1, y1 + ey)
    return _Crop(max(0, int(X0) - pad), max(0, int(Y0) - pad), min(w, int(math.ceil(X1)) + pad),
                 min(h, int(math.ceil(Y1)) + pad))


def _texture(fr: _Frame, crop: _Crop, sigma: float, site: np.ndarray, exclude: np.ndarray | None = None,
             mean: str = "plane", fluid: bool = False) -> tuple[np.ndarray, sp.MatchedTexture | sp.TextureModel]:
    """The tissue a lesion replaces: its mean log envelope (a map on the crop) and a matched texture model.

    Statistics come from the tissue pixels (minus `exclude`) of `site`, the area the lesion replaces
    (widened until it holds `MIN_STAT_PIXELS`). mean="plane": a weighted least-squares plane over them, so a lesion
    follows the depth gradient of gain and attenuation but no anatomy; "local": a normalised-convolution
    window of `sigma` (a thin band, such as the falx, filled from both its sides). The fluctuations about
    that mean give the quantiles, fine-scale variance and grain of `speckle.MatchedTexture` (or the
    textbook `speckle.TextureModel` when `Imaging.speckle_model == "rayleigh"`). fluid: a fluid has no
    tissue structure, only the echoes of noise and clutter at the speckle scale, so its texture takes the
    fine-scale fluctuations alone (about the local mean at `speckle.DETREND_SIGMA`), without the coarse field.
    """
    L = fr.log_env[crop.sl]
    wts = fr.tissue[crop.sl].copy()
    if exclude is not None:
        wts *= ~exclude
    site_w = (site > 0) * wts
    grow = 2.0
    while site_w.sum() < MIN_STAT_PIXELS and grow < 4 * sigma:  # a small lesion: widen to enough tissue
        near = cv2.GaussianBlur((site > 0).astype(np.float32), (0, 0), grow) > 0.05
        site_w = near * wts
        grow *= 1.5
    if site_w.sum() < 16:
        raise LesionPlacementError("too little tissue around the lesion site to measure its speckle")
    if mean == "plane":
        ys, xs = np.nonzero(site_w > 0)
        wv = site_w[ys, xs]
        design = np.stack([np.ones_like(xs), xs - xs.mean(), ys - ys.mean()], axis=1).astype(np.float64)
        sw = np.sqrt(wv)[:, None]
        coef, *_ = np.linalg.lstsq(design * sw, L[ys, xs] * sw[:, 0], rcond=None)
        yy, xx = np.mgrid[0:L.shape[0], 0:L.shape[1]]
        mean_map = coef[0] + coef[1] * (xx - xs.mean()) + coef[2] * (yy - ys.mean())
    else:
        mean_map = sp.weighted_blur(L, wts, sigma)
    fluct = L - mean_map
    sel = site_w > 0
    fine = float(np.average(sp.fine_variance(L, wts, 1.0)[sel], weights=site_w[sel]))
    window = float(np.average(fluct[sel] ** 2, weights=site_w[sel]) - np.average(fluct[sel], weights=site_w[sel]) ** 2)
    cov = sp.speckle_covariance(L, site_w if site_w.sum() >= 256 else wts)
    if fluid:
        fluct = L - sp.weighted_blur(L, wts, sp.DETREND_SIGMA)
        window = fine
    if fr.imaging.speckle_model == "rayleigh":
        return mean_map, sp.TextureModel.fit(cov, fine, window, sigma)
    return mean_map, sp.MatchedTexture.fit(cov, fluct[sel], fine, window)


def _mix(log_a: np.ndarray, log_b: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Intensity mixture of two envelopes in the log domain: 0.5 ln((1 - w) A**2 + w B**2)."""
    with np.errstate(divide="ignore"):
        return 0.5 * np.logaddexp(2 * log_a + np.log1p(-np.minimum(w, 1.0)), 2 * log_b + np.log(np.maximum(w, 0.0)))


def _along_beam(values: np.ndarray, support: np.ndarray, crop: _Crop, apex: tuple[float, float] | None,
                lateral_sigma: float) -> tuple[np.ndarray, np.ndarray, Any]:
    """Path integral of `values` from the probe down each beam, and the distance past the support's end.

    Vertical beams: a cumulative sum down the columns. A sector: the crop is resampled on a polar grid
    about the apex (cv2.remap, 1 px steps in range and at the far edge in angle), summed along range, and
    mapped back. Returns (integral [value*px], beyond [px], lateral blur function).
    """
    if apex is None:
        integ = np.cumsum(values, axis=0)
        rows = np.arange(values.shape[0], dtype=np.float64)[:, None]
        last = np.maximum.accumulate(np.where(support, rows, -np.inf), axis=0)
        beyond = rows - last

        def blur(g: np.ndarray) -> np.ndarray:
            return cv2.GaussianBlur(g, (0, 0), sigmaX=max(lateral_sigma, 0.3), sigmaY=1e-3)

        return integ, beyond, blur
    ax, ay = apex
    X, Y = crop.grid()
    dx, dy = X - ax, Y - ay
    r, th = np.hypot(dx, dy), np.arctan2(dx, dy)
    r0, r1 = float(r.min()), float(r.max())
    t0, t1 = float(th.min()), float(th.max())
    nr = int(math.ceil(r1 - r0)) + 2
    dth = 1.0 / r1
    nt = int(math.ceil((t1 - t0) / dth)) + 2
    rr = r0 + np.arange(nr, dtype=np.float64)[:, None]
    tt = t0 + dth * np.arange(nt, dtype=np.float64)[None, :]
    mx = (ax + rr * np.sin(tt) - crop.x0).astype(np.float32)
    my = (ay + rr * np.cos(tt) - crop.y0).astype(np.float32)
    v_pol = cv2.remap(values.astype(np.float32), mx, my, cv2.INTER_LINEAR, borderValue=0).astype(np.float64)
    s_pol = cv2.remap(support.astype(np.float32), mx, my, cv2.INTER_LINEAR, borderValue=0) > 0.01
    integ = np.cumsum(v_pol, axis=0)
    rows = np.arange(nr, dtype=np.float64)[:, None]
    last = np.maximum.accumulate(np.where(s_pol, rows, -np.inf), axis=0)
    beyond = rows - last
    bx, by = ((th - t0) / dth).astype(np.float32), (r - r0).astype(np.float32)
    r_mid = 0.5 * (r0 + r1)

    def back(g: np.ndarray) -> np.ndarray:
        return cv2.remap(g.astype(np.float32), bx, by, cv2.INTER_LINEAR, borderValue=0).astype(np.float64)

    def blur_polar(g_pol: np.ndarray) -> np.ndarray:
        g_pol = cv2.GaussianBlur(g_pol, (0, 0), sigmaX=max(lateral_sigma / (r_mid * dth), 0.3), sigmaY=1e-3)
        return back(g_pol)

    return integ, beyond, blur_polar


def _distal_gain(fr: _Frame, crop: _Crop, w: np.ndarray, alpha: np.ndarray, size_px: float,
                 lateral_sigma: float) -> np.ndarray:
    """Enhancement (> 0) or shadow (< 0) in dB on the crop: 2 f px_cm * path integral of w (alpha - alpha_t).

    Tapered to zero over `Imaging.distal_length` lesion diameters past the lesion (Hann half-window),
    widened laterally by the beam width, capped at `Imaging.max_distal_db`, and kept inside the head.
    """
    im = fr.imaging
    d_alpha = w * (alpha - im.tissue_attenuation)
    if np.abs(d_alpha).max() < 1e-6:
        return np.zeros_like(w)
    integ, beyond, blur = _along_beam(d_alpha, w > 0, crop, fr.apex, lateral_sigma)
    px_cm = fr.px_mm / 10.0
    gain = -np.clip(2.0 * im.freq_mhz * px_cm * integ, -im.max_distal_db, im.max_distal_db)
    reach = max(im.distal_length * size_px, 1.0)
    taper = np.where(beyond <= 0, 1.0, 0.5 * (1 + np.cos(np.pi * np.clip(beyond / reach, 0.0, 1.0))))
    gain = blur(np.where(np.isfinite(beyond), gain * taper, 0.0))
    head = cv2.GaussianBlur(fr.head_mask[crop.sl].astype(np.float64), (0, 0), 3.0)
    gain *= head
    gain[np.abs(gain) < 0.01] = 0.0
    return gain


def _rim(w_phi: np.ndarray, wall_w: float, crop: _Crop, apex: tuple[float, float] | None) -> np.ndarray:
    """Specular wall weight: a band of the outline, brightest where its normal is along the beam."""
    gy, gx = np.gradient(w_phi)
    n = np.maximum(np.hypot(gx, gy), 1e-9)
    X, Y = crop.grid()
    bx, by = beam_directions(X, Y, apex)
    cos2 = ((gx * bx + gy * by) / n) ** 2
    band = np.exp(-0.5 * (w_phi / wall_w) ** 2)
    band[np.abs(w_phi) > 3 * wall_w] = 0.0
    return band * (0.3 + 0.7 * cos2)


def _resolve(spec: LesionSpec, rng: np.random.Generator, cov_hint: float = 2.0) -> dict[str, Any]:
    """Concrete parameters: the spec's own, the rest drawn from `KIND_DEFAULTS` in a fixed order."""
    d = KIND_DEFAULTS[spec.kind]
    variant = spec.variant or str(d.variants[int(rng.integers(len(d.variants)))])
    p: dict[str, Any] = {
        "kind": spec.kind, "variant": variant,
        "size": spec.size if spec.size is not None else _u(rng, d.size),
        "contrast_db": spec.contrast_db if spec.contrast_db is not None else _u(rng, d.contrast_db),
        "irregularity": spec.irregularity if spec.irregularity is not None else _u(rng, d.irregularity),
        "aspect": _u(rng, d.aspect),
        "wall_db": _u(rng, d.wall_db) if spec.wall_db is None else (_u(rng, d.wall_db), spec.wall_db)[1],
        "heterogeneity_db": _u(rng, d.heterogeneity_db),
    }
    att = _u(rng, d.dense_attenuation if variant == "dense" else d.attenuation)
    p["attenuation"] = spec.attenuation if spec.attenuation is not None else att
    shift = float(rng.uniform(0.08, 0.25)) * float(rng.choice([-1.0, 1.0]))
    p["shift"] = spec.shift if spec.shift is not None else shift
    return p


def insert_lesion_full(image: np.ndarray, head_mask: np.ndarray | None, spec: LesionSpec,
                       rng: np.random.Generator | None = None, head: HeadEllipse | None = None, *,
                       pixel_size_mm: float | None = None, apex: tuple[float, float] | str | None = "auto",
                       imaging: Imaging | None = None) -> Lesion:
    """Insert one lesion (see the module docstring); returns the frame, masks, distal gain and metadata.

    head_mask: the filled head (True inside the skull's outer border) and/or `head`, its ellipse (the
    missing one is derived). apex: the sector's virtual apex (x, y), None for vertical beams, "auto" to
    estimate it from the fan's sides. Raises LesionPlacementError when the lesion does not fit.
    """
    imaging = imaging or Imaging()
    if rng is None:
        if spec.seed is None:
            raise ValueError("pass a numpy Generator or give the spec a seed")
        rng = np.random.default_rng(spec.seed)
    fr = _frame(image, head_mask, head, imaging, pixel_size_mm, apex)
    p = _resolve(spec, rng)
    if spec.kind == "midline":
        return _midline(fr, spec, p, rng)

    # edge and wall widths follow the frame's point-spread function (speckle grain) near the head centre
    probe = _Crop(*_clip_box(fr, int(fr.axes.cx) - 48, int(fr.axes.cy) - 48, int(fr.axes.cx) + 48,
                             int(fr.axes.cy) + 48))
    cov0 = sp.speckle_covariance(fr.log_env[probe.sl], fr.tissue[probe.sl])
    grain = math.sqrt(math.sqrt(max(np.linalg.det(cov0), 1e-6)))
    p["edge"] = float(np.clip(2.5 * grain, 2.0, 12.0))
    p["wall_w"] = float(np.clip(math.sqrt(cov0[1, 1]), 1.0, 4.0))
    shape = _ventricle(fr, spec, p, rng) if spec.kind == "ventriculomegaly" else _blob(fr, spec, p, rng)

    sigma = float(np.clip(0.8 * shape.size_px / 2, 10.0, 40.0))
    pad = int(math.ceil(3 * sigma))
    crop = _crop_for(fr, shape.bbox, pad, imaging.distal_length * shape.size_px)
    # the lesion's own maps only on its support box, embedded in the crop
    bx0, by0, bx1, by1 = shape.bbox
    box = _Crop(max(bx0, crop.x0), max(by0, crop.y0), min(bx1, crop.x1), min(by1, crop.y1))
    inner = (slice(box.y0 - crop.y0, box.y1 - crop.y0), slice(box.x0 - crop.x0, box.x1 - crop.x0))
    bX, bY = box.grid()
    got = shape.evaluate(bX, bY)
    hw_shape = (crop.y1 - crop.y0, crop.x1 - crop.x0)
    maps = {"w": np.zeros(hw_shape), "alpha": np.full(hw_shape, imaging.tissue_attenuation)}
    maps["w"][inner], maps["alpha"][inner] = got["w"], got["alpha"]
    w = maps["w"]
    # statistics on the support box padded by the window (not over the whole distal zone)
    stat = _Crop(*_clip_box(fr, box.x0 - pad, box.y0 - pad, box.x1 + pad, box.y1 + pad))
    site = np.zeros((stat.y1 - stat.y0, stat.x1 - stat.x0))
    s_in = (slice(box.y0 - stat.y0, box.y1 - stat.y0), slice(box.x0 - stat.x0, box.x1 - stat.x0))
    site[s_in] = got["w"]
    fluid = float(np.average(got["alpha"], weights=got["w"] + 1e-12)) < 0.1  # water-like material
    mean_stat, tex = _texture(fr, stat, sigma, site=site, fluid=fluid)
    mean_log = mean_stat[s_in]
    L = fr.log_env[crop.sl].copy()
    # new speckle about the tissue mean plus the contrast; its mean over the lesion is set exactly, so that
    # the realised contrast is the requested one (a few coarse grains would otherwise shift it by chance)
    fluct = tex.sample(got["w"].shape, rng)
    fluct -= np.average(fluct, weights=got["w"] + 1e-12)
    L_les = mean_log + got["contrast"] + fluct
    L[inner] = _mix(L[inner], L_les, got["w"])
    rim = np.zeros_like(w)
    if p["wall_db"] > 0:
        rim[inner] = _rim(got["phi"], p["wall_w"], box, fr.apex)
        L = L + (p["wall_db"] / sp.NEPER_DB) * rim
    gain = _distal_gain(fr, crop, w, maps["alpha"], shape.size_px, 0.5 * math.sqrt(tex.grain_cov[0, 0]))
    L = L + gain / sp.NEPER_DB
    touched = (w > 0) | (rim > 1e-4) | (gain != 0)
    tissue_log = float(np.mean(mean_log[got["w"] >= 0.5])) if (got["w"] >= 0.5).any() else float(mean_log.mean())
    return _finish(fr, crop, L, w, gain, touched, shape.center, shape.size_px, p, spec, tex, tissue_log,
                   extra=shape.extra)


def _clip_box(fr: _Frame, x0: int, y0: int, x1: int, y1: int) -> tuple[int, int, int, int]:
    h, w = fr.image.shape
    return max(0, x0), max(0, y0), min(w, x1), min(h, y1)


def _finish(fr: _Frame, crop: _Crop, L: np.ndarray, w: np.ndarray, gain: np.ndarray, touched: np.ndarray,
            center: tuple[float, float], size_px: float, p: dict[str, Any], spec: LesionSpec,
            tex: sp.MatchedTexture | sp.TextureModel, tissue_log: float, extra: dict[str, Any]) -> Lesion:
    """Log compression back to 8 bits; write only the touched pixels; masks and metadata."""
    im = fr.imaging
    out = fr.image.copy()
    new = sp.quantize(sp.from_log_envelope(L, im.dynamic_range_db))
    region = out[crop.sl]
    region[touched] = new[touched]
    full = np.zeros(fr.image.shape, bool)
    mask = full.copy()
    mask[crop.sl] = w >= 0.5
    weight = np.zeros(fr.image.shape, np.float32)
    weight[crop.sl] = w
    distal = np.zeros(fr.image.shape, np.float32)
    distal[crop.sl] = gain
    affected = full.copy()
    affected[crop.sl] = touched
    if not mask.any():
        raise LesionPlacementError("the lesion came out empty (size below a pixel?)")
    tissue_gray = float(sp.from_log_envelope(tissue_log, im.dynamic_range_db))
    peak = float(gain.flat[np.abs(gain).argmax()]) if gain.size and np.abs(gain).max() > 0 else 0.0
    meta: dict[str, Any] = {
        "kind": spec.kind,
        "variant": p["variant"],
        "size_px": float(size_px),
        "size_frac": float(size_px / fr.minor),
        "size_mm": float(size_px * fr.px_mm) if fr.px_known else None,
        "contrast_db": float(p["contrast_db"]),
        "center": [float(center[0]), float(center[1])],
        "area_px": int(mask.sum()),
        "attenuation_db_cm_mhz": float(p["attenuation"]),
        "distal_db": peak,
        "distal_effect": "enhancement" if peak > 0 else "shadow" if peak < 0 else "none",
        "edge_px": float(p.get("edge", 0.0)),
        "wall_db": float(p["wall_db"]),
        "wall_px": float(p.get("wall_w", 0.0)) if p["wall_db"] else 0.0,
        "speckle_cov": [round(float(v), 3) for v in tex.grain_cov.ravel()],
        "speckle_model": im.speckle_model,
        **tex.describe(),
        "tissue_gray": tissue_gray,
        "beam": "vertical" if fr.apex is None else "sector",
        "apex": None if fr.apex is None else [float(fr.apex[0]), float(fr.apex[1])],
        "margin_px": float(fr.margin_px),
        "head_minor_px": float(fr.minor),
        "pixel_size_mm": float(fr.px_mm) if fr.px_known else None,
        "dynamic_range_db": float(im.dynamic_range_db),
        "seed": spec.seed,
    }
    meta.update({k_: (float(v) if isinstance(v, (float, np.floating)) else v) for k_, v in extra.items()})
    return Lesion(image=out, mask=mask, weight=weight, distal_db=distal, affected=affected, meta=meta)


def _midline(fr: _Frame, spec: LesionSpec, p: dict[str, Any], rng: np.random.Generator) -> Lesion:
    """Absent midline (the falx echo replaced by the neighbouring parenchyma's texture) or a shifted one.

    The band is the detected falx echo (`_find_midline`) over a segment of `size` head minor axes (clipped
    to the brain region). `absent` fills it with new speckle whose statistics exclude the band itself;
    `shifted` does that and then moves the real echo sideways by `shift` semi-minor axes at the segment's
    centre, bowing to nothing at its ends (mass effect pushes the falx in a curve, its attachments stay).
    """
    ml = _find_midline(fr)
    if ml["score"] < MIN_MIDLINE_SCORE:
        raise LesionPlacementError(f"no midline echo stands out in this frame (score {ml['score']:.1f} grey levels)")
    line = _Line.of(fr, ml)
    A, B = fr.axes.semi_major, fr.axes.semi_minor
    hw = ml["half_width_px"]
    probe = _Crop(*_clip_box(fr, int(fr.axes.cx) - 48, int(fr.axes.cy) - 48, int(fr.axes.cx) + 48,
                             int(fr.axes.cy) + 48))
    cov0 = sp.speckle_covariance(fr.log_env[probe.sl], fr.tissue[probe.sl])
    edge = float(np.clip(2.0 * math.sqrt(math.sqrt(max(np.linalg.det(cov0), 1e-6))), 2.0, 8.0))
    p["edge"], p["wall_db"], p["wall_w"] = edge, 0.0, 1.0
    shift_px = p["shift"] * B if p["variant"] == "shifted" else 0.0
    reach = hw + edge / 2 + 1.0
    ps = np.arange(-A, A + 1.0, 1.0)
    # the run of the line that stays in the brain region (for the band, and for the shifted band too)
    xs, ys = line.point(ps, 0.0)
    h, w_img = fr.dist.shape
    xi, yi = np.clip(np.rint(xs).astype(int), 0, w_img - 1), np.clip(np.rint(ys).astype(int), 0, h - 1)
    ok = fr.dist[yi, xi] >= reach + abs(shift_px)
    zero = int(np.argmin(np.abs(ps)))
    if not ok[zero]:
        raise LesionPlacementError("the midline's centre is not in the brain region")
    lo, hi = zero, zero
    while lo > 0 and ok[lo - 1]:
        lo -= 1
    while hi < len(ps) - 1 and ok[hi + 1]:
        hi += 1
    avail = float(ps[hi] - ps[lo])
    length = min(p["size"] * fr.minor, avail)
    if length < 4 * hw:
        raise LesionPlacementError("too little midline inside the brain region")
    end_edge = max(edge, 0.15 * length)
    c_lo, c_hi = ps[lo] + length / 2, ps[hi] - length / 2
    pc = float(rng.uniform(c_lo, c_hi)) if c_hi > c_lo else 0.5 * (c_lo + c_hi)
    if spec.center is not None:
        pcc, _ = line.coords(np.array(spec.center[0]), np.array(spec.center[1]))
        pc = float(np.clip(pcc, c_lo, c_hi))

    def band(P: np.ndarray, Q: np.ndarray) -> np.ndarray:
        along = _smoothstep((length / 2 - np.abs(P - pc)) / end_edge + 0.5)
        return _soft(np.abs(Q) - hw, edge) * along

    def bow(P: np.ndarray) -> np.ndarray:
        return shift_px * np.cos(np.clip((P - pc) / length, -0.5, 0.5) * np.pi) ** 2

    ends_x, ends_y = line.point(np.array([pc - length / 2, pc + length / 2]), np.array([0.0, 0.0]))
    bx0 = int(min(ends_x.min(), ends_x.max()) - reach - abs(shift_px)) - 2
    bx1 = int(max(ends_x) + reach + abs(shift_px)) + 3
    by0 = int(min(ends_y) - reach - abs(shift_px)) - 2
    by1 = int(max(ends_y) + reach + abs(shift_px)) + 3
    sigma = float(np.clip(4 * hw, 10.0, 30.0))
    crop = _crop_for(fr, (bx0, by0, bx1, by1), int(math.ceil(3 * sigma)), 0.0)
    X, Y = crop.grid()
    P, Q = line.coords(X, Y)
    w_old = band(P, Q)
    exclude = (np.abs(Q) < hw + 2 * edge) & (np.abs(P - pc) < length / 2 + end_edge)
    site = ((np.abs(Q) < hw + 4 * edge + sigma) & (np.abs(P - pc) < length / 2)).astype(np.float64)
    mean_log, tex = _texture(fr, crop, sigma, site=site, exclude=exclude, mean="local")
    L0 = fr.log_env[crop.sl]
    fluct = tex.sample(w_old.shape, rng)
    fluct -= np.average(fluct, weights=w_old + 1e-12)
    L_fill = mean_log + p["contrast_db"] / sp.NEPER_DB + fluct
    L = _mix(L0, L_fill, w_old)
    w_all = w_old
    if shift_px:
        off = bow(P)
        w_new = band(P, Q - off)
        # the real echo, displaced: sample the frame at (P, Q - offset)
        sx, sy = line.point(P, Q - off)
        src = cv2.remap(fr.log_env.astype(np.float32), sx.astype(np.float32), sy.astype(np.float32),
                        cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float64)
        L = _mix(L, src, w_new)
        w_all = np.maximum(w_old, w_new)
    touched = w_all > 0
    gain = np.zeros_like(w_all)
    cx, cy = line.point(pc, 0.0)
    extra = {"length_px": length, "half_width_px": hw, "end_taper_px": end_edge, "shift_px": float(shift_px),
             "shift_frac": float(shift_px / B), "midline_angle_deg": ml["angle_deg"],
             "midline_score": ml["score"]}
    tissue_log = float(np.mean(mean_log[w_old >= 0.5])) if (w_old >= 0.5).any() else float(mean_log.mean())
    return _finish(fr, crop, L, w_all, gain, touched, (float(cx), float(cy)), length, p, spec, tex, tissue_log,
                   extra=extra)


def insert_lesion(image: np.ndarray, head_mask: np.ndarray | None, spec: LesionSpec,
                  rng: np.random.Generator | None = None, head: HeadEllipse | None = None, **kwargs: Any
                  ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """`insert_lesion_full` reduced to (uint8 image, bool lesion mask, metadata dict)."""
    les = insert_lesion_full(image, head_mask, spec, rng, head, **kwargs)
    return les.image, les.mask, les.meta


__all__ = ["FLUID_ATTENUATION", "KINDS", "KIND_DEFAULTS", "Imaging", "KindDefaults", "Lesion", "LesionPlacementError",
           "LesionSpec", "insert_lesion", "insert_lesion_full", "sample_specs"]
