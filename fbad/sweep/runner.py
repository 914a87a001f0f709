"""The whole sweep for one worker: study, MLflow parent, trials until n_trials / max_trials / timeout, summary."""

from __future__ import annotations

import logging
import random
import warnings
from pathlib import Path
from typing import Any, cast

import mlflow
import optuna
from hydra.utils import instantiate
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf
from optuna.trial import FrozenTrial, TrialState

from fbad.sweep import SweepError, tracking
from fbad.sweep.objective import Objective, as_list, check_metrics, check_threshold_objective, epoch_metric
from fbad.sweep.space import label, override, parse_space
from fbad.sweep.storage import create_or_load, open_storage, redact
from fbad.tracking.mlflow_utils import flat_params, setup_experiment

log = logging.getLogger(__name__)
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
EPOCH_DIRECTION = {"val_auroc": "maximize", "val_mse": "minimize"}


def run_sweep(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Run this worker's share of the study named `cfg.study`; returns the study's best trial(s) so far."""
    metrics, directions = as_list(cfg.objective.metric), as_list(cfg.objective.direction)
    check_metrics(metrics, directions)
    space = parse_space(cfg.sweep.params)
    check_threshold_objective(metrics, space, [str(o) for o in cfg.train])
    report = epoch_metric(metrics, cfg.objective.get("report", "auto"))
    if report and len(directions) == 1 and EPOCH_DIRECTION.get(report, directions[0]) != directions[0]:
        raise SweepError(f"objective.report={report} improves in the other direction than the objective "
                         f"({metrics[0]}, {directions[0]}): the pruner would stop the best trials")
    if report is None and not str(cfg.pruner.get("_target_", "")).endswith("NopPruner"):
        log.warning("no per-epoch value tracks objective %s: trials will not be pruned", metrics)
    run_dir.mkdir(parents=True, exist_ok=True)

    seed = cfg.seed if cfg.seed is not None else random.SystemRandom().randrange(2**31)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = instantiate(cfg.sampler, seed=seed)
        pruner = instantiate(cfg.pruner)
    hb = cfg.heartbeat
    storage = open_storage(cfg.storage, hb.interval, hb.grace, hb.max_retry, on_stale=tracking.mark_stale)
    study, created = create_or_load(storage, cfg.study, directions, sampler, pruner)
    log.info("study %r in %s: %s, %d trials so far (sampler seed %d)", cfg.study, redact(cfg.storage),
             "created" if created else "continued", len(study.trials), seed)

    parent_id, experiment_id = _parent_run(cfg, study, created, metrics, directions)
    if created:
        for params in cfg.get("enqueue") or []:
            study.enqueue_trial({str(k): label(v)
                                 for k, v in cast(dict[str, Any], OmegaConf.to_container(params)).items()})
    experiment = MlflowClient().get_experiment(experiment_id).name
    objective = Objective(space=space, base_overrides=_base_overrides(cfg, experiment), metrics=metrics,
                          report=report, run_dir=run_dir, experiment_id=experiment_id, parent_run_id=parent_id,
                          study_name=cfg.study)

    def after_trial(study: optuna.Study, trial: FrozenTrial) -> None:
        tracking.log_trial_result(parent_id, study, trial, metrics)
        if cfg.max_trials and _n_counted(study) >= cfg.max_trials:
            study.stop()

    interrupted = True
    try:
        if not cfg.max_trials or _n_counted(study) < cfg.max_trials:
            study.optimize(objective, n_trials=cfg.n_trials, timeout=cfg.timeout, catch=(Exception,),
                           callbacks=[after_trial], gc_after_trial=True)
        interrupted = False
    finally:
        summary = tracking.log_summary(parent_id, study, metrics, run_dir)
        tracking.finish_parent(parent_id, interrupted, study)
    summary.update(parent_run_id=parent_id, experiment=experiment, states=_states(study))
    _print(cfg, summary, experiment)
    return summary


def _parent_run(cfg: DictConfig, study: optuna.Study, created: bool, metrics: list[str],
                directions: list[str]) -> tuple[str, str]:
    """(parent run id, MLflow experiment id): made by the study's creator, found by every other worker."""

    uri, artifacts = cfg.paths.mlflow_uri, cfg.paths.mlflow_artifacts
    parent = study.user_attrs.get(tracking.PARENT_ATTR)
    if parent is None and not created:
        log.info("waiting for the worker that created study %r to create its MLflow run", cfg.study)
        parent = tracking.wait_for_parent(study)
        if parent is None:
            log.warning("no MLflow run announced for study %r (its creator stopped early?): creating one", cfg.study)
    if parent is None:
        tracking.mark_pending(study)
        experiment_id = setup_experiment(uri, cfg.mlflow_experiment, artifacts)
        params = flat_params({k: _plain(cfg[k]) for k in cfg if k not in ("hydra", "paths")})
        params["storage"] = redact(cfg.storage)
        tags = {"optuna.storage": redact(cfg.storage), "objective": ",".join(
            f"{m} ({d})" for m, d in zip(metrics, directions, strict=True))}
        return tracking.create_parent(study, experiment_id, params, tags), experiment_id
    mlflow.set_tracking_uri(uri)
    run = MlflowClient().get_run(str(parent))  # its experiment wins over a changed mlflow_experiment
    tracking.reopen_parent(str(parent))
    return str(parent), run.info.experiment_id


def _n_counted(study: optuna.Study) -> int:
    """Trials that count towards `max_trials`: a failed trial that was retried counts once, as its retry."""
    from optuna.storages import RetryFailedTrialCallback

    trials = study.get_trials(deepcopy=False, states=COUNTED)
    retried = {RetryFailedTrialCallback.retried_trial_number(t) for t in study.get_trials(deepcopy=False)}
    return sum(1 for t in trials if not (t.state == TrialState.FAIL and t.number in retried))


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def _base_overrides(cfg: DictConfig, experiment: str) -> list[str]:
    """Every trial: the sweep's own paths and MLflow experiment, no progress bars, then the sweep's `train`."""
    paths = [override(f"paths.{k}", cfg.paths[k]) for k in ("root", "data_dir", "cache_dir", "mlflow_uri",
                                                            "mlflow_artifacts") if k in cfg.paths]
    return [*paths, override("logger.experiment", experiment), "progress=false", *[str(o) for o in cfg.train]]


def _states(study: optuna.Study) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def _print(cfg: DictConfig, summary: dict[str, Any], experiment: str) -> None:
    from rich.console import Console

    console = Console()
    console.print(f"study {cfg.study!r}: {summary['n_trials']} trials {summary['states']}")
    for best in summary["best"]:
        values = ", ".join(f"{m}={v:.4f}" for m, v in zip(summary["metric"], best["values"], strict=True))
        console.print(f"best trial {best['number']}: {values}")
        for k, v in best["params"].items():
            console.print(f"  {k} = {v}")
    console.print(f"compare:   fbad compare experiment={experiment}\n"
                  f"dashboard: optuna-dashboard {redact(cfg.storage)}\n"
                  f"MLflow UI: mlflow ui --backend-store-uri {cfg.paths.mlflow_uri} --host 127.0.0.1")

