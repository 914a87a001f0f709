"""The supervised upper bound of a suite: a small CNN trained on its labelled normal AND abnormal training
frames, on the same aligned-head input the anomaly models see.

It shows how far labelled frames get on a suite (on the Roboflow set, much of that is where the frames come
from, not anatomy), so an anomaly method's figure can be read between the image-statistics baseline and this
bound. Copies of one source frame share a patient id in the readers, so the patient-grouped split keeps
them on one side. The threshold still comes from the normal validation frames only (the benchmark's).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from fbad.anomaly.datamodule import ArrayDataset, PreparedData, prepare_data
from fbad.anomaly.thresholds import calibrate_from_config
from fbad.benchmark.metrics import PairResult, scores_table
from fbad.config import compose
from fbad.data.records import Label
from fbad.data.splits import split_records
from fbad.engine.augment import build_augment
from fbad.planes.module import PlaneModule
from fbad.training.fit import fit_keep

log = logging.getLogger(__name__)


class NotApplicable(Exception):  # noqa: N818 (a reason to skip a pair, not an error)
    """The suite has no labelled abnormal training frames: there is nothing to supervise with."""


def supervised_data(cfg: DictConfig, dataset: dict, tcfg: DictConfig) -> PreparedData:
    """The suite's frames preprocessed as `fbad train` does, split as every method's split is, but with the
    abnormal frames of training-side patients kept in training."""
    prepared = prepare_data(OmegaConf.create(dataset), tcfg.preprocess, tcfg.paths.cache_dir,
                            val_fraction=float(cfg.val_fraction), seed=int(cfg.seed), workers=cfg.workers,
                            progress=False)
    splits = split_records(prepared.records, float(cfg.val_fraction), int(cfg.seed), normal_only_train=False)
    return dataclasses.replace(prepared, splits=splits)


def run_supervised(cfg: DictConfig, suite: str, dataset: dict, run_dir: Path, run_id: str) -> PairResult:
    t0 = time.perf_counter()
    scfg = cfg.supervised
    tcfg = compose("train", [f"seed={int(cfg.seed)}", f"progress={bool(cfg.progress)}",
                             f"paths.root={cfg.paths.root}", f"trainer.max_epochs={int(scfg.epochs)}",
                             f"early_stopping.patience={int(scfg.patience)}", *cfg.train])
    with open_dict(tcfg):
        tcfg.keep = "best"
    prepared = supervised_data(cfg, dataset, tcfg)
    rows = {s: prepared.rows(s) for s in ("train", "val", "test")}
    y_train = np.array([r.label == Label.ABNORMAL for r in rows["train"][1]])
    if not y_train.any() or y_train.all():
        raise NotApplicable(f"suite {suite}: its training frames are all of one class (abnormal: {int(y_train.sum())} "
                            f"of {len(y_train)}); no supervised bound")
    arrays = prepared.cache.arrays
    augment = build_augment(list(tcfg.data.augment), int(cfg.seed), extra_masks=("anomaly",))
    train_ds = ArrayDataset(arrays, *rows["train"], transform=augment)
    val_ds = ArrayDataset(arrays, *rows["val"])
    pos = float(y_train.mean())
    module = PlaneModule(2, widths=list(scfg.widths), dropout=float(scfg.dropout), lr=float(scfg.lr),
                         class_weights=[0.5 / (1 - pos), 0.5 / pos])
    fit = fit_keep(tcfg, module, train_ds, val_ds, run_dir, monitor="val_loss" if len(val_ds) else "train_loss",
                   mode="min")
    log.info("%s/supervised: %d epochs, kept epoch %d (monitored %.4f)", suite, fit.epochs, fit.kept_epoch,
             fit.monitored)
    val_scores = _abnormal_probability(module, val_ds)
    normal_val = val_scores[val_ds.labels == 0]
    thr = calibrate_from_config(normal_val, OmegaConf.to_container(cfg.threshold, resolve=True))  # type: ignore[arg-type]
    test_ds = ArrayDataset(arrays, *rows["test"])
    scored = dict(zip((str(r.path) for r in test_ds.records), _abnormal_probability(module, test_ds), strict=True))
    reasons = {str(p): why for p, why in prepared.skipped.rows}
    test = prepared.splits.test
    scores = scores_table(test, np.array([scored.get(str(r.path), np.nan) for r in test]), thr, reasons, run_id)
    return PairResult(suite, "supervised", {}, scores, run_id, time.perf_counter() - t0)


@torch.no_grad()
def _abnormal_probability(module: PlaneModule, ds: ArrayDataset) -> np.ndarray:
    module.eval()
    if not len(ds):
        return np.zeros(0)
    x = torch.stack([ds[i]["image"] for i in range(len(ds))])
    return torch.softmax(module(x), dim=1)[:, 1].numpy().astype(float)
