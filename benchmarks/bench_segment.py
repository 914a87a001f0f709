"""Segmentation quality and speed on the real HC18 sample: `seed` (the notebook heuristic, the reference) next
to `ellipse`, measured in the same run on the same images.

    python benchmarks/bench_segment.py [--limit N] [--subset all|even|odd] [--methods seed,ellipse]

Per method: mean / median Dice of the head region, mean IoU, mean Hausdorff distance (mm) and mean |HC error|
(mm) over the images where the method returned a head, failure rate (failed images count as Dice 0 in the
Dice means) and images/s of the segmenter alone in one process with OpenCV on one thread (images are decoded
before timing); the process CPU time per image is printed too, as wall time on a shared machine varies with
its load (the load average is printed for that reason). `--subset even` / `odd` splits by row parity, the
split used to tune the `ellipse` knobs on one half and check them on the other.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fbad.preprocess.fov import clean  # noqa: E402
from fbad.segmentation.metrics import segmentation_metrics
from fbad.segmentation.registry import get_segmenter
from fbad.segmentation.truth import fill_outline

DEFAULT_DATA = Path("/work/shared/data/hc18")


def load(data: Path, limit: int | None, subset: str) -> list[dict]:
    with open(data / "training_set_pixel_size_and_HC.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    if subset != "all":
        rows = [r for i, r in enumerate(rows) if (i % 2 == 0) == (subset == "even")]
    rows = rows[:limit] if limit else rows
    out = []
    for r in rows:
        img = cv2.imread(str(data / "images" / r["filename"]), cv2.IMREAD_GRAYSCALE)
        ann = cv2.imread(str(data / "images" / r["filename"].replace(".png", "_Annotation.png")), cv2.IMREAD_GRAYSCALE)
        out.append(
            {
                "name": r["filename"],
                "image": img,
                "truth": fill_outline(ann),
                "pixel_mm": float(r["pixel size(mm)"]),
                "hc_mm": float(r["head circumference (mm)"]),
            }
        )
    return out


def run(method: str, samples: list[dict], repeats: int) -> dict[str, float]:
    seg = get_segmenter({"name": method})
    seg(samples[0]["image"])  # warm-up (imports, allocations)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        results = [seg(s["image"]) for s in samples]
    elapsed = (time.perf_counter() - t0) / repeats
    cpu = (time.process_time() - c0) / repeats
    ms = [segmentation_metrics(r, s["truth"], s["pixel_mm"], s["hc_mm"]) for r, s in zip(results, samples, strict=True)]
    ok = [m for m in ms if not m["failed"]]
    dice = np.array([m["dice"] for m in ms])

    def mean_ok(key: str) -> float:
        vals = [m[key] for m in ok if math.isfinite(m[key])]
        return float(np.mean(vals)) if vals else math.nan

    return {
        "dice_mean": float(dice.mean()),
        "dice_median": float(np.median(dice)),
        "dice<0.8": int((dice < 0.8).sum()),
        "iou_mean": float(np.mean([m["iou"] for m in ms])),
        "hd_mm_mean": mean_ok("hd_mm"),
        "hc_err_mm_mean": mean_ok("hc_abs_err_mm"),
        "hc_err_mm_median": float(np.median([m["hc_abs_err_mm"] for m in ok])) if ok else math.nan,
        "failure_rate": 1.0 - len(ok) / len(ms),
        "images_per_s": len(samples) / elapsed,
        "ms_per_image": 1000 * elapsed / len(samples),
        "cpu_ms_per_image": 1000 * cpu / len(samples),  # less sensitive to other load on the machine
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--subset", choices=("all", "even", "odd"), default="all")
    ap.add_argument("--methods", default="seed,ellipse")
    ap.add_argument("--repeats", type=int, default=1, help="timing passes (metrics from the last)")
    ap.add_argument("--threads", type=int, default=1, help="OpenCV threads (1 = single core)")
    args = ap.parse_args(argv)
    cv2.setNumThreads(args.threads)
    samples = load(args.data, args.limit, args.subset)
    shape_note = f"{samples[0]['image'].shape[1]}x{samples[0]['image'].shape[0]}"
    print(
        f"HC18 sample: {len(samples)} images ({args.subset}, {shape_note}), OpenCV threads={args.threads}, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )

    t0 = time.perf_counter()
    for s in samples:
        clean(s["image"])
    clean_ms = 1000 * (time.perf_counter() - t0) / len(samples)

    rows = {m: run(m, samples, args.repeats) for m in args.methods.split(",")}
    keys = list(next(iter(rows.values())))
    print(f"{'metric':<18}" + "".join(f"{m:>12}" for m in rows))
    for k in keys:
        print(f"{k:<18}" + "".join(f"{rows[m][k]:>12.4g}" for m in rows))
    print(f"(shared first step, fov/text cleaning alone: {clean_ms:.2f} ms/image)")


if __name__ == "__main__":
    main()
