"""Throughput of each enhancement preset and of the whole default chain on real HC18 images (800x540).

    python benchmarks/bench_pipeline.py [--limit 100] [--workers 2]

The reference in the same run is PNG decoding alone. The whole chain (read -> enhance -> segment ->
align -> resize) runs through the same parallel map the preprocessing cache uses.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from fbad.config import compose
from fbad.data.imageio import read_gray
from fbad.data.readers import read_dataset
from fbad.parallel import safe_map
from fbad.preprocess.enhance import build_chain
from fbad.preprocess.pipeline import Preprocessor

HC18 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hc18"
PRESETS = ("none", "seed", "clahe", "bilateral", "srad_clahe", "nlm_clahe")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=str(HC18))
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    records = read_dataset({"name": "hc18", "root": args.root}).records[: args.limit]
    images = [read_gray(r.path) for r in records]  # warm the file cache
    n = len(records)

    t0 = time.perf_counter()
    for r in records:
        read_gray(r.path)
    decode = n / (time.perf_counter() - t0)
    print(f"{n} HC18 images {images[0].shape[1]}x{images[0].shape[0]}; single process unless noted\n")
    print(f"{'step':<44} {'images/s':>9}")
    print(f"{'PNG decode alone (reference)':<44} {decode:>9.1f}")
    for preset in PRESETS:
        ops = compose("train", [f"enhancement={preset}"]).enhancement.ops
        chain = build_chain(list(ops)) if len(ops) else (lambda x: x)
        t0 = time.perf_counter()
        for img in images:
            chain(img.astype(np.float32) / 255.0)
        print(f"{'enhance ' + preset:<44} {n / (time.perf_counter() - t0):>9.1f}")

    cfg = compose("train", ["dataset=hc18"])
    for workers in (1, args.workers):
        pre = Preprocessor(cfg.preprocess)
        t0 = time.perf_counter()
        out = safe_map(pre, records, workers=workers, progress=False, min_parallel=1)
        dt = time.perf_counter() - t0
        failed = sum(res is None for res, _ in out)
        label = (f"default chain ({cfg.enhancement.name}/{cfg.segmentation.name}/{cfg.align.name}"
                 f"/{cfg.preprocess.image_size}px), {workers} worker(s)")
        print(f"{label:<44} {n / dt:>9.1f}   ({failed} failed segmentations)")


if __name__ == "__main__":
    main()
