"""Ultrasound enhancement operators and the config-driven chain that strings them together.

Every operator is a pure function: float32 (H, W) image in [0, 1] -> float32 (H, W) in [0, 1],
keyword parameters only after the image. OpenCV / scikit-image do the work wherever they have the
operation (8-bit conversion happens inside the operators that need it); only SRAD is our own
(fbad.preprocess.srad). A chain is configured as a list of mappings, e.g.

    ops: [{op: hist_eq}, {op: median, ksize: 5}, {op: clahe, clip_limit: 2.0, tiles: 8}]

and `build_chain` checks names and parameters up front, so a typo fails when the config is loaded,
not halfway through a dataset.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import cv2
import numpy as np

from fbad.preprocess import srad as _srad

Image = np.ndarray
Operator = Callable[..., Image]


def _f32(img: Image) -> Image:
    return np.asarray(img, dtype=np.float32)


def _to_u8(img: Image) -> Image:
    return np.clip(_f32(img) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _from_u8(img: Image) -> Image:
    return img.astype(np.float32) * np.float32(1.0 / 255.0)


def _unit(img: Image) -> Image:
    return np.clip(img, 0.0, 1.0).astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------------------
# operators


def hist_eq(img: Image) -> Image:
    """Global histogram equalisation (cv2.equalizeHist on 8 bits)."""
    return _from_u8(cv2.equalizeHist(_to_u8(img)))


def clahe(img: Image, clip_limit: float = 2.0, tiles: int | Sequence[int] = 8) -> Image:
    """Contrast-limited adaptive histogram equalisation; tiles = grid size (n or [rows, cols])."""
    # np.isscalar narrows to numpy's scalar types, not to the int of the union, and not at all when false
    grid = ((int(cast(int, tiles)), int(cast(int, tiles))) if np.isscalar(tiles)
            else tuple(int(t) for t in cast(Sequence[int], tiles)))
    if clip_limit <= 0 or len(grid) != 2 or min(grid) < 1:
        raise ValueError(f"clahe: need clip_limit > 0 and tiles >= 1 (got {clip_limit}, {tiles})")
    op = cv2.createCLAHE(clipLimit=float(clip_limit), tileGridSize=(grid[1], grid[0]))
    return _from_u8(op.apply(_to_u8(img)))


def median(img: Image, ksize: int = 5) -> Image:
    """Median filter (ksize odd); OpenCV runs 3 and 5 in float, larger kernels on 8 bits."""
    if ksize < 3 or ksize % 2 == 0:
        raise ValueError(f"median: ksize must be odd and >= 3, got {ksize}")
    if ksize <= 5:
        return cv2.medianBlur(_f32(img), ksize)
    return _from_u8(cv2.medianBlur(_to_u8(img), ksize))


def gaussian(img: Image, sigma: float = 1.0) -> Image:
    """Gaussian blur with standard deviation sigma (pixels)."""
    if sigma <= 0:
        raise ValueError(f"gaussian: sigma must be > 0, got {sigma}")
    return cv2.GaussianBlur(_f32(img), (0, 0), float(sigma), borderType=cv2.BORDER_REFLECT)


def bilateral(img: Image, d: int = 5, sigma_color: float = 0.1, sigma_space: float = 3.0) -> Image:
    """Edge-preserving bilateral filter; sigma_color in image units (0..1), sigma_space in pixels."""
    if d < 1 or sigma_color <= 0 or sigma_space <= 0:
        raise ValueError(f"bilateral: need d >= 1, sigma_color > 0, sigma_space > 0 "
                         f"(got {d}, {sigma_color}, {sigma_space})")
    return _unit(cv2.bilateralFilter(_f32(img), int(d), float(sigma_color), float(sigma_space)))


def nlm(img: Image, h: float = 10.0, template: int = 7, search: int = 21) -> Image:
    """Non-local means (cv2.fastNlMeansDenoising on 8 bits); h is in 8-bit grey levels, as in OpenCV."""
    if h <= 0 or template < 1 or template % 2 == 0 or search < template or search % 2 == 0:
        raise ValueError(f"nlm: need h > 0, odd template >= 1, odd search >= template "
                         f"(got h={h}, template={template}, search={search})")
    out = cv2.fastNlMeansDenoising(_to_u8(img), None, h=float(h), templateWindowSize=int(template),
                                   searchWindowSize=int(search))
    return _from_u8(out)


def srad(img: Image, iterations: int = 50, dt: float = 0.5, decay: float = 1.0 / 6.0,
         q0: float | None = None) -> Image:
    """Speckle reducing anisotropic diffusion (Yu & Acton 2002); see fbad.preprocess.srad."""

    return _unit(cast(np.ndarray,  # numpy in, numpy out
                      _srad.srad(_f32(img), iterations=int(iterations), dt=float(dt), decay=float(decay),
                                 q0=None if q0 is None else float(q0))))


def gamma(img: Image, gamma: float = 1.0) -> Image:
    """Power law img ** gamma: gamma < 1 brightens the dark range, gamma > 1 darkens it."""
    if gamma <= 0:
        raise ValueError(f"gamma: gamma must be > 0, got {gamma}")
    return _unit(np.power(np.clip(_f32(img), 0.0, 1.0), np.float32(gamma)))


def log_compress(img: Image, c: float = 10.0) -> Image:
    """log(1 + c x) / log(1 + c): lifts weak echoes; larger c compresses the dynamic range more."""
    if c <= 0:
        raise ValueError(f"log_compress: c must be > 0, got {c}")
    x = np.clip(_f32(img), 0.0, 1.0)
    return _unit(np.log1p(np.float32(c) * x) / np.float32(np.log1p(c)))


def unsharp(img: Image, sigma: float = 1.0, amount: float = 1.0) -> Image:
    """Unsharp masking: img + amount * (img - gaussian(img, sigma)) (skimage), clipped to [0, 1]."""
    from skimage.filters import unsharp_mask  # scikit-image: imported when the operator runs

    if sigma <= 0 or amount < 0:
        raise ValueError(f"unsharp: need sigma > 0 and amount >= 0 (got {sigma}, {amount})")
    return _unit(unsharp_mask(_f32(img), radius=float(sigma), amount=float(amount)))


def scharr_edge_mask(img: Image, threshold: float | None = 0.1) -> Image:
    """Scharr gradient magnitude, normalised so a unit step scores 1 (clipped to [0, 1]).

    With a threshold: the binary mask (0/1) of strong edges, magnitude >= threshold; with None: the
    magnitude itself as a soft edge map.
    """
    x = _f32(img)
    gx = cv2.Scharr(x, cv2.CV_32F, 1, 0, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.Scharr(x, cv2.CV_32F, 0, 1, borderType=cv2.BORDER_REPLICATE)
    mag = _unit(cv2.magnitude(gx, gy) / np.float32(16.0))  # Scharr weights 3-10-3: a unit step gives 16
    if threshold is None:
        return mag
    if threshold < 0:
        raise ValueError(f"scharr_edge_mask: threshold must be >= 0 or None, got {threshold}")
    return (mag >= np.float32(threshold)).astype(np.float32)


def laplacian_sharpen(img: Image, strength: float = 1.0, edge_threshold: float | None = None,
                      ksize: int = 1) -> Image:
    """img - strength * Laplacian(img), clipped; with edge_threshold only on Scharr edges >= it.

    Masking the sharpening to strong edges (the seed study's chain) avoids amplifying speckle in
    the flat regions, which plain Laplacian sharpening does.
    """
    if strength < 0 or ksize not in (1, 3, 5, 7):
        raise ValueError(f"laplacian_sharpen: need strength >= 0 and ksize in 1, 3, 5, 7 (got {strength}, {ksize})")
    x = _f32(img)
    lap = cv2.Laplacian(x, cv2.CV_32F, ksize=int(ksize), borderType=cv2.BORDER_REPLICATE)
    if edge_threshold is not None:
        lap *= scharr_edge_mask(x, edge_threshold)
    return _unit(x - np.float32(strength) * lap)


def percentile_norm(img: Image, low: float = 1.0, high: float = 99.0) -> Image:
    """Linear stretch mapping the low / high percentiles to 0 / 1 (a flat image is left as it is)."""
    if not 0.0 <= low < high <= 100.0:
        raise ValueError(f"percentile_norm: need 0 <= low < high <= 100, got {low}, {high}")
    x = _f32(img)
    lo, hi = np.percentile(x, [low, high])
    if hi <= lo:
        return _unit(x.copy())
    return _unit((x - np.float32(lo)) / np.float32(hi - lo))


OPERATORS: dict[str, Operator] = {
    "hist_eq": hist_eq,
    "clahe": clahe,
    "median": median,
    "gaussian": gaussian,
    "bilateral": bilateral,
    "nlm": nlm,
    "srad": srad,
    "gamma": gamma,
    "log_compress": log_compress,
    "unsharp": unsharp,
    "laplacian_sharpen": laplacian_sharpen,
    "scharr_edge_mask": scharr_edge_mask,
    "percentile_norm": percentile_norm,
}


# --------------------------------------------------------------------------------------------------
# chains


def _params(fn: Operator) -> list[str]:
    return list(inspect.signature(fn).parameters)[1:]


def _plain(obj: Any) -> Any:
    """omegaconf containers (or any mapping / sequence) -> plain dicts and lists."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, Sequence) and not isinstance(obj, str | bytes):
        return [_plain(v) for v in obj]
    return obj


def _bind(i: int, spec: Any) -> tuple[str, Operator, dict[str, Any]]:
    if not isinstance(spec, Mapping) or "op" not in spec:
        raise ValueError(f"enhancement op #{i}: expected a mapping like {{op: clahe, clip_limit: 2.0}}, got {spec!r}")
    spec = _plain(spec)
    name = spec.pop("op")
    if name not in OPERATORS:
        raise ValueError(f"enhancement op #{i}: unknown op {name!r}; allowed: {sorted(OPERATORS)}")
    fn = OPERATORS[name]
    allowed = _params(fn)
    unknown = sorted(set(spec) - set(allowed))
    if unknown:
        raise ValueError(f"enhancement op #{i} {name!r}: unknown parameter(s) {unknown}; allowed: {allowed}")
    return name, fn, spec


_PROBE = np.linspace(0.0, 1.0, 48 * 40, dtype=np.float32).reshape(48, 40)


def build_chain(ops: Sequence[Mapping[str, Any]], check: bool = True) -> Callable[[Image], Image]:
    """The composed operator for a list of op mappings; the empty list is the identity.

    The chain accepts float images in [0, 1] (values outside are clipped) and integer images
    (scaled by their dtype's maximum, so uint8 0..255 -> 0..1), and returns float32 in [0, 1].

    Unknown op names and parameters raise ValueError naming the op and what is allowed; with
    `check`, the chain is also run once on a small probe image, so bad parameter values (an even
    median ksize, a negative sigma, a string where a number belongs) fail here too.
    """
    if isinstance(ops, str | bytes | Mapping) or not isinstance(ops, Sequence):
        raise ValueError(f"enhancement ops must be a list of mappings, got {type(ops).__name__}")
    steps = [_bind(i, spec) for i, spec in enumerate(ops)]

    def chain(img: Image) -> Image:
        x = as_unit_float(img)
        if x.ndim != 2:
            raise ValueError(f"enhancement expects a 2-D grayscale image, got shape {x.shape}")
        for _, fn, kw in steps:
            x = fn(x, **kw)
        return x

    chain.ops = [{"op": name, **kw} for name, _, kw in steps]  # type: ignore[attr-defined]
    if check:
        for i, (name, fn, kw) in enumerate(steps):
            try:
                out = fn(_PROBE, **kw)
            except (ValueError, TypeError, cv2.error) as exc:
                raise ValueError(f"enhancement op #{i} {name!r} {kw}: {exc}") from exc
            if out.shape != _PROBE.shape or out.dtype != np.float32:
                raise ValueError(f"enhancement op #{i} {name!r}: returned {out.dtype} {out.shape}")
    return chain


def as_unit_float(img: Image) -> Image:
    """uint8 / uint16 / bool / float image -> float32 in [0, 1] (integers scaled by their dtype's max)."""
    a = np.asarray(img)
    if a.dtype == bool:
        return a.astype(np.float32)
    if np.issubdtype(a.dtype, np.integer):
        return a.astype(np.float32) / np.float32(np.iinfo(a.dtype).max)
    return _unit(a.astype(np.float32))


_CHAINS: dict[str, Callable[[Image], Image]] = {}


def apply_enhancement(img: Image, cfg: Mapping[str, Any]) -> Image:
    """Enhance one image with the `enhancement` config group ({name, ops}); uint8 or float input."""
    ops = _plain(cfg.get("ops") or [])
    key = json.dumps(ops, sort_keys=True, default=str)
    if key not in _CHAINS:
        _CHAINS[key] = build_chain(ops)
    return _CHAINS[key](as_unit_float(img))
