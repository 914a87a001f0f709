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
local coefficient of variation (std/mean in non-overlapping 5x5 blocks whose mean exceeds 0.05):
most of an ultrasound frame is homogeneous speckle, so the median picks the speckle level without
needing a hand-drawn homogeneous region; the exponential decay then follows from that value.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F

EPS = 1e-3  # intensity floor in the denominators (images are in [0, 1])
_WIN = 5  # window of the local coefficient of variation for the q0 estimate
_MIN_MEAN = 0.05  # blocks darker than this (scanner background) do not vote for q0
_CPU_CHUNK = 1 << 18  # pixels per eager CPU chunk: a few batch-sized temporaries stay in L2


def _q0_schedule(q0: float | torch.Tensor, decay: float, dt: float, k: int):
    """q0(t) = q0 exp(-decay t) at t = k dt."""
    return q0 * math.exp(-decay * k * dt)


# --------------------------------------------------------------------------------------------------
# torch, batched


def _median(v: torch.Tensor) -> torch.Tensor:
    """numpy's median (mean of the two middle values) by selection, not a full sort."""
    n = v.numel()
    lo = torch.kthvalue(v, (n + 1) // 2).values
    return lo if n % 2 else (lo + torch.kthvalue(v, n // 2 + 1).values) / 2


def estimate_q0_torch(x: torch.Tensor) -> torch.Tensor:
    """Per-image speckle scale of a (B, H, W) batch: median std/mean over bright 5x5 blocks."""
    if min(x.shape[1:]) < _WIN:  # no whole block: nothing to estimate from (fallback as below)
        return x.new_full((x.shape[0],), 0.1)
    mean = F.avg_pool2d(x[:, None], _WIN)[:, 0]  # non-overlapping blocks, remainder cropped
    sq = F.avg_pool2d((x * x)[:, None], _WIN)[:, 0]
    cv = (sq - mean * mean).clamp_min(0).sqrt() / mean.clamp_min(EPS)
    valid = mean > _MIN_MEAN
    # an image with no bright block (all dark) has no speckle to estimate: fall back to a mild 0.1
    q0 = [_median(cv[b][valid[b]]) if valid[b].any() else cv.new_tensor(0.1) for b in range(x.shape[0])]
    return torch.stack(q0).clamp_min(1e-3)


def _coefficient(p: torch.Tensor, q0sq: torch.Tensor, eps: float) -> torch.Tensor:
    """Diffusion coefficient c at every pixel of p that has four neighbours in p.

    Same value as the paper's formula (see srad_reference), rearranged to one division: the I^2 in
    q^2 cancels, q^2 = (|grad I|^2/2 - (lap I)^2/16) / (I + lap I/4)^2, and with q0^2(1+q0^2) - q0^2
    = q0^4, c = k den / (q0^4 den + num) where k = q0^2(1+q0^2). In-place ops keep eager mode to a
    few batch-sized temporaries; torch.compile fuses the function into one vectorised loop anyway.
    """
    i = p[:, 1:-1, 1:-1]
    dn = p[:, :-2, 1:-1] - i
    ds = p[:, 2:, 1:-1] - i
    dw = p[:, 1:-1, :-2] - i
    de = p[:, 1:-1, 2:] - i
    g2 = (dn * dn).addcmul_(ds, ds).addcmul_(dw, dw).addcmul_(de, de)  # |grad I|^2 (both one-sided)
    lap = dn.add_(ds).add_(dw).add_(de)
    num = g2.mul_(0.5).addcmul_(lap, lap, value=-0.0625).clamp_min_(0.0)  # q^2 >= 0
    den = i.clamp_min(eps).add_(lap, alpha=0.25).square_().clamp_min_(1e-12)
    k = q0sq * (1.0 + q0sq)
    return den.mul(k).div_(den.mul_(q0sq * q0sq).add_(num)).clamp_max_(1.0)


def srad_step(
    p: torch.Tensor, out: torch.Tensor, c_ext: torch.Tensor, q0sq: torch.Tensor, dt: float, eps: float = EPS
) -> None:
    """One SRAD iteration from the padded batch p into the interior of out (same shape).

    p is (B, H+3, W+3): the image at [1:-2, 1:-2], replicated one pixel above/left and two
    below/right, so c can be computed one row/column past the image and every neighbour read is a
    plain offset slice (no index clamping): torch.compile turns this into two vectorised loops.
    c_ext is a (B, H+1, W+1) scratch buffer for c, q0sq is (B, 1, 1); writing into buffers the caller
    reuses avoids allocating (and page-faulting) fresh batch-sized memory every iteration. The
    borders of out are left to `_replicate_borders` (inside the compiled graph they cost a copy).
    """
    c_ext.copy_(_coefficient(p, q0sq, eps))
    i = p[:, 1:-2, 1:-2]
    h, w = i.shape[1], i.shape[2]
    dn = p[:, :-3, 1:-2] - i
    ds = p[:, 2:-1, 1:-2] - i
    dw = p[:, 1:-2, :-3] - i
    de = p[:, 1:-2, 2:-1] - i
    # on the last row/column ds/de are 0 (replicated border), so c one past the image is never used
    flux = (c_ext[:, 1:, :w] * ds).addcmul_(c_ext[:, :h, 1:], de).addcmul_(c_ext[:, :h, :w], dn.add_(dw))
    out[:, 1:-2, 1:-2] = flux.mul_(0.25 * dt).add_(i)  # (an out= call would break the compiled graph)


def _replicate_borders(p: torch.Tensor) -> None:
    """Refresh the replicate padding of a (B, H+3, W+3) buffer in place (Neumann boundary)."""
    p[:, 0] = p[:, 1]
    p[:, -2:] = p[:, -3:-2]
    p[:, :, 0] = p[:, :, 1]
    p[:, :, -2:] = p[:, :, -3:-2]


@contextmanager
def _one_thread(active: bool):
    """Run cache-sized eager chunks on one intra-op thread (restored afterwards).

    Each eager op on a chunk lasts ~0.1 ms, too short for OpenMP's fork/join to pay off; on a busy
    machine (other processes, or a process pool with as many torch threads as cores each) the
    threads' barrier waits made SRAD 30-250x slower in our measurements. torch's thread count is
    process-wide, so a concurrent torch call in another thread sees it too while this runs.
    """
    before = torch.get_num_threads()
    if active and before > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


_compiled_step = None


def _step_fn(compile: bool):
    global _compiled_step
    if not compile:
        return srad_step
    if _compiled_step is None:
        _compiled_step = torch.compile(srad_step)
    return _compiled_step


def _diffuse(x: torch.Tensor, q0: torch.Tensor, iterations: int, dt: float, decay: float, step) -> torch.Tensor:
    """Run the iterations on a (B, H, W) batch with per-image base speckle scale q0 (B,)."""
    a = F.pad(x[:, None], (1, 2, 1, 2), mode="replicate")[:, 0].contiguous()
    b = torch.empty_like(a)
    c = a.new_empty(a.shape[0], a.shape[1] - 2, a.shape[2] - 2)
    q0 = q0.view(-1, 1, 1)
    for k in range(iterations):
        q0k = _q0_schedule(q0, decay, dt, k)
        step(a, b, c, q0k * q0k, dt)
        _replicate_borders(b)
        a, b = b, a
    return a[:, 1:-2, 1:-2].clamp(0.0, 1.0)


def srad(
    img: np.ndarray | torch.Tensor,
    iterations: int = 50,
    dt: float = 0.5,
    decay: float = 1.0 / 6.0,
    q0: float | None = None,
    compile: bool = False,
) -> np.ndarray | torch.Tensor:
    """SRAD on one (H, W) image or a (B, H, W) batch with values in [0, 1].

    numpy in -> float32 numpy out; a tensor stays on its device (float64 stays float64, other dtypes
    become float32). dt <= 1 keeps the explicit update stable (c <= 1). `compile=True` fuses each
    step into one vectorised kernel with torch.compile (needs a C++ compiler on CPU; the first call
    per shape pays the compilation, so it pays off for large batches; its kernels use torch's
    threads). Eager mode on CPU runs the batch in chunks of about 2^18 pixels on one thread, which
    keeps the temporaries in cache and avoids OpenMP stalls on a busy machine.
    """
    if iterations < 0 or dt <= 0 or decay < 0 or (q0 is not None and q0 <= 0):
        raise ValueError(f"srad: need iterations >= 0, dt > 0, decay >= 0, q0 > 0 or None "
                         f"(got iterations={iterations}, dt={dt}, decay={decay}, q0={q0})")
    as_numpy = isinstance(img, np.ndarray)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32)) if as_numpy else cast(torch.Tensor, img)
    if x.ndim not in (2, 3):
        raise ValueError(f"srad expects (H, W) or (B, H, W), got shape {tuple(x.shape)}")
    single = x.ndim == 2
    x = x[None] if single else x
    x = x if x.dtype in (torch.float32, torch.float64) else x.float()
    eager_cpu = not compile and x.device.type == "cpu"
    with torch.no_grad(), _one_thread(eager_cpu):
        base = estimate_q0_torch(x) if q0 is None else x.new_full((x.shape[0],), float(q0))
        step = _step_fn(compile)
        chunk = max(1, _CPU_CHUNK // x[0].numel()) if eager_cpu else x.shape[0]
        out = torch.cat([_diffuse(xc, qc, iterations, dt, decay, step)
                         for xc, qc in zip(x.split(chunk), base.split(chunk), strict=True)])
    out = out[0] if single else out
    return out.numpy() if as_numpy else out


# --------------------------------------------------------------------------------------------------
# NumPy reference: one image, one iteration at a time, float64, written to be read


def estimate_q0_reference(img: np.ndarray) -> float:
    """NumPy twin of estimate_q0_torch for one (H, W) image."""
    k = _WIN
    h, w = img.shape[0] // k * k, img.shape[1] // k * k
    blocks = img[:h, :w].astype(np.float64).reshape(h // k, k, w // k, k)
    mean = blocks.mean(axis=(1, 3))
    cv = blocks.std(axis=(1, 3)) / np.maximum(mean, EPS)
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
