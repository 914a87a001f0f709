"""Every (suite, method) pair of a benchmark: train on the suite's normal training frames, calibrate the
threshold on its normal validation frames only, score its test frames, measure.

One MLflow parent run per call (experiment `experiment_name`) and one child run per pair; a `train` method's
child is the training's own parent run (its per-plane run nests below it), as for a sweep's trials.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf, open_dict

from fbad.anomaly.thresholds import calibrate_from_config
from fbad.benchmark.baselines import GaussianOneClass, features
from fbad.benchmark.metrics import PairResult, detection_figures, record_labels, scores_table
from fbad.benchmark.report import write_report
from fbad.benchmark.supervised import NotApplicable, run_supervised
from fbad.config import compose, plain_config
from fbad.data.readers import read_dataset
from fbad.data.records import Label, Record
from fbad.data.splits import Splits, split_records
from fbad.errors import UserError
from fbad.inference.bundle import Bundle, load_bundle
from fbad.inference.predictor import predict_records
from fbad.lesions.dataset import ensure_lesion_dataset
from fbad.tracking import plots
from fbad.tracking.mlflow_utils import flat_params, git_commit, log_params, setup_experiment
from fbad.training.anomaly import run_training

log = logging.getLogger(__name__)
KINDS = ("train", "image_stats", "supervised")


def suite_dataset(cfg: DictConfig, name: str) -> dict[str, Any]:
    """The suite's dataset config, resolved; a lesion suite's dataset is written first when missing."""
    if name not in cfg.suite_defs:
        raise UserError(f"unknown suite {name!r}; defined: {sorted(cfg.suite_defs)}")
    suite = _plain(cfg.suite_defs[name])
    dataset = dict(suite["dataset"])
    gen = suite.get("generate")
    if gen:
        ensure_lesion_dataset(dataset["root"], gen["datasets"], gen["segmentation"], **gen.get("lesions", {}))
    return dataset


def _plain(node: Any) -> Any:
    """A node of the benchmark config as builtins, resolved against the whole config."""
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def suite_splits(dataset: Mapping[str, Any], val_fraction: float, seed: int) -> Splits:
    """Exactly the split every `fbad train` of this suite uses (same reader, same fraction, same seed)."""
    read = read_dataset(OmegaConf.create(dict(dataset)))
    return split_records(read.records, val_fraction=val_fraction, seed=seed)


def _child_run(experiment_id: str, parent_id: str, suite: str, method: str) -> str:
    run = MlflowClient().create_run(experiment_id, run_name=f"{suite}/{method}", tags={
        "mlflow.parentRunId": parent_id, "fbad.command": "benchmark", "fbad.role": "pair",
        "fbad.suite": suite, "fbad.method": method})
    return run.info.run_id


def run_train_method(cfg: DictConfig, suite: str, dataset: Mapping[str, Any], splits: Splits, method: str,
                     overrides: list[str], run_dir: Path, run_id: str) -> PairResult:
    """`fbad train` with the method's overrides on the suite's dataset (one model for every plane), the
    benchmark's threshold, then the test frames through the trained bundle as `fbad predict` scores them."""
    t0 = time.perf_counter()
    tcfg = compose("train", [*overrides, "planes=[all]", f"seed={int(cfg.seed)}", f"progress={bool(cfg.progress)}",
                             f"data.val_fraction={float(cfg.val_fraction)}",  # the split this suite was scored on
                             f"paths.root={cfg.paths.root}", f"logger.experiment={cfg.experiment_name}",
                             f"logger.run_name={suite}/{method}", *cfg.train])
    with open_dict(tcfg):
        tcfg.dataset = OmegaConf.create(dict(dataset))
        if method not in cfg.get("own_threshold", []):
            tcfg.threshold = OmegaConf.create(_plain(cfg.threshold))
    summary = run_training(tcfg, run_dir, run_id=run_id)
    bundle = load_bundle(run_dir)
    pred = predict_records(bundle, splits.test, workers=cfg.workers, progress=False).table
    model = bundle.planes["all"]
    direction = model.module.spec.direction
    sign = -1.0 if direction == "below" else 1.0
    failed = pred["label"].isin(["failed", "unsupported_plane"]).to_numpy()
    scores = pd.DataFrame({
        "path": pred["path"], "label": record_labels(splits.test), "class": [r.anomaly_type for r in splits.test],
        "score": sign * pred["score"].to_numpy(float), "flagged": pred["label"].eq("abnormal").to_numpy(),
        "failed": failed, "reason": pred["reason"]})
    extra = {"pixel_auroc": float(summary["test_pixel_auroc_mean"])} if "test_pixel_auroc_mean" in summary else {}
    fig = examples_figure(bundle, splits.test, scores, f"{suite} / {method}", workers=cfg.workers)
    if fig is not None:
        path = run_dir.parent.parent / f"examples_{suite}_{method}.png"
        fig.savefig(path, dpi=110)
        plots.close(fig)
        MlflowClient().log_artifact(run_id, str(path))
    return PairResult(suite, method, {}, scores, run_id, time.perf_counter() - t0, extra)


