"""The `learned` segmenter on HC18 images it never trained on, next to the training-free `ellipse` method.

    python benchmarks/bench_learned_seg.py --weights outputs/train_seg/<run>/segmenter.pt [--root DIR] [--limit N]

Prints, per variant, mean Dice, Hausdorff (mm), |HC error| (mm), failure rate and seconds per image, all
measured in this run on the same images: the weights' held-out images (every annotated image whose name is not
in the weights' `trained_on` list). Variants: the filled fitted ellipse as head mask (default), the network's
own mask, horizontal-flip test-time augmentation, and the classical `ellipse` method as the reference.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from fbad.data.imageio import read_gray
from fbad.data.readers.hc18 import read_hc18
from fbad.segmentation.learned.segmenter import learned_from_params
from fbad.segmentation.metrics import segmentation_metrics
from fbad.segmentation.registry import get_segmenter
from fbad.segmentation.truth import true_head_mask


def measure(seg, records, truths, images) -> dict[str, float]:
    rows, t0 = [], time.perf_counter()
    for r, img, truth in zip(records, images, truths, strict=True):
        rows.append(segmentation_metrics(seg(img), truth, r.pixel_size_mm, r.extra.get("hc_mm")))
    dt = (time.perf_counter() - t0) / max(len(records), 1)
    out = {k: float(np.mean([row[k] for row in rows])) for k in ("dice", "hd_mm", "hc_abs_err_mm")}
    out["failure_rate"] = float(np.mean([row["failed"] for row in rows]))
    out["s_per_image"] = dt
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True, help="segmenter.pt or an MLflow URI")
    ap.add_argument("--tracking-uri", default=None)
    ap.add_argument("--root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "hc18"))
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    base = learned_from_params(args.weights, tracking_uri=args.tracking_uri)
    records = [r for r in read_hc18(args.root).records
               if r.head_mask_path is not None and r.path.name not in base.trained_on][: args.limit]
    images = [read_gray(r.path) for r in records]
    truths = [true_head_mask(r, img.shape) for r, img in zip(records, images, strict=True)]
    print(f"{len(records)} HC18 images never trained on ({len(base.trained_on)} trained/validated on)")

    variants = {
        "learned (head = fitted ellipse)": base,
        "learned (head = network mask)": learned_from_params(args.weights, tracking_uri=args.tracking_uri,
                                                             head_mask="network"),
        "learned + flip TTA": learned_from_params(args.weights, tracking_uri=args.tracking_uri, tta=True),
        "learned, uncalibrated borders": learned_from_params(args.weights, tracking_uri=args.tracking_uri,
                                                             calibrate=False),
        "reference: ellipse (training-free)": get_segmenter({"name": "ellipse"}),
    }
    print(f"{'variant':<38} {'dice':>7} {'hd_mm':>7} {'hc_err_mm':>10} {'fail':>6} {'s/img':>7}")
    for name, seg in variants.items():
        m = measure(seg, records, truths, images)
        print(f"{name:<38} {m['dice']:7.4f} {m['hd_mm']:7.2f} {m['hc_abs_err_mm']:10.2f} "
              f"{m['failure_rate']:6.2f} {m['s_per_image']:7.3f}", flush=True)


if __name__ == "__main__":
    main()
