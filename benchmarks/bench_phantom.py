"""Phantom generation speed: in-memory, and written to disk by write_phantom with 1 and 2 workers.

Reference measured in the same run: writing the five PNGs of an image (image + four ground-truth maps)
from ready-made arrays, the floor under write_phantom's per-image cost, with OpenCV's default PNG
filtering and with the settings write_phantom uses. Each line gives wall-clock images/s and the CPU
time per image (this process plus finished worker processes): on a shared, loaded machine the wall
clock drops with the load while the CPU time per image stays close to what an idle core would need.

    python benchmarks/bench_phantom.py [--size 256] [--n 300]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from fbad.data.phantom import PhantomConfig, generate_sample, plan, write_phantom
from fbad.data.phantom.writer import _PNG, _PNG_MASK


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class Timer:
    def __enter__(self) -> Timer:
        self.wall, self.cpu = time.perf_counter(), cpu_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, cpu_seconds() - self.cpu

    def line(self, n: int) -> str:
        return (f"{n / self.wall:8.1f} images/s wall ({1e3 * self.wall / n:6.2f} ms/image) | "
                f"CPU {1e3 * self.cpu / n:6.2f} ms/image = {n / self.cpu:6.1f} images/s per busy core")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--n", type=int, default=300, help="images per measurement (rounded to a multiple of 3)")
    args = ap.parse_args()
    cfg = PhantomConfig(size=args.size)
    per_plane = max(1, args.n // 3)
    items = plan(per_plane, cfg, seed=0)
    n = len(items)
    print(f"phantom benchmark: size {args.size}, {n} images, anomaly fraction {cfg.anomaly_fraction}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, OpenCV threads {cv2.getNumThreads()}")

    generate_sample(items[0].plane, items[0].seed, cfg)  # warm caches (scan geometry, speckle bank)
    with Timer() as t:
        samples = [generate_sample(it.plane, it.seed, cfg, it.anomaly_type, it.severity) for it in items]
    print("generate_sample, 1 process, in memory   :", t.line(n))

    tmp = Path(tempfile.mkdtemp(prefix="bench_phantom_"))
    try:
        for label, png, mask_png in (("OpenCV default", [cv2.IMWRITE_PNG_COMPRESSION, 1], None),
                                     ("as write_phantom", _PNG, _PNG_MASK)):
            with Timer() as t:
                for i, s in enumerate(samples):
                    cv2.imwrite(str(tmp / f"{i}.png"), s.image, png)
                    cv2.imwrite(str(tmp / f"{i}_c.png"), cv2.convertScaleAbs(s.clean, alpha=255.0), png)
                    for k, m in enumerate((s.skull_mask, s.brain_mask, s.anomaly_mask)):
                        cv2.imwrite(str(tmp / f"{i}_{k}.png"), m.view(np.uint8) * np.uint8(255), mask_png or png)
            print(f"reference: 5 PNG writes, {label}:", t.line(n))

        for workers in (1, 2):
            out = tmp / f"w{workers}"
            with Timer() as t:
                write_phantom(out, per_plane, cfg, seed=0, workers=workers, progress=False)
            print(f"write_phantom, {workers} worker(s)              :", t.line(n))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
