"""Training of the `learned` head segmenter (`fbad train-seg`).

Reads annotated datasets, splits each into train/val/held-out test by patient (seeded), trains a U-Net on
letterboxed working-size images with Lightning (early stopping on validation Dice), saves the weights as a
self-contained `segmenter.pt`, and measures the held-out images at full resolution through the very
segmenter that `segmentation=learned` builds. Everything is logged to one MLflow run (experiment `train-seg`).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from fbad.config import plain_config
from fbad.data.imageio import SkipLog, read_gray
from fbad.data.readers import read_dataset
from fbad.engine.augment import build_augment
from fbad.engine.threads import torch_threads
from fbad.errors import BadImageError, DatasetError
from fbad.evaluation.report import print_metrics
from fbad.segmentation.learned.module import SegModule
from fbad.segmentation.learned.weights import WEIGHTS_NAME, load_weights, make_weights, save_weights
from fbad.tracking.curves import EpochMetricsLogger
from fbad.tracking.mlflow_utils import command_run, register_model, setup_experiment
from fbad.training.fit import fit_keep

log = logging.getLogger("fbad.commands.train_seg")


def gather_records(cfg: DictConfig) -> tuple[dict[str, list], list, Any]:
    """({train, val, test} records over all split datasets, extra training records, skip log)."""
    from fbad.data.splits import split_by_patient
    from fbad.segmentation.truth import has_truth

    skipped = SkipLog()
    splits: dict[str, list] = {"train": [], "val": [], "test": []}
    fractions = cast(dict[str, float], OmegaConf.to_container(cfg.split, resolve=True))
    for i, ds in enumerate(cfg.datasets):
        read = read_dataset(ds)
        skipped.rows += read.skipped.rows
        records = sorted((r for r in read.records if has_truth(r)), key=lambda r: str(r.path))
        if not records:
            raise DatasetError(f"datasets[{i}] ({ds.name}): no image has a head annotation to train on")
        if cfg.limit:
            records = records[: int(cfg.limit)]
        for k, v in split_by_patient(records, fractions, seed=int(cfg.seed)).items():
            splits[k] += v
    extra = []
    for ds in cfg.extra_train or []:
        read = read_dataset(ds)
        skipped.rows += read.skipped.rows
        extra += sorted((r for r in read.records if has_truth(r)), key=lambda r: str(r.path))
    return splits, extra, skipped


def evaluate_held_out(seg: Any, records: list) -> tuple[Any, list[tuple[str, str]]]:
    """Per-image metrics of the segmenter on full-resolution images (as `fbad eval-seg` measures them)."""
    import pandas as pd

    from fbad.segmentation.metrics import dice, segmentation_metrics
    from fbad.segmentation.truth import true_head_mask

    rows, bad = [], []
    for r in records:
        try:
            img = read_gray(r.path)
            truth = true_head_mask(r, img.shape)
        except BadImageError as exc:
            bad.append((str(exc.path), exc.reason))
            continue
        res = seg(img)
        m = segmentation_metrics(res, truth, r.pixel_size_mm, r.extra.get("hc_mm"))
        net_mask = res.extra.get("network_mask")
        e = res.ellipse
        rows.append({"image": r.path.name, "path": str(r.path), "pixel_size_mm": r.pixel_size_mm, **m,
                     "dice_network": dice(net_mask, truth) if net_mask is not None else 0.0,
                     "confidence": float(res.confidence), "reason": res.reason,
                     "ellipse": None if e is None else [e.cx, e.cy, e.a, e.b, e.angle_deg]})
    return pd.DataFrame(rows), bad


def run_train_seg(cfg: DictConfig, run_dir: Path) -> dict[str, float]:
    """Train, save, evaluate and log one segmenter; returns the summary metrics (held-out `dice_mean`, ...).

    Uses `cfg.threads` torch threads meanwhile (restored after), the rest of the process is left as it was.
    """
    with torch_threads(cfg.threads):
        return _train_seg(cfg, run_dir)


def _train_seg(cfg: DictConfig, run_dir: Path) -> dict[str, float]:
    import mlflow
    import pytorch_lightning as pl
    import torch

    from fbad.evaluation.segmentation import summarise
    from fbad.segmentation.learned.data import SegDataset, load_arrays
    from fbad.segmentation.learned.segmenter import LearnedSegmenter, calibrate_borders

    run_dir.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    work_hw = (int(cfg.work_size[0]), int(cfg.work_size[1]))

    splits, extra, skipped = gather_records(cfg)
    t0 = time.perf_counter()
    x_tr, y_tr, kept_tr, sk1 = load_arrays(splits["train"] + extra, work_hw)
    x_va, y_va, kept_va, sk2 = load_arrays(splits["val"], work_hw)
    skipped.rows += sk1.rows + sk2.rows
    if not len(x_tr):
        raise DatasetError("train-seg: no readable training image")
    log.info("loaded %d train (%d extra) / %d val images in %.1fs; %d held out for testing", len(x_tr), len(extra),
             len(x_va), time.perf_counter() - t0, len(splits["test"]))
    if len(skipped):
        skipped.write(run_dir)
    trained_on = [r.path.name for r in kept_tr + kept_va]
    (run_dir / "split.json").write_text(json.dumps(
        {k: [r.path.name for r in v] for k, v in {**splits, "extra_train": extra}.items()}, indent=1))

    setup_experiment(cfg.paths.mlflow_uri, cfg.experiment, cfg.paths.mlflow_artifacts)
    plain = plain_config(cfg)
    with command_run("train-seg", run_dir, plain, cfg.run_name, len(skipped)) as run:
        mlflow.log_params({"n_train": len(x_tr), "n_val": len(x_va), "n_test": len(splits["test"]),
                           "n_extra_train": len(extra)})
        mlflow.log_artifact(str(run_dir / "split.json"))

        module = SegModule(widths=list(cfg.model.widths), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay,
                           schedule=cfg.optim.schedule, bce_weight=cfg.loss.bce_weight,
                           dice_weight=cfg.loss.dice_weight)
        augment = build_augment(cast(list[dict[str, Any]], OmegaConf.to_container(cfg.data.augment, resolve=True)),
                                seed=int(cfg.seed))
        t0 = time.perf_counter()
        has_val = len(x_va) > 0
        curves = EpochMetricsLogger(run.info.run_id, None, "seg", names=("train_loss", "val_loss", "val_dice"))
        fit = fit_keep(cfg, module, SegDataset(x_tr, y_tr, augment), SegDataset(x_va, y_va), run_dir,
                       monitor="val_dice" if has_val else "train_loss", mode="max" if has_val else "min",
                       callbacks=[curves], what="segmenter")
        epochs, best_epoch, best = fit.epochs, fit.kept_epoch, fit.monitored
        train_seconds = time.perf_counter() - t0
        mlflow.log_metrics({"train_seconds": train_seconds, "epochs": epochs, "kept_epoch": best_epoch,
                            "kept_val_dice": best})
        log.info("trained %d epochs in %.0fs, kept epoch %d (%s): val Dice (working size) %.4f", epochs,
                 train_seconds, best_epoch, cfg.keep, best)

        bundle = make_weights(module.net.cpu(), work_hw, trained_on, config=plain)
        bundle["calibration"] = calibrate_borders(LearnedSegmenter(bundle, calibrate=False, **cfg.inference), kept_va)
        mlflow.log_metrics({f"calibration_{k}": v for k, v in bundle["calibration"].items()})
        log.info("border calibration on %d validation images: %s", len(kept_va), bundle["calibration"])
        weights = save_weights(run_dir / WEIGHTS_NAME, bundle)
        mlflow.log_artifact(str(weights), artifact_path="model")
        if cfg.register_as:
            version = register_model(str(cfg.register_as), run)
            log.info("registered as models:/%s/%s", cfg.register_as, version)
        summary: dict[str, float] = {"train_seconds": train_seconds, "kept_epoch": best_epoch, "kept_val_dice": best}
        if splits["test"]:
            device = "cuda" if cfg.trainer.get("accelerator") == "gpu" and torch.cuda.is_available() else "cpu"
            seg = LearnedSegmenter(load_weights(weights), device=device, **cfg.inference)
            df, bad = evaluate_held_out(seg, splits["test"])
            df.to_csv(run_dir / "held_out.csv", index=False)
            held = summarise(df)
            if len(df):
                held["dice_network_mean"] = float(df["dice_network"].mean())
            mlflow.log_metrics({k: v for k, v in held.items() if v == v and abs(v) != float("inf")})
            mlflow.log_artifact(str(run_dir / "held_out.csv"))
            summary.update(held)
            if bad:
                log.warning("%d held-out images could not be read", len(bad))
    print_metrics(summary, title=f"train-seg: held-out test ({len(splits['test'])} images never trained on)")
    print(f"weights: {weights}\nMLflow: runs:/{run.info.run_id}/model/{WEIGHTS_NAME}")
    from fbad.training.summary import run_link

    print(f"the run in the MLflow UI (after `mlflow ui --backend-store-uri {cfg.paths.mlflow_uri}`): "
          f"{run_link(run.info.run_id)}")
    summary["run_id"] = run.info.run_id
    return summary
