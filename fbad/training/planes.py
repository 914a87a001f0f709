"""Training of the plane classifier (`fbad train-planes`).

Reads a dataset's records with a plane (brain planes, plus `unsupported` from FETAL_PLANES_DB's brain
`Other` / non-brain images or the phantom's synthetic negatives), splits them by patient (fbad's split:
the official test split stays test), prepares fixed-size inputs once (cached), trains `PlaneNet` with
Lightning, saves a self-contained `plane_classifier.pt` and measures the held-out images through the very
`PlaneClassifier` that `fbad predict` loads. Everything is logged to one MLflow run (experiment `train-planes`).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from fbad.config import plain_config
from fbad.data.imageio import SkipLog
from fbad.data.phantom import PhantomConfig
from fbad.data.phantom.negatives import ensure_negatives
from fbad.data.readers import read_dataset
from fbad.data.records import BRAIN_PLANES
from fbad.engine.augment import build_augment
from fbad.engine.threads import torch_threads
from fbad.errors import DatasetError
from fbad.evaluation.report import print_metrics
from fbad.tracking import plots
from fbad.tracking.artifacts import save_weights_file
from fbad.tracking.curves import EpochMetricsLogger
from fbad.tracking.mlflow_utils import command_run, register_model, setup_experiment
from fbad.training.fit import fit_keep

log = logging.getLogger("fbad.commands.train_planes")


def negatives_root(data_dir: str | Path, size: int, n: int, seed: int, noise: float) -> Path:
    """Where the phantom's negatives for one phantom setting live (named by what changes their files)."""
    tail = "" if float(noise) == 1.0 else f"_noise{float(noise):g}"
    return Path(data_dir) / f"phantom_negatives_s{int(size)}_n{int(n)}_seed{int(seed)}{tail}"


def phantom_negatives(cfg: DictConfig, dataset: dict[str, Any]) -> tuple[list, Any]:
    """Records of synthetic `unsupported` frames matching the phantom dataset (written on first use)."""
    from fbad.data.readers.fetal_planes_db import read_fetal_planes_db

    n = cfg.unsupported.phantom_negatives
    n = int(dataset.get("n_per_plane", 200) if n is None else n)
    if n <= 0:
        return [], None
    size, seed, noise = int(dataset.get("size", 256)), int(dataset.get("seed", 0)), float(dataset.get("noise", 1.0))
    root = negatives_root(cfg.paths.data_dir, size, n, seed, noise)
    if not (root / "FETAL_PLANES_DB_data.csv").is_file():
        log.info("generating %d phantom negatives at %dx%d -> %s", n, size, size, root)
    ensure_negatives(root, n, PhantomConfig(size=size, noise=noise), seed=seed, workers=cfg.data.workers)
    read = read_fetal_planes_db(root, planes=("other", "not_a_brain"))
    for r in read.records:  # own patients: never merged with the phantom's Patient numbers
        r.patient_id = f"phantom_negative{r.patient_id.removeprefix('fpdb')}"
        r.extra["phantom_negative"] = True
    return read.records, read.skipped


