"""Preprocessing cache: first (uncached) load vs a cache hit, on the phantom and on real HC18 images.

    python benchmarks/bench_cache.py [--n-per-plane 200] [--size 256] [--image-size 128]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from fbad.anomaly.preprocessor import Preprocessor
from fbad.data.readers import read_dataset
from fbad.engine.cache import cached_preprocess

HC18 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hc18"


def measure(name: str, records, image_size: int, cache_dir: Path, workers: int) -> None:
    pre = Preprocessor({"image_size": image_size, "enhancement": {"name": "none", "ops": []},
                        "segmentation": {"name": "none"}, "align": {"name": "none", "crop": False}})
    t0 = time.perf_counter()
    first = cached_preprocess(records, pre, pre.config_for_hash(), cache_dir, workers=workers, progress=False)
    t1 = time.perf_counter()
    again = cached_preprocess(records, pre, pre.config_for_hash(), cache_dir, workers=workers, progress=False)
    _ = float(again.arrays["image"][:].astype("float32").mean())  # touch every byte of the hit
    t2 = time.perf_counter()
    assert not first.hit and again.hit
    n = len(records)
    print(f"{name:<28} {n:>6} {t1 - t0:>10.3f} {t2 - t1:>10.4f} {(t1 - t0) / (t2 - t1):>9.0f}x"
          f" {n / (t1 - t0):>10.0f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-per-plane", type=int, default=200)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        phantom = read_dataset({"name": "phantom", "root": str(tmp / "phantom"), "n_per_plane": args.n_per_plane,
                                "size": args.size, "seed": 0}).records
        print(f"{'dataset':<28} {'images':>6} {'uncached s':>10} {'cached s':>10} {'speed-up':>10} {'uncached/s':>10}")
        measure(f"phantom {args.size}px", phantom, args.image_size, tmp / "cache", args.workers)
        if HC18.is_dir():
            hc = read_dataset({"name": "hc18", "root": str(HC18)}).records
            measure("HC18 800x540", hc, args.image_size, tmp / "cache", args.workers)


if __name__ == "__main__":
    main()