def examples_figure(bundle: Bundle, test: list[Record], scores: pd.DataFrame, title: str, k: int = 6,
                    workers: int | None = None) -> Any:
    """The k highest-scoring normal test frames and the k lowest-scoring abnormal ones the threshold missed, each
    with its anomaly map: where a method goes wrong, to look at rather than read. None when there are neither."""
    ok = ~scores["failed"].to_numpy(bool) & (scores["label"].to_numpy() >= 0)
    picks = {"highest-scoring normal": scores[ok & (scores["label"] == 0)].nlargest(k, "score"),
             "missed abnormal": scores[ok & (scores["label"] == 1) & ~scores["flagged"]].nsmallest(k, "score")}
    by_path = {str(r.path): r for r in test}
    groups = {}
    for name, rows in picks.items():
        recs = [by_path[p] for p in rows["path"]]
        if not recs:
            continue
        pred = predict_records(bundle, recs, keep_maps=len(recs), maps_of="all", workers=workers, progress=False)
        shown = sorted(pred.maps, key=lambda m: m[0])  # in the order picked
        titles = [f"{recs[i].anomaly_type or 'normal'}\n{rows['score'].iloc[i]:.3g}" for i, _, _ in shown]
        groups[name] = ([img for _, img, _ in shown], [m for _, _, m in shown], titles)
    return plots.examples_grid(groups, title) if groups else None


def run_image_stats(cfg: DictConfig, suite: str, splits: Splits, run_id: str) -> PairResult:
    """The image-statistics baseline: fitted on the normal training frames, threshold from the normal
    validation frames with the benchmark's threshold strategy."""
    t0 = time.perf_counter()
    train = [r for r in splits.train if r.label != Label.ABNORMAL]
    val = [r for r in splits.val if r.label == Label.NORMAL] or [r for r in splits.val if r.label != Label.ABNORMAL]
    x_train, _ = features(train, workers=cfg.workers)
    x_val, _ = features(val, workers=cfg.workers)
    x_test, bad = features(splits.test, workers=cfg.workers)
    model = GaussianOneClass().fit(x_train)
    thr = calibrate_from_config(model.score(x_val)[np.isfinite(x_val).all(1)], _plain(cfg.threshold))
    scores = scores_table(splits.test, model.score(x_test), thr, dict(bad), run_id)
    return PairResult(suite, "image_stats", {}, scores, run_id, time.perf_counter() - t0)


def measure(result: PairResult) -> PairResult:
    """The pair's figures on the test frames that were scored (failed frames are counted apart)."""
    df = result.scores
    ok = ~df["failed"].to_numpy() & (df["label"].to_numpy() >= 0)
    figs = detection_figures(df["score"].to_numpy()[ok], df["label"].to_numpy()[ok], df["flagged"].to_numpy()[ok],
                             list(df["class"][ok]))
    figs["n_failed"] = float(df["failed"].sum())
    figs.update(result.extra)
    result.figures = figs
    return result


