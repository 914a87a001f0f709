"""SRAD speed: batched torch (eager and torch.compile) vs the plain per-image NumPy reference.

Both run in the same process on the same speckled phantom batch, with the same parameters
(q0 estimated per image on both sides), and the script prints the times side by side, the
speed-ups and the largest absolute difference from the reference. Timings are the best of
`--repeats` runs, as wall-clock and as process CPU time (on a shared machine the CPU time is the
steadier of the two; with more than one thread it sums the threads); torch.compile's one-off
compilation is timed apart.

    python benchmarks/bench_srad.py [--batch 32] [--size 256] [--iterations 50] [--threads N]

The speed-up comes from batching the images into one float32 tensor and from torch.compile fusing
each iteration into one vectorised loop over a padded buffer; eager mode (no compiler needed) runs
cache-sized chunks on one thread.
"""

from __future__ import annotations

import argparse
import os
import time

import cv2
import numpy as np
import torch

from fbad.preprocess.srad import srad, srad_reference


def speckled_batch(batch: int, size: int, seed: int = 0) -> np.ndarray:
    """Smooth ellipses of varying brightness times unit-mean Rayleigh speckle, clipped to [0, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    out = np.empty((batch, size, size), np.float32)
    for b in range(batch):
        cy, cx, ry, rx = rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.6), rng.uniform(0.2, 0.35), rng.uniform(0.15, 0.3)
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
        shape = cv2.GaussianBlur(np.where(inside, 0.6, 0.25).astype(np.float32), (0, 0), size / 128)
        speckle = rng.rayleigh(np.sqrt(2 / np.pi), (size, size))  # mean 1
        out[b] = np.clip(shape * speckle, 0, 1)
    return out


def best_of(fn, repeats: int) -> tuple[float, float, object]:
    """(best wall seconds, best CPU seconds, last result) over `repeats` calls."""
    wall, cpu, result = float("inf"), float("inf"), None
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        result = fn()
        wall, cpu = min(wall, time.perf_counter() - t), min(cpu, time.process_time() - c)
    return wall, cpu, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--dt", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=1,
                    help=f"torch threads for the compiled run (this machine has {os.cpu_count()} cores); the "
                         "default 1 compares like with like against the single-threaded NumPy reference")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    ap.add_argument("--device", default="cpu", help="device for the torch runs (e.g. cuda)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    imgs = speckled_batch(args.batch, args.size)
    kw = {"iterations": args.iterations, "dt": args.dt}
    print(f"SRAD on {args.batch} images {args.size}x{args.size}, {args.iterations} iterations, dt={args.dt}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), device {args.device}")

    t_ref, c_ref, ref = best_of(lambda: np.stack([srad_reference(im, **kw) for im in imgs]), args.repeats)
    print(f"  {'numpy reference (per image, float64)':36s}: wall {t_ref:7.3f} s  cpu {c_ref:7.3f} s")

    x = torch.from_numpy(imgs).to(args.device)

    def run(compile: bool):
        out = srad(x, compile=compile, **kw)
        if out.is_cuda:
            torch.cuda.synchronize()
        return out.cpu().numpy()

    rows = [("torch eager (batched, float32)", False)]
    if not args.no_compile:
        t0 = time.perf_counter()
        run(True)  # compile once (and warm up)
        print(f"  (torch.compile first call, incl. compilation: {time.perf_counter() - t0:.1f} s)")
        rows.append(("torch.compile (batched, float32)", True))
    for name, compile in rows:
        t, c, out = best_of(lambda c=compile: run(c), args.repeats)
        diff = float(np.abs(out - ref).max())
        print(f"  {name:36s}: wall {t:7.3f} s  cpu {c:7.3f} s   speed-up wall x{t_ref / t:5.1f}  "
              f"cpu x{c_ref / c:5.1f}   max |diff| vs reference {diff:.2e}")


if __name__ == "__main__":
    main()
