"""Detection on the phantom: fbad's default model, the PCA baseline and the seed reproduction, side by side.

    python benchmarks/bench_detection.py [--seed-epochs 30] [--seed-size 224] [--out outputs/bench_detection]

All three train on the same phantom and splits (one cached preprocessing per chain) and are judged on
the same test split. Printed: AUROC per plane, mean AUROC, F1 at each model's own threshold, and
training images/s. The seed reproduction is the original study's chain, including its decision rule
(abnormal when the mean reconstruction intensity is below 0.15).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import mlflow

from fbad.config import compose
from fbad.training.anomaly import run_training

PLANES = ("trans_thalamic", "trans_cerebellum", "trans_ventricular")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="outputs/bench_detection")
    ap.add_argument("--seed-epochs", type=int, default=30)
    ap.add_argument("--seed-size", type=int, default=224)
    ap.add_argument("--extra", nargs="*", default=[], help="overrides applied to all three")
    args = ap.parse_args()
    os.environ["FBAD_OUTPUTS"] = str(Path(args.out).resolve())
    variants = {
        "fbad default (conv_ae)": [],
        "pca baseline": ["model=pca"],
        "seed reproduction": ["experiment=seed_reproduction", f"trainer.max_epochs={args.seed_epochs}",
                              f"preprocess.image_size={args.seed_size}"],
    }
    rows = []
    for name, over in variants.items():
        cfg = compose("train", [*over, *args.extra, "progress=false", f"logger.experiment=bench-{name.split()[0]}"])
        summary = run_training(cfg, Path(args.out) / "runs" / name.replace(" ", "_"))
        run = mlflow.search_runs(experiment_names=[cfg.logger.experiment], filter_string="tags.plane != ''")
        by_plane = {r["tags.plane"]: r for _, r in run.iterrows()}
        # one model over all planes (the seed reproduction) has no per-plane AUROC: shown as nan
        rows.append((name, [by_plane[p]["metrics.test_auroc"] if p in by_plane else float("nan") for p in PLANES],
                     summary.get("test_auroc_mean"), summary.get("test_f1_mean"),
                     [r["metrics.train_images_per_s"] for r in by_plane.values()]))
    print(f"\n{'model':<24} {'AUROC TT':>9} {'AUROC TC':>9} {'AUROC TV':>9} {'mean':>7} {'F1':>7} {'train img/s':>12}")
    for name, aurocs, mean, f1, speed in rows:
        print(f"{name:<24} " + " ".join(f"{a:>9.3f}" for a in aurocs)
              + f" {mean:>7.3f} {f1:>7.3f} {sum(speed) / len(speed):>12.1f}")


if __name__ == "__main__":
    main()