def run_benchmark(cfg: DictConfig, run_dir: Path) -> list[PairResult]:
    """Every method of `cfg.methods` on every suite of `cfg.suites`; the results, also logged to MLflow."""
    unknown = [m for m in cfg.methods if m not in cfg.method_defs]
    if unknown:
        raise UserError(f"unknown method(s) {unknown}; defined: {sorted(cfg.method_defs)}")
    experiment_id = setup_experiment(cfg.paths.mlflow_uri, cfg.experiment_name, cfg.paths.mlflow_artifacts)
    client = MlflowClient()
    parent = client.create_run(experiment_id, run_name=f"benchmark-{run_dir.name}", tags={
        "fbad.command": "benchmark", "git_commit": git_commit(), "run_dir": str(run_dir)}).info.run_id
    log_params(flat_params(plain_config(cfg)), parent)
    results: list[PairResult] = []
    n_pairs, k, t0 = len(cfg.suites) * len(cfg.methods), 0, time.perf_counter()
    try:
        for suite in cfg.suites:
            dataset = suite_dataset(cfg, suite)
            splits = suite_splits(dataset, float(cfg.val_fraction), int(cfg.seed))
            log.info("suite %s: %s", suite, splits.summary())
            for method in cfg.methods:
                spec = cfg.method_defs[method]
                kind = spec.get("kind", "train")
                if kind not in KINDS:
                    raise UserError(f"method {method}: unknown kind {kind!r}; expected one of {KINDS}")
                child = _child_run(experiment_id, parent, suite, method)
                elapsed = time.perf_counter() - t0
                eta = f", ETA {elapsed / k * (n_pairs - k) / 60:.0f} min (from the pairs so far)" if k else ""
                k += 1
                log.info("%s / %s: pair %d of %d, elapsed %.0f min%s", suite, method, k, n_pairs, elapsed / 60, eta)
                try:
                    if kind == "train":
                        res = run_train_method(cfg, suite, dataset, splits, method, list(spec.get("overrides", [])),
                                               run_dir / suite / method, child)
                    elif kind == "supervised":
                        res = run_supervised(cfg, suite, dataset, run_dir / suite / method, child)
                    else:
                        res = run_image_stats(cfg, suite, splits, child)
                except NotApplicable as why:
                    log.info("%s / %s: skipped: %s", suite, method, why)
                    client.set_tag(child, "fbad.skipped", str(why))
                    client.set_terminated(child, "FINISHED")
                    continue
                except BaseException:
                    client.set_terminated(child, "FAILED")
                    raise
                res = measure(res)
                res.scores.to_csv(run_dir / f"scores_{suite}_{method}.csv", index=False)
                client.log_artifact(child, str(run_dir / f"scores_{suite}_{method}.csv"))
                _log_figures(client, child, parent, suite, method, res)
                if kind != "train":
                    client.set_terminated(child, "FINISHED")
                results.append(res)
    except BaseException as exc:
        client.set_tag(parent, "fbad.error", (str(exc) or type(exc).__name__)[:5000])
        client.set_terminated(parent, "KILLED" if isinstance(exc, KeyboardInterrupt | SystemExit) else "FAILED")
        raise
    for path in write_report(results, run_dir, cfg):
        client.log_artifact(parent, str(path))
    client.set_terminated(parent, "FINISHED")
    return results


def _log_figures(client: MlflowClient, child: str, parent: str, suite: str, method: str, res: PairResult) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    clean = {re.sub(r"[^\w\-. ]", "_", k): v for k, v in res.figures.items()}
    clean["seconds"] = res.seconds
    client.log_batch(child, metrics=[Metric(f"bench_{k}", float(v), now, 0) for k, v in clean.items()])
    client.log_batch(parent, metrics=[Metric(f"{suite}/{method}/{k}", float(v), now, 0)
                                      for k, v in clean.items() if not k.startswith("auroc_")])