def gather_records(cfg: DictConfig) -> tuple[list, Any, dict[str, int]]:
    """(records with a known class, skip log, counts of what was left out and why)."""
    from fbad.planes.classifier import UNSUPPORTED
    from fbad.planes.data import class_of

    dataset = cast(dict[str, Any], OmegaConf.to_container(cfg.dataset, resolve=True))
    want_unsupported = bool(cfg.unsupported.enabled)
    for d in [dataset, *(dataset.get("datasets") or [])]:
        if want_unsupported and "planes" in d:
            d["planes"] = [*d["planes"], *(p for p in cfg.unsupported.dataset_planes if p not in d["planes"])]
    read = read_dataset(dataset)
    skipped = SkipLog(list(read.skipped.rows))
    records = list(read.records)
    for r in records:
        r.extra.setdefault("source", str(dataset["name"]))
    phantoms = [dataset] if dataset["name"] == "phantom" else \
        [d for d in dataset.get("datasets") or [] if d.get("name") == "phantom"]
    for phantom in phantoms if want_unsupported else []:
        negatives, neg_skipped = phantom_negatives(cfg, phantom)
        for r in negatives:
            r.extra["source"] = "phantom"
        records += negatives
        if neg_skipped is not None:
            skipped.rows += neg_skipped.rows
    left_out = {"unknown_plane": 0, "unsupported_disabled": 0}
    kept = []
    for r in records:
        c = class_of(r)
        if c is None:
            left_out["unknown_plane"] += 1
        elif c == UNSUPPORTED and not want_unsupported:
            left_out["unsupported_disabled"] += 1
        else:
            kept.append(r)
    if not kept:
        raise DatasetError(f"dataset {dataset['name']} ({dataset.get('root')}): no image with a known plane "
                           "to train a plane classifier on")
    return kept, skipped, left_out


def evaluate(truth: list[str], answers: list[tuple[str, float]], classes: list[str]) -> tuple[dict[str, float],
                                                                                              dict[str, Any]]:
    """Accuracy, per-class and macro F1 of the classifier's answers, and the confusion matrix (as a dict).

    Macro F1 averages the trained classes; `unsupported` joins the matrix when the threshold produced it
    without it being a trained class.
    """
    import numpy as np
    from sklearn.metrics import confusion_matrix, f1_score

    from fbad.planes.classifier import UNSUPPORTED

    pred = [a for a, _ in answers]
    labels = list(classes) + ([UNSUPPORTED] if UNSUPPORTED not in classes else [])
    t, p = np.array(truth), np.array(pred)
    metrics: dict[str, float] = {"accuracy": float((t == p).mean()) if len(t) else float("nan")}
    nan = [float("nan")] * len(classes)
    f1 = f1_score(t, p, labels=list(classes), average=None, zero_division=0) if len(t) else nan
    metrics.update({f"f1_{c}": float(v) for c, v in zip(classes, f1, strict=True)})
    metrics["macro_f1"] = float(np.mean(f1)) if len(t) else float("nan")
    planes = [i for i, c in enumerate(classes) if c in {pl.value for pl in BRAIN_PLANES} and c in set(truth)]
    if planes:  # F1 averaged over the brain planes these frames hold (a source of one plane: that plane's F1)
        metrics["macro_f1_planes"] = float(np.mean([f1[i] for i in planes]))
    brain = np.isin(t, [pl.value for pl in BRAIN_PLANES])
    if brain.any():
        metrics["accuracy_brain_planes"] = float((t[brain] == p[brain]).mean())
    if UNSUPPORTED in classes:
        metrics["unsupported_rate"] = float((p == UNSUPPORTED).mean())
    cm = confusion_matrix(t, p, labels=labels) if len(t) else np.zeros((len(labels), len(labels)), int)
    return metrics, {"labels": labels, "matrix": cm.tolist(), "rows": "true", "columns": "predicted"}


def image_stats_baseline(train: Any, train_labels: list[int], held: Any, classes: list[str]) -> list[str]:
    """Class names for `held` frames from a class-balanced logistic regression on four global statistics of the
    prepared input (mean, spread, black fraction, 90th percentile): a baseline that sees no anatomy."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def stats(x: Any) -> Any:
        f = np.asarray(x, np.float32).reshape(len(x), -1) / 255.0
        return np.stack([f.mean(1), f.std(1), (f < 0.02).mean(1), np.percentile(f, 90, axis=1)], 1)

    if len(held) == 0:
        return []
    if len(set(train_labels)) < 2:
        return [classes[train_labels[0]]] * len(held)
    model = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=1000))
    model.fit(stats(train), train_labels)
    return [classes[int(k)] for k in model.predict(stats(held))]


def run_train_planes(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train, save, evaluate and log one plane classifier; returns the summary (held-out `test_accuracy`, ...,
    `run_id`, `weights`). Uses `cfg.threads` torch threads meanwhile (restored after)."""
    with torch_threads(cfg.threads):
        return _train_planes(cfg, run_dir)


