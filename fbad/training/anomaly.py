"""`fbad train` as a library function: per-plane models, calibrated thresholds, evaluation, MLflow.

One parent MLflow run per call and one child run per plane. Progress is kept in `state.json` in
the run directory so that `resume=true` continues an interrupted call into the same runs.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import mlflow
import numpy as np
import pytorch_lightning as pl
import torch
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from fbad.anomaly.datamodule import PlaneDataModule, PreparedData, prepare_data
from fbad.anomaly.metrics import detection_rate_by, evaluate, pixel_auroc, pr_curve_data, roc_curve_data
from fbad.anomaly.model_file import save_plane_model
from fbad.anomaly.module import TRAINING_MODULES, AutoencoderModule
from fbad.anomaly.thresholds import ThresholdResult, calibrate_from_config
from fbad.config import plain_config
from fbad.data.records import BRAIN_PLANES, Plane
from fbad.models import CLOSED_FORM, split_model_config
from fbad.tracking import plots
from fbad.tracking.curves import EpochMetricsLogger
from fbad.tracking.mlflow_utils import setup_experiment, start_command_run
from fbad.training.fit import build_trainer, early_stopping
from fbad.training.summary import print_summary

if TYPE_CHECKING:
    from fbad.models.patchcore import PatchCore
    from fbad.models.pca import PCABaseline

log = logging.getLogger(__name__)
STATE_FILE = "state.json"


@dataclass
class PlaneResult:
    plane: str
    counts: dict[str, int]
    best_val_mse: float
    threshold: ThresholdResult
    test: dict[str, float] = field(default_factory=dict)
    flagged: int = 0
    train_images_per_s: float = float("nan")
    run_id: str = ""
    val: dict[str, float] = field(default_factory=dict)  # validation detection metrics (sweep objectives)


class RunStopped(Exception):  # noqa: N818 (a deliberate stop, not an error)
    """Raised to stop a training on purpose (e.g. a pruned sweep trial): its MLflow runs end KILLED, not FAILED."""


class EpochSeed(pl.Callback):
    """Reseed every RNG at each epoch start, so a resumed run replays exactly the epochs left."""

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl.seed_everything(self.seed + 1000 * trainer.current_epoch, workers=True, verbose=False)
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "set_epoch"):
            datamodule.set_epoch(trainer.current_epoch)


def resolve_planes(names: list[str]) -> list[Plane | None]:
    """['all'] = one model over all planes; otherwise one model per named plane."""
    if list(names) == ["all"]:
        return [None]
    return [Plane.parse(n) for n in names] or list(BRAIN_PLANES)


def run_training(cfg: DictConfig, run_dir: Path, *, callbacks: Sequence[pl.Callback] | None = None,
                 run_id: str | None = None) -> dict[str, float]:
    """Train, calibrate and evaluate every configured plane; returns the parent run's summary metrics.

    `callbacks` join every plane's Lightning Trainer (a sweep's pruning reporter); `run_id` names an
    existing MLflow run to use as the parent (a sweep's trial run, itself a child of the sweep run).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    state = _load_state(run_dir)
    classifier = _bundle_classifier(cfg.get("classifier"), run_dir, cfg.paths.mlflow_uri)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    torch.set_float32_matmul_precision("high")

    t0 = time.perf_counter()
    prepared = prepare_data(cfg.dataset, cfg.preprocess, cfg.paths.cache_dir, val_fraction=cfg.data.val_fraction,
                            seed=cfg.seed, workers=cfg.data.preprocess_workers, progress=cfg.progress)
    log.info("data ready in %.1fs: %s", time.perf_counter() - t0, prepared.splits.summary())
    if len(prepared.skipped):
        prepared.skipped.write(run_dir)
        log.warning("%d images skipped; listed in %s", len(prepared.skipped), run_dir / "skipped.csv")

    setup_experiment(cfg.paths.mlflow_uri, cfg.logger.experiment, cfg.paths.mlflow_artifacts)
    parent = _start_parent(cfg, run_dir, state, prepared, run_id)
    results: dict[str, PlaneResult] = {}
    try:
        for plane in resolve_planes(list(cfg.planes)):
            name = str(plane) if plane is not None else "all"
            results[name] = _run_plane(cfg, prepared, plane, run_dir, state, parent, callbacks or [])
            _save_state(run_dir, state)
        summary = _finish_parent(cfg, results, prepared, run_dir)
        if classifier is not None:
            mlflow.log_artifact(str(classifier), artifact_path="model")
    except BaseException as exc:
        status = "KILLED" if isinstance(exc, KeyboardInterrupt | SystemExit | RunStopped) else "FAILED"
        _end_all_runs(status, str(exc) or type(exc).__name__)
        raise
    mlflow.end_run("FINISHED")
    state["finished"] = True
    _save_state(run_dir, state)

    print_summary(results, prepared, parent, cfg)
    return summary


def _bundle_classifier(source: str | None, run_dir: Path, tracking_uri: str) -> Path | None:
    """`classifier=<path | runs:/… | models:/…>`: the plane classifier, checked by loading it, copied into the run
    folder, so that the trained model (a run folder, its export or its published version) routes frames itself."""
    if source in (None, "", "???"):
        return None
    import shutil

    from fbad.planes.classifier import WEIGHTS_NAME, PlaneClassifier
    from fbad.tracking.artifacts import find_file

    path = find_file(source, WEIGHTS_NAME, "plane classifier", tracking_uri)
    PlaneClassifier.load(path)  # a file that is no plane classifier fails here, before any training
    dst = run_dir / WEIGHTS_NAME
    if path.resolve() != dst.resolve():
        shutil.copyfile(path, dst)
    return dst


def _start_parent(cfg: DictConfig, run_dir: Path, state: dict, prepared: PreparedData,
                  run_id: str | None = None) -> str:
    run_name = cfg.logger.run_name or f"train-{run_dir.name}"
    existing = state.get("parent_run_id") or run_id
    fresh = "parent_run_id" not in state
    run = start_command_run("train", run_dir, plain_config(cfg), run_name, run_id=existing, log_config=fresh,
                            tags={"dataset": cfg.dataset.name, "dataset_hash": prepared.cache.dataset_hash,
                                  "preprocess_hash": prepared.cache.config_hash})
    if fresh:
        state["parent_run_id"] = run.info.run_id
        state["run_dir"] = str(run_dir)
        _save_state(run_dir, state)
        if len(prepared.skipped):
            mlflow.log_artifact(str(run_dir / "skipped.csv"))
        mlflow.log_metric("images_skipped", len(prepared.skipped))
    return run.info.run_id


def _run_plane(cfg: DictConfig, prepared: PreparedData, plane: Plane | None, run_dir: Path, state: dict,
               parent_id: str, extra_callbacks: Sequence[pl.Callback]) -> PlaneResult:
    name = str(plane) if plane is not None else "all"
    plane_dir = run_dir / name
    plane_state = state.setdefault("planes", {}).setdefault(name, {})
    if plane_state.get("result"):
        log.info("%s: already finished in this run, not retrained", name)
        return _result_from_state(plane_state["result"])

    dm = PlaneDataModule(prepared, plane, batch_size=cfg.data.batch_size, num_workers=cfg.data.num_workers,
                         augment=cfg.data.augment, seed=cfg.seed, pin_memory=cfg.trainer.get("accelerator") == "gpu",
                         epoch_samples=cfg.data.get("epoch_samples"))
    counts = {k: len(v) for k, v in dm.datasets.items()}
    child = mlflow.start_run(run_id=plane_state.get("run_id"), run_name=None if plane_state.get("run_id") else name,
                             nested=True, parent_run_id=parent_id)
    plane_state["run_id"] = child.info.run_id
    _save_state(run_dir, state)
    mlflow.set_tags({"plane": name, "fbad.command": "train"})
    mlflow.log_params({"plane": name, **{f"n_{k}": v for k, v in counts.items()}})

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    model_name, _, _ = split_model_config(cfg.model)
    model_cfg = cast(dict[str, Any], OmegaConf.to_container(cfg.model, resolve=True))
    score_cfg = cast(dict[str, Any], OmegaConf.to_container(cfg.score, resolve=True))
    if model_name in TRAINING_MODULES:
        module: AutoencoderModule = TRAINING_MODULES[model_name](model_cfg, score_cfg, plane=name, seed=int(cfg.seed))
    else:
        module = AutoencoderModule(model_cfg, score_cfg, plane=name)
    t0 = time.perf_counter()
    if model_name in CLOSED_FORM:
        history, best_val = _fit_closed_form(module, dm)
        epochs = 1
    else:
        history, best_val, epochs = _fit_lightning(cfg, module, dm, plane_dir, child.info.run_id, parent_id, name,
                                                   extra_callbacks)
    train_seconds = time.perf_counter() - t0
    speed = counts["train"] * epochs / train_seconds if train_seconds > 0 else float("nan")
    mlflow.log_metrics({"best_val_mse": best_val, "train_images_per_s": speed, "epochs": epochs})

    module.eval()
    val = _score_split(module, dm, "val")
    normal, abnormal = val["scores"][val["labels"] != 1], val["scores"][val["labels"] == 1]  # unlabelled: normal
    thr = calibrate_from_config(normal, cast(dict[str, Any], OmegaConf.to_container(cfg.threshold, resolve=True)),
                                abnormal_scores=abnormal if len(abnormal) else None, direction=module.spec.direction)
    for warning in thr.warnings:
        log.warning("%s threshold: %s", name, warning)
    module.threshold.fill_(thr.value)
    mlflow.log_metric("threshold", thr.value)
    MlflowClient().log_metric(parent_id, f"{name}/threshold", thr.value)
    mlflow.log_dict(thr.to_dict(), "threshold.json")
    val_metrics = _validation_metrics(val, thr, name, parent_id)

    model_path = save_plane_model(module, cfg, thr, plane_dir / "model.pt", name)
    mlflow.log_artifact(str(model_path), artifact_path="model")

    result = PlaneResult(plane=name, counts=counts, best_val_mse=best_val, threshold=thr,
                         train_images_per_s=speed, run_id=child.info.run_id, val=val_metrics)
    test = _score_split(module, dm, "test") if counts["test"] else None
    _log_plots(module, dm, name, history, val, test, thr)
    if test is not None:
        result.test, result.flagged = _evaluate(test, thr, dm, name, parent_id)
    mlflow.end_run("FINISHED")
    plane_state["result"] = _result_to_state(result)
    return result


def _fit_lightning(cfg: DictConfig, module: AutoencoderModule, dm: PlaneDataModule, plane_dir: Path,
                   child_id: str, parent_id: str, name: str,
                   extra_callbacks: Sequence[pl.Callback] = ()) -> tuple[dict[str, list[float]], float, int]:
    from hydra.utils import instantiate
    from pytorch_lightning.callbacks import ModelCheckpoint

    ckpt_dir = plane_dir / "checkpoints"
    has_val = any(dm.datasets["val"].labels != 1)
    monitor = module.monitor if has_val else module.train_monitor
    # saved once the epoch has fully ended (validation included), so a resume starts the next epoch
    checkpoint = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor=monitor, mode="min", save_last=True,
                                 save_on_train_epoch_end=True)
    metrics_logger = EpochMetricsLogger(child_id, parent_id, name)
    callbacks: list[pl.Callback] = [checkpoint, metrics_logger, EpochSeed(cfg.seed)]
    callbacks += early_stopping(cfg, monitor)
    callbacks += [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    callbacks += list(extra_callbacks)
    trainer = build_trainer(cfg, callbacks, plane_dir, what=name, deterministic="warn")
    last = ckpt_dir / "last.ckpt"
    resume_from = str(last) if last.is_file() else None
    if resume_from:
        log.info("%s: resuming from %s", name, last)
        metrics_logger.history = _history_from_mlflow(child_id, metrics_logger.names)
    trainer.fit(module, datamodule=dm, ckpt_path=resume_from, weights_only=True)
    best = checkpoint.best_model_path or str(last)
    state_dict = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
    module.load_state_dict(state_dict)
    best_val = float(checkpoint.best_model_score) if checkpoint.best_model_score is not None else float("nan")
    return metrics_logger.history, best_val, trainer.current_epoch


def _history_from_mlflow(run_id: str, names: tuple[str, ...]) -> dict[str, list[float]]:
    client = MlflowClient()
    return {n: [m.value for m in sorted(client.get_metric_history(run_id, n), key=lambda m: m.step)] for n in names}


def _fit_closed_form(module: AutoencoderModule, dm: PlaneDataModule) -> tuple[dict[str, list[float]], float]:
    """`net.fit(images, masks)` on all normal training images (no augmentation): PCA, PatchCore's bank.

    A reconstruction model reports its MSE; a map model (which reconstructs nothing) the mean score of the
    normal validation images, as `val_score`."""
    train = dm.datasets["train"]
    x = torch.from_numpy(np.asarray(train.arrays["image"][train.rows], dtype=np.float32))[:, None]
    mask = torch.from_numpy(np.asarray(train.arrays["mask"][train.rows], dtype=np.float32))[:, None]
    cast("PCABaseline | PatchCore", module.net).fit(x, mask)
    val = _score_split(module, dm, "val")
    normal = val["labels"] != 1
    if module.spec.method == "map":
        best = float(val["scores"][normal].mean()) if normal.any() else float("nan")
        mlflow.log_metrics({"val_score": best}, step=0)
        return {"val_score": [best]}, best
    with torch.no_grad():
        train_mse = float(((module.net(x) - x) ** 2).mean())
    best = float(val["mse"][normal].mean()) if normal.any() else float("nan")
    mlflow.log_metrics({"train_mse": train_mse, "val_mse": best}, step=0)
    return {"train_mse": [train_mse], "val_mse": [best]}, best


@torch.no_grad()
def _score_split(module: AutoencoderModule, dm: PlaneDataModule, split: str) -> dict[str, Any]:
    """Scores, per-image MSE, labels and a few maps for plots, over one split (no augmentation)."""
    ds = dm.datasets[split]
    loader = torch.utils.data.DataLoader(ds, batch_size=dm.batch_size, shuffle=False)
    scores, mses, maps, recons, images, truths, masks = [], [], [], [], [], [], []
    for batch in loader:
        s, amap, recon = module.score_batch(batch)
        x, mask = batch["image"], batch["mask"]
        per_img = (((recon.cpu() - x) ** 2) * mask).flatten(1).sum(1) / mask.flatten(1).sum(1).clamp_min(1)
        scores.append(s.cpu().numpy())
        mses.append(per_img.numpy())
        maps.append(amap.cpu().numpy()[:, 0].astype(np.float32))
        recons.append(recon.cpu().numpy()[:, 0].astype(np.float32))
        images.append(x.numpy()[:, 0])
        truths.append(batch["anomaly"].numpy()[:, 0] > 0.5)
        masks.append(mask.numpy()[:, 0] > 0.5)

    def cat(xs: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(xs) if xs else np.zeros(0)

    return {"scores": cat(scores), "mse": cat(mses), "labels": ds.labels, "maps": cat(maps), "recons": cat(recons),
            "images": cat(images), "truth": cat(truths), "masks": cat(masks), "records": ds.records}


def _evaluate(test: dict[str, Any], thr: ThresholdResult, dm: PlaneDataModule, name: str,
              parent_id: str) -> tuple[dict[str, float], int]:
    flagged_mask = (test["scores"] < thr.value) if thr.direction == "below" else (test["scores"] > thr.value)
    flagged = int(flagged_mask.sum())
    known = test["labels"] >= 0  # images without a label are scored and flagged, but measure nothing
    metrics = evaluate(test["scores"][known], test["labels"][known], thr) if known.any() else {}
    out = {k: float(v) for k, v in metrics.items()}
    if not known.all():
        out["n_unlabelled"] = float((~known).sum())
    records = test["records"]
    abnormal = test["labels"] == 1
    if abnormal.any():
        types = [r.anomaly_type or "unknown" for r, a in zip(records, abnormal, strict=True) if a]
        for t, rate in detection_rate_by(types, flagged_mask[abnormal]).items():
            out[f"detect_{t}"] = rate
        sev = [r.severity for r, a in zip(records, abnormal, strict=True) if a]
        if all(s is not None for s in sev):
            bins = [_severity_bin(s) for s in sev]
            for b, rate in detection_rate_by(bins, flagged_mask[abnormal]).items():
                out[f"detect_severity_{b}"] = rate
        if test["truth"].any():
            out["pixel_auroc"] = float(pixel_auroc(test["maps"], test["truth"], test["masks"]))
    # NaN (e.g. AUROC of a test set with one class) is logged too: "undefined", not "missing"
    _log_to(None, {f"test_{k}": v for k, v in out.items()})
    _log_to(parent_id, {f"{name}/test_{k}": v for k, v in out.items()})
    return out, flagged


def _validation_metrics(val: dict[str, Any], thr: ThresholdResult, name: str, parent_id: str) -> dict[str, float]:
    """AUROC / AUPRC / F1 on the validation split where it holds labelled anomalies: what a sweep may optimise."""
    known = val["labels"] >= 0
    labels = val["labels"][known]
    if not ((labels == 0).any() and (labels == 1).any()):
        return {}
    m = evaluate(val["scores"][known], labels, thr)
    out = {k: float(m[k]) for k in ("auroc", "auprc", "f1")}
    _log_to(None, {f"val_{k}": v for k, v in out.items()})
    _log_to(parent_id, {f"{name}/val_{k}": v for k, v in out.items()})
    return out


def _log_to(run_id: str | None, metrics: Mapping[str, float], step: int = 0) -> None:
    """Many metrics in one store round trip (one log_batch) to the active run or `run_id`."""
    from mlflow.entities import Metric

    if not run_id:
        run = mlflow.active_run()
        assert run is not None, "_log_to: no run_id and no active run"
        run_id = run.info.run_id
    now = mlflow.utils.time.get_current_time_millis()
    items = [Metric(k, float(v), now, step) for k, v in metrics.items()]
    for i in range(0, len(items), 1000):
        MlflowClient().log_batch(run_id, metrics=items[i: i + 1000])


def _severity_bin(s: float) -> str:
    return "subtle" if s < 0.5 else "moderate" if s < 0.75 else "gross"


def _log_plots(module: AutoencoderModule, dm: PlaneDataModule, name: str, history: Mapping[str, list[float]],
               val: dict[str, Any], test: dict[str, Any] | None, thr: ThresholdResult) -> None:
    curves = (module.train_monitor, module.monitor, "val_score")  # val_score: a closed-form map model's one point
    fig = plots.loss_curves({name: {k: v for k, v in history.items() if k in curves and v}})
    mlflow.log_figure(fig, "plots/loss_curves.png")
    plots.close(fig)
    data = test if test is not None and len(test["scores"]) else val
    which = "test" if data is test else "val"
    normal, abnormal = data["scores"][data["labels"] != 1], data["scores"][data["labels"] == 1]
    fig = plots.score_histogram(normal, abnormal, thr.value, f"{name} ({which})")
    mlflow.log_figure(fig, "plots/score_histogram.png")
    plots.close(fig)
    known = data["labels"] >= 0
    scores, labels = data["scores"][known], data["labels"][known]
    if (labels == 0).any() and (labels == 1).any():
        roc, pr = roc_curve_data(scores, labels, thr.direction), pr_curve_data(scores, labels, thr.direction)
        m = evaluate(scores, labels, thr)
        fig = plots.roc_pr_curves(roc, pr, m["auroc"], m["auprc"], f"{name} ({which})")
        mlflow.log_figure(fig, "plots/roc_pr.png")
        plots.close(fig)
    idx = _grid_examples(data["labels"], data["scores"], k=4)
    if len(idx):
        recs = data["records"]
        titles = [f"{recs[i].anomaly_type or 'normal'}\nscore {data['scores'][i]:.3g}" for i in idx]
        fig = plots.reconstruction_grid(data["images"][idx], data["recons"][idx], data["maps"][idx], titles,
                                        data["truth"][idx])
        mlflow.log_figure(fig, "plots/reconstructions.png")
        plots.close(fig)


def _grid_examples(labels: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """Up to k normal or unlabelled (lowest scores first) and k abnormal (highest first) examples."""
    normal = np.flatnonzero(labels != 1)
    abnormal = np.flatnonzero(labels == 1)
    pick_n = normal[np.linspace(0, len(normal) - 1, min(k, len(normal))).astype(int)] if len(normal) else normal
    pick_a = abnormal[np.argsort(-scores[abnormal])[:k]] if len(abnormal) else abnormal
    return np.concatenate([pick_n, pick_a]).astype(int)


def _curves(run_id: str) -> dict[str, list[float]]:
    """A plane's training curves: MSE for reconstruction models, the loss for the others."""
    for names in (("train_mse", "val_mse"), ("train_loss", "val_loss"), ("val_score",)):
        history = {k: v for k, v in _history_from_mlflow(run_id, names).items() if v}
        if history:
            return history
    return {}


def _finish_parent(cfg: DictConfig, results: dict[str, PlaneResult], prepared: PreparedData,
                   run_dir: Path) -> dict[str, float]:
    thresholds = {p: r.threshold.to_dict() for p, r in results.items()}
    (run_dir / "thresholds.json").write_text(json.dumps(thresholds, indent=2))
    mlflow.log_dict(thresholds, "thresholds.json")
    history = {p: _curves(r.run_id) for p, r in results.items()}
    fig = plots.loss_curves(history)
    mlflow.log_figure(fig, "plots/loss_curves.png")
    plots.close(fig)
    summary: dict[str, float] = {}
    aurocs = [r.test.get("auroc", math.nan) for r in results.values()]
    finite = [a for a in aurocs if np.isfinite(a)]
    if finite:
        summary["test_auroc_mean"] = float(np.mean(finite))
    for key in ("f1", "auprc", "sensitivity", "specificity", "pixel_auroc"):
        vals = [r.test[key] for r in results.values() if np.isfinite(r.test.get(key, math.nan))]
        if vals:
            summary[f"test_{key}_mean"] = float(np.mean(vals))
    summary["best_val_mse_mean"] = float(np.nanmean([r.best_val_mse for r in results.values()]))
    for key in ("auroc", "auprc", "f1"):  # validation only: what sweeps optimise (never the test split)
        vals = [r.val[key] for r in results.values() if np.isfinite(r.val.get(key, math.nan))]
        if vals:
            summary[f"val_{key}_mean"] = float(np.mean(vals))
    summary["flagged_total"] = float(sum(r.flagged for r in results.values()))
    mlflow.log_metrics(summary)
    return summary


def _end_all_runs(status: str, message: str) -> None:
    while mlflow.active_run() is not None:
        run = mlflow.active_run()
        assert run is not None  # the loop's condition
        mlflow.set_tag("fbad.error", message[:5000])
        mlflow.end_run(status)
        log.log(logging.WARNING if status == "KILLED" else logging.ERROR, "MLflow run %s ended %s: %s",
                run.info.run_id, status, message)


def _result_to_state(r: PlaneResult) -> dict[str, Any]:
    return {"plane": r.plane, "counts": r.counts, "best_val_mse": r.best_val_mse, "threshold": r.threshold.to_dict(),
            "test": r.test, "flagged": r.flagged, "train_images_per_s": r.train_images_per_s, "run_id": r.run_id,
            "val": r.val}


def _result_from_state(d: dict[str, Any]) -> PlaneResult:
    return PlaneResult(**{**d, "threshold": ThresholdResult(**d["threshold"])})


def _load_state(run_dir: Path) -> dict[str, Any]:
    path = run_dir / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _save_state(run_dir: Path, state: dict[str, Any]) -> None:
    tmp = run_dir / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2, default=str))
    tmp.replace(run_dir / STATE_FILE)
