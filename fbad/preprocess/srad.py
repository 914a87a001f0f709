"""Speckle reducing anisotropic diffusion (Yu & Acton, IEEE TIP 2002), batched in torch.

Neither OpenCV nor scikit-image has SRAD, so it is written here: `srad` is the vectorised, batched
torch version used by the pipeline; `srad_reference` is a plain per-image, per-iteration NumPy loop
kept as the equivalence reference for tests and `benchmarks/bench_srad.py`.

The discrete scheme (paper eqs. 54-58), for each pixel with 4-neighbours N, S, W, E and replicate
(Neumann) borders:

    q^2  = (1/2 |grad I|^2 / I^2 - 1/16 (lap I / I)^2) / (1 + 1/4 lap I / I)^2
    c    = 1 / (1 + (q^2 - q0^2) / (q0^2 (1 + q0^2)))       clipped to [0, 1]
    d    = c_S (I_S - I) + c (I_N - I) + c_E (I_E - I) + c (I_W - I)
    I   <- I + dt/4 * d

with the speckle scale q0(t) = q0 * exp(-decay * t), t = iteration * dt (the paper's
exponential approximation, rho = 1/6).

Two guards that the paper leaves implicit: I is floored at `eps` in the denominators (B-mode images
are black outside the sector, where the coefficient of variation is undefined), and q^2 is floored at
0 (the discrete estimate can go negative, which puts a pole into c; q^2 = 0 gives c = 1 anyway).

When q0 is None it is estimated once per image from the input, as the median over the image of the
local coefficient of variation (std/mean in 5x5 windows, where the local mean exceeds 0.05): most
of an ultrasound frame is homogeneous speckle, so the median picks the speckle level without needing
a hand-drawn homogeneous region; the exponential decay then follows from that value.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

EPS = 1e-3  # intensity floor in the denominators (images are in [0, 1])
_WIN = 5  # window of the local coefficient of variation for the q0 estimate
_MIN_MEAN = 0.05  # windows darker than this (scanner background) do not vote for q0


def _q0_schedule(q0: float | np.ndarray, decay: float, dt: float, k: int):
    return q0 * math.exp(-decay * k * dt)


# --------------------------------------------------------------------------------------------------
# torch, batched


def estimate_q0_torch(x: torch.Tensor) -> torch.Tensor:
    """Per-image speckle scale of a (B, H, W) batch: median local std/mean over bright 5x5 windows."""
    p = _WIN // 2
    xp = F.pad(x[:, None].double(), (p, p, p, p), mode="replicate")
    mean = F.avg_pool2d(xp, _WIN, stride=1)[:, 0]
    sq = F.avg_pool2d(xp * xp, _WIN, stride=1)[:, 0]
    cv = (sq - mean * mean).clamp_min(0).sqrt() / mean.clamp_min(EPS)
    cv = torch.where(mean > _MIN_MEAN, cv, torch.nan).flatten(1)
    q0 = torch.stack([torch.nanquantile(row, 0.5) for row in cv])  # per image: quantile has a size cap
    # an image with no bright window (all dark) has no speckle to estimate: fall back to a mild value
    return torch.nan_to_num(q0, nan=0.1).clamp_min(1e-3).to(x.dtype)


def _shift_up(t: torch.Tensor) -> torch.Tensor:
    """t[i+1, :] with the last row repeated (replicate border)."""
    return torch.cat([t[:, 1:], t[:, -1:]], dim=1)


def _shift_left(t: torch.Tensor) -> torch.Tensor:
    """t[:, j+1] with the last column repeated (replicate border)."""
    return torch.cat([t[:, :, 1:], t[:, :, -1:]], dim=2)


def srad_step(img: torch.Tensor, q0sq: torch.Tensor, dt: float, eps: float = EPS) -> torch.Tensor:
    """One SRAD iteration on a (B, H, W) batch; q0sq is (B, 1, 1). Pure tensor ops (compilable)."""
    p = F.pad(img[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
    dn = p[:, :-2, 1:-1] - img
    ds = p[:, 2:, 1:-1] - img
    dw = p[:, 1:-1, :-2] - img
    de = p[:, 1:-1, 2:] - img
    inv = 1.0 / img.clamp_min(eps)
    g2 = (dn * dn + ds * ds + dw * dw + de * de) * inv * inv
    lap = (dn + ds + dw + de) * inv
    den = 1.0 + 0.25 * lap
    q2 = ((0.5 * g2 - 0.0625 * lap * lap) / (den * den).clamp_min(1e-12)).clamp_min(0.0)
    c = (1.0 / (1.0 + (q2 - q0sq) / (q0sq * (1.0 + q0sq)))).clamp(0.0, 1.0)
    div = _shift_up(c) * ds + _shift_left(c) * de + c * (dn + dw)
    return img + (0.25 * dt) * div


_compiled_step = None


def _step_fn(compile: bool):
    global _compiled_step
    if not compile:
        return srad_step
    if _compiled_step is None:
        _compiled_step = torch.compile(srad_step, dynamic=False)
    return _compiled_step


def srad(
    img: np.ndarray | torch.Tensor,
    iterations: int = 50,
    dt: float = 0.5,
    decay: float = 1.0 / 6.0,
    q0: float | None = None,
    compile: bool = False,
) -> np.ndarray | torch.Tensor:
    """SRAD on one (H, W) image or a (B, H, W) batch with values in [0, 1].

    numpy in -> float32 numpy out; a tensor stays on its device. dt <= 1 keeps the explicit update
    stable (c <= 1). `compile=True` fuses the step with torch.compile (needs a C++ compiler on CPU;
    the first call pays the compilation).
    """
    if iterations < 0 or dt <= 0 or decay < 0 or (q0 is not None and q0 <= 0):
        raise ValueError(f"srad: need iterations >= 0, dt > 0, decay >= 0, q0 > 0 or None "
                         f"(got iterations={iterations}, dt={dt}, decay={decay}, q0={q0})")
    as_numpy = isinstance(img, np.ndarray)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32)) if as_numpy else img
    if x.ndim not in (2, 3):
        raise ValueError(f"srad expects (H, W) or (B, H, W), got shape {tuple(x.shape)}")
    single = x.ndim == 2
    x = x[None] if single else x
    x = x.float() if not x.is_floating_point() or x.dtype == torch.float16 else x
    with torch.no_grad():
        base = estimate_q0_torch(x) if q0 is None else torch.full((x.shape[0],), float(q0), dtype=x.dtype,
                                                                  device=x.device)
        base = base.view(-1, 1, 1)
        step = _step_fn(compile)
        out = x.contiguous()
        for k in range(iterations):
            q0k = _q0_schedule(base, decay, dt, k)
            out = step(out, q0k * q0k, dt)
        out = out.clamp(0.0, 1.0)
    out = out[0] if single else out
    return out.numpy() if as_numpy else out


# --------------------------------------------------------------------------------------------------
# NumPy reference: one image, one iteration at a time, float64, written to be read


def estimate_q0_reference(img: np.ndarray) -> float:
    """NumPy twin of estimate_q0_torch for one (H, W) image."""
    p = _WIN // 2
    win = np.lib.stride_tricks.sliding_window_view(np.pad(img.astype(np.float64), p, mode="edge"),
                                                   (_WIN, _WIN))
    mean = win.mean(axis=(-2, -1))
    sq = (win * win).mean(axis=(-2, -1))
    cv = np.sqrt(np.clip(sq - mean * mean, 0, None)) / np.maximum(mean, EPS)
    cv = cv[mean > _MIN_MEAN]
    return max(float(np.median(cv)), 1e-3) if cv.size else 0.1


def srad_reference(
    img: np.ndarray,
    iterations: int = 50,
    dt: float = 0.5,
    decay: float = 1.0 / 6.0,
    q0: float | None = None,
    eps: float = EPS,
) -> np.ndarray:
    """Straightforward per-iteration SRAD of one (H, W) image in float64 (the equivalence reference)."""
    i = np.asarray(img, dtype=np.float64)
    base = estimate_q0_reference(i) if q0 is None else float(q0)
    for k in range(iterations):
        q0sq = _q0_schedule(base, decay, dt, k) ** 2
        p = np.pad(i, 1, mode="edge")
        dn = p[:-2, 1:-1] - i
        ds = p[2:, 1:-1] - i
        dw = p[1:-1, :-2] - i
        de = p[1:-1, 2:] - i
        safe = np.maximum(i, eps)
        g2 = (dn**2 + ds**2 + dw**2 + de**2) / safe**2
        lap = (dn + ds + dw + de) / safe
        q2 = (0.5 * g2 - (1 / 16) * lap**2) / np.maximum((1 + 0.25 * lap) ** 2, 1e-12)
        q2 = np.maximum(q2, 0.0)
        c = np.clip(1.0 / (1.0 + (q2 - q0sq) / (q0sq * (1.0 + q0sq))), 0.0, 1.0)
        cp = np.pad(c, 1, mode="edge")
        c_s, c_e = cp[2:, 1:-1], cp[1:-1, 2:]
        i = i + dt / 4 * (c_s * ds + c * dn + c_e * de + c * dw)
    return np.clip(i, 0.0, 1.0).astype(np.float32)