def _train_planes(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    import mlflow
    import numpy as np
    import pytorch_lightning as pl
    import torch

    from fbad.data.splits import hold_out_patients, split_records
    from fbad.planes.classifier import WEIGHTS_NAME, PlaneClassifier, make_weights
    from fbad.planes.data import (
        PlaneDataset,
        balanced_weights,
        class_names,
        class_of,
        prepared_frames,
        sample_weights,
        source_of,
    )
    from fbad.planes.inputs import to_tensor
    from fbad.planes.module import PlaneModule
    from fbad.planes.rejection import calibrate_min_confidence

    run_dir.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    size, crop = int(cfg.input.size), str(cfg.input.crop)

    records, skipped, left_out = gather_records(cfg)
    t0 = time.perf_counter()
    frames, kept, bad = prepared_frames(records, size, crop, cfg.paths.cache_dir if cfg.data.cache else None,
                                        workers=cfg.data.workers, progress=bool(cfg.progress))
    skipped.rows += bad.rows
    log.info("prepared %d of %d images in %.1fs (%d skipped)", len(kept), len(records), time.perf_counter() - t0,
             len(bad))
    classes = class_names(kept)
    if len(classes) < 2:
        raise DatasetError(f"a plane classifier needs at least two classes; the readable images are all {classes}")
    test_fraction = cfg.split.get("test_fraction")
    if test_fraction:  # patients held out here, stratified by source and class, instead of the official split
        kept = hold_out_patients(kept, float(test_fraction), int(cfg.seed),
                                 stratum=lambda r: f"{source_of(r)}|{class_of(r)}")
    index = {id(r): i for i, r in enumerate(kept)}
    splits = split_records(kept, val_fraction=float(cfg.split.val_fraction), seed=int(cfg.seed),
                           normal_only_train=False)
    parts = {k: getattr(splits, k) for k in ("train", "val", "test")}
    if not parts["train"]:
        raise DatasetError("train-planes: no readable training image")
    rows = {k: np.array([index[id(r)] for r in v], dtype=np.int64) for k, v in parts.items()}
    # kept records have a known class (gather_records)
    labels = {k: [classes.index(cast(str, class_of(r))) for r in v] for k, v in parts.items()}
    counts = {f"n_{k}_{c}": sum(1 for y in labels[k] if y == i) for k in parts for i, c in enumerate(classes)}
    if len(skipped):
        skipped.write(run_dir)
    (run_dir / "split.json").write_text(json.dumps({k: [str(r.path) for r in v] for k, v in parts.items()}, indent=1))
    held_name = "test" if parts["test"] else "val"
    if held_name == "val":
        log.warning("the dataset has no test split: held-out figures are on the validation images (prefix val_)")

    setup_experiment(cfg.paths.mlflow_uri, cfg.experiment_name, cfg.paths.mlflow_artifacts)
    plain = plain_config(cfg)
    with command_run("train-planes", run_dir, plain, cfg.run_name, len(skipped),
                     tags={"held_out": held_name}) as run:
        mlflow.log_params({"classes": json.dumps(classes), **{f"n_{k}": len(v) for k, v in parts.items()}, **counts,
                           **{f"left_out_{k}": v for k, v in left_out.items()}})
        mlflow.log_artifact(str(run_dir / "split.json"))

        weights = None
        if cfg.loss.class_weight == "balanced":
            weights = balanced_weights(labels["train"], len(classes))
        elif cfg.loss.class_weight not in (None, "none"):
            raise ValueError(f"loss.class_weight={cfg.loss.class_weight!r}: expected balanced or none")
        module = PlaneModule(len(classes), widths=list(cfg.model.widths),
                             convs_per_block=int(cfg.model.convs_per_block), dropout=float(cfg.model.dropout),
                             lr=float(cfg.optim.lr),
                             weight_decay=float(cfg.optim.weight_decay), schedule=str(cfg.optim.schedule),
                             label_smoothing=float(cfg.loss.label_smoothing), class_weights=weights)
        augment = build_augment(cast(list[dict[str, Any]], OmegaConf.to_container(cfg.data.augment, resolve=True)),
                                seed=int(cfg.seed))
        train_ds = PlaneDataset(frames[rows["train"]], labels["train"], augment)
        val_ds = PlaneDataset(frames[rows["val"]], labels["val"])
        t0 = time.perf_counter()
        has_val = len(val_ds) > 0
        curves = EpochMetricsLogger(run.info.run_id, None, "planes",
                                    names=("train_loss", "train_acc", "val_loss", "val_acc"))
        draws = sample_weights(labels["train"], [source_of(r) for r in parts["train"]], str(cfg.data.balance))
        fit = fit_keep(cfg, module, train_ds, val_ds, run_dir, monitor="val_loss" if has_val else "train_loss",
                       what="plane classifier",
                       mode="min", callbacks=[curves], val_batch_size=4 * int(cfg.data.batch_size),
                       sample_weights=draws)
        epochs, kept_epoch, best = fit.epochs, fit.kept_epoch, fit.monitored
        train_seconds = time.perf_counter() - t0
        mlflow.log_metrics({"train_seconds": train_seconds, "epochs": epochs, "kept_epoch": kept_epoch,
                            "kept_val_loss": best})
        log.info("trained %d epochs in %.0fs, kept epoch %d (%s), monitored loss %.4f", epochs, train_seconds,
                 kept_epoch, cfg.keep, best)

        min_confidence = float(cfg.min_confidence)
        target = cfg.rejection.target_error
        if target is not None and has_val:  # calibrated on the validation frames, never on the test frames
            with torch.no_grad():
                module.net.cpu().eval()
                val_probs = torch.softmax(module.net(to_tensor(frames[rows["val"]])), 1).numpy()
            cal = calibrate_min_confidence(val_probs, [cast(str, class_of(r)) for r in parts["val"]], classes,
                                           float(target))
            min_confidence = cal.min_confidence
            mlflow.log_metrics({"min_confidence": min_confidence, "val_wrongly_routed": cal.wrongly_routed,
                                "val_routed": cal.routed})
            log.info("min_confidence %.3f calibrated on %d validation frames: %.1f %% wrongly routed (target "
                     "%.1f %%), %.1f %% routed to a plane", min_confidence, cal.n, 100 * cal.wrongly_routed,
                     100 * float(target), 100 * cal.routed)
        elif target is not None:
            log.warning("no validation frames: min_confidence stays %.2f (rejection.target_error needs them)",
                        min_confidence)
        bundle = make_weights(module.net.cpu(), classes, size, crop, min_confidence, config=plain)
        path = save_weights_file(run_dir / WEIGHTS_NAME, bundle)
        mlflow.log_artifact(str(path), artifact_path="model")
        if cfg.register_as:
            log.info("registered as models:/%s/%s", cfg.register_as, register_model(str(cfg.register_as), run))

        # held-out figures through the saved file, as `fbad predict` will load it
        device = "cuda" if cfg.trainer.get("accelerator") == "gpu" and torch.cuda.is_available() else "cpu"
        clf = PlaneClassifier.load(path, device=device)
        held = parts[held_name]
        probs = clf.probabilities(to_tensor(frames[rows[held_name]]))
        answers = clf.decide(probs)
        truth = [cast(str, class_of(r)) for r in held]
        metrics, cm = evaluate(truth, answers, classes)
        sources = [source_of(r) for r in held]
        groups = {src: [x == src for x in sources] for src in sorted(set(sources))}
        real = [x != "phantom" for x in sources]
        if "phantom" in groups and len(groups) > 2:  # every real source together, beside the phantom
            groups["real"] = real
        # the same held-out frames answered by baselines that know no anatomy: the training split's most
        # common class, and a classifier of global image statistics (what framing or scanner alone gives away)
        majority = classes[int(np.bincount(labels["train"], minlength=len(classes)).argmax())]
        stats_pred = image_stats_baseline(frames[rows["train"]], labels["train"], frames[rows[held_name]], classes)
        groups = {**(groups if len(groups) > 1 else {}), "all": [True] * len(held)}  # one source: pooled only
        for name, pick in groups.items():
            idx = np.flatnonzero(pick)
            if name != "all":
                part, _ = evaluate([truth[i] for i in idx], [answers[i] for i in idx], classes)
                metrics.update({f"{name}/{k}": v for k, v in part.items()
                                if k in ("accuracy", "accuracy_brain_planes", "macro_f1_planes")})
                metrics[f"{name}/n"] = len(idx)
            prefix = "" if name == "all" else f"{name}/"
            metrics[f"{prefix}majority_accuracy"] = float(np.mean([truth[i] == majority for i in idx])) \
                if len(idx) else float("nan")
            metrics[f"{prefix}image_stats_accuracy"] = float(np.mean([truth[i] == stats_pred[i] for i in idx])) \
                if len(idx) else float("nan")
        argmax = [classes[int(k)] for k in probs.argmax(1)] if len(held) else []
        metrics["accuracy_argmax"] = float(np.mean([a == t for a, t in zip(argmax, truth, strict=True)])) \
            if held else float("nan")
        # F1s keep plain names (f1_<class>, macro_f1); the `held_out` tag says which split they measure
        summary: dict[str, Any] = {k if k.startswith(("f1_", "macro_f1", "min_conf")) else f"{held_name}_{k}": v
                                   for k, v in metrics.items()}
        summary.update({"n_held_out": len(held), "train_seconds": train_seconds, "epochs": epochs,
                        "min_confidence": min_confidence})
        mlflow.log_metrics({k: float(v) for k, v in summary.items() if v == v})

        import pandas as pd

        pd.DataFrame({"path": [str(r.path) for r in held], "source": sources, "truth": truth,
                      "predicted": [a for a, _ in answers],
                      "confidence": [c for _, c in answers],
                      **{f"p_{c}": probs[:, i].numpy() for i, c in enumerate(classes)}}).to_csv(
            run_dir / "predictions.csv", index=False)
        (run_dir / "confusion_matrix.json").write_text(json.dumps(cm, indent=1))
        fig = plots.confusion_matrix_plot(np.array(cm["matrix"]), cm["labels"],
                                          f"plane classifier, {held_name} ({len(held)} images)")
        fig.savefig(run_dir / "confusion_matrix.png", dpi=120)
        plots.close(fig)
        for name in ("predictions.csv", "confusion_matrix.json", "confusion_matrix.png"):
            mlflow.log_artifact(str(run_dir / name))
    print_metrics(summary, title=f"train-planes: {held_name} split ({len(held)} images never trained on), "
                                 f"classes {classes}")
    print(f"weights: {path}\nMLflow: runs:/{run.info.run_id}/model/{WEIGHTS_NAME}")
    from fbad.training.summary import run_link

    print(f"the run in the MLflow UI (after `mlflow ui --backend-store-uri {cfg.paths.mlflow_uri}`): "
          f"{run_link(run.info.run_id)}")
    if len(skipped):
        print(f"{len(skipped)} images skipped, listed in {run_dir / 'skipped.csv'}")
    summary.update({"run_id": run.info.run_id, "weights": str(path), "classes": classes,
                    "images_skipped": len(skipped)})
    return summary
