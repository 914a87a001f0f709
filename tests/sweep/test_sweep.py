"""`fbad sweep` and `fbad compare` through the real config: tiny trials on CPU, sqlite and PostgreSQL studies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import optuna
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from optuna.trial import TrialState

from fbad.config import compose
from fbad.sweep import SweepError
from fbad.sweep.objective import check_threshold_objective
from fbad.sweep.runner import run_sweep
from fbad.sweep.space import SpaceError, override, parse_space
from fbad.tracking.compare import compare_runs

# one plane, 32 px, 2 batches an epoch: a trial trains in about two seconds
TRAIN = ["dataset.n_per_plane=40", "dataset.size=96", "dataset.anomaly_fraction=0.5", "preprocess.image_size=32",
         "model.widths=[8,16]", "model.latent_dim=16", "trainer.max_epochs=3", "++threshold.min_count=2",
         "data.batch_size=8", "data.preprocess_workers=1", "early_stopping.patience=0", "planes=[trans_thalamic]"]
FINISHED_STATES = {TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL}


def train_list(extra: tuple[str, ...] = ()) -> str:
    return "train=[" + ",".join(f"'{o}'" for o in (*TRAIN, *extra)) + "]"


@pytest.fixture(scope="session")
def shared_data(tmp_path_factory) -> list[str]:
    """Phantom and preprocessing cache made once, shared by every sweep below (and its workers)."""
    from fbad.anomaly.datamodule import prepare_data

    root = tmp_path_factory.mktemp("sweepdata")
    paths = [f"paths.data_dir={root / 'data'}", f"paths.cache_dir={root / 'cache'}"]
    cfg = compose("train", [*TRAIN, *paths])
    prepare_data(cfg.dataset, cfg.preprocess, cfg.paths.cache_dir, val_fraction=cfg.data.val_fraction, seed=cfg.seed,
                 workers=1, progress=False)
    return paths


def sweep_cfg(tmp_path: Path, shared: list[str], *extra: str, train_extra: tuple[str, ...] = ()):
    return compose("sweep", ["sweep=smoke", f"storage=sqlite:///{tmp_path / 'optuna.db'}", "seed=0", *shared,
                             train_list(train_extra), *extra])


def fbad(*args: str, cwd: Path, **kw) -> subprocess.Popen:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.Popen([sys.executable, "-m", "fbad.cli", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def runs_by_role(tracking_uri: str, experiment: str) -> tuple[list, list]:
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("fbad.role") == "sweep"]
    trials = [r for r in runs if r.data.tags.get("fbad.role") == "trial"]
    return parents, trials


def test_space_and_overrides():
    space = parse_space({"enhancement": ["none", "nlm"], "enhancement.ops.0.h": {"float": [5.0, 20.0],
                                                                                 "when": {"enhancement": "nlm"}},
                         "model.widths": {"depth": [2, 3], "base": [8]}, "data.augment": {"value": []}})
    assert [(p.name, p.kind) for p in space] == [("enhancement", "categorical"), ("enhancement.ops.0.h", "float"),
                                                 ("model.widths", "widths"), ("data.augment", "fixed")]
    from fbad.sweep.space import suggest

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    study.enqueue_trial({"enhancement": "none", "model.widths.depth": 3, "model.widths.base": 8})
    choices, overrides = suggest(study.ask(), space)
    assert choices == {"enhancement": "none", "model.widths.depth": 3, "model.widths.base": 8,
                       "model.widths": [8, 16, 32]}  # the NLM strength is not drawn without NLM
    assert overrides == ["enhancement=none", "model.widths=[8,16,32]", "data.augment=[]"]
    cfg = compose("train", overrides)
    assert cfg.enhancement.name == "none" and list(cfg.model.widths) == [8, 16, 32] and cfg.data.augment == []
    assert override("paths.root", "/tmp/a b") == "paths.root='/tmp/a b'" and override("x", "1e-3") == "x='1e-3'"
    with pytest.raises(SpaceError, match="earlier parameter"):
        parse_space({"a.h": {"float": [1.0, 2.0], "when": {"a": "x"}}, "a": ["x"]})
    with pytest.raises(SpaceError, match="bad float range"):
        parse_space({"model.lr": {"float": [0.0, 1.0], "log": True}})


def test_objective_on_test_split_is_refused(tmp_path):
    cfg = compose("sweep", ["objective.metric=test_auroc_mean", f"storage=sqlite:///{tmp_path / 'o.db'}"])
    with pytest.raises(SweepError, match="test split"):
        run_sweep(cfg, tmp_path / "run")
    cfg = compose("sweep", ["objective.report=val_mse", f"storage=sqlite:///{tmp_path / 'o.db'}"])
    with pytest.raises(SweepError, match="other direction"):
        run_sweep(cfg, tmp_path / "run")
    # max_f1 fits the threshold on the validation anomalies that val_f1 is scored on
    cfg = compose("sweep", ["objective.metric=val_f1_mean", "train=['threshold=max_f1']",
                            f"storage=sqlite:///{tmp_path / 'o.db'}"])
    with pytest.raises(SweepError, match="threshold=max_f1 fits that threshold on the same validation images"):
        run_sweep(cfg, tmp_path / "run")
    full = compose("sweep", ["sweep=full", "objective.metric=val_f1_mean"])  # the full space pairs with val_f1
    check_threshold_objective(["val_f1_mean"], parse_space(full.sweep.params), [])


def test_sqlite_sweep_prunes_fails_tracks_and_continues(tmp_path, shared_data):
    cfg = sweep_cfg(tmp_path, shared_data, "study=sq", "n_trials=5", "objective.metric=best_val_mse_mean",
                    "objective.direction=minimize", "pruner.n_startup_trials=2", "pruner.n_warmup_steps=1")
    cfg.sweep.params = {"model.lr": {"float": [1e-7, 1e-2], "log": True}, "model.loss": ["mse", "no_such_loss"],
                        "enhancement": ["none", "no_such_preset"]}
    good = {"model.loss": "mse", "enhancement": "none"}
    cfg.enqueue = [{**good, "model.lr": 1e-2}, {**good, "model.lr": 5e-3},
                   {**good, "model.lr": 1e-7},                                  # cannot learn: pruned
                   {**good, "model.lr": 1e-2, "enhancement": "no_such_preset"},  # invalid config
                   {**good, "model.lr": 1e-2, "model.loss": "no_such_loss"}]    # training crashes
    summary = run_sweep(cfg, tmp_path / "run")

    study = optuna.load_study(study_name="sq", storage=cfg.storage)
    trials = sorted(study.trials, key=lambda t: t.number)
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED,
                                         TrialState.FAIL, TrialState.FAIL]
    assert len(trials[2].intermediate_values) >= 2  # reported per epoch, pruned after the warm-up
    assert "no_such_preset" in trials[3].user_attrs["error"] and "no_such_loss" in trials[4].user_attrs["error"]
    assert summary["best"][0]["number"] == study.best_trial.number

    parents, runs = runs_by_role(cfg.paths.mlflow_uri, "sq")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    assert parent.data.metrics["best_value"] == pytest.approx(study.best_value)
    assert parent.data.tags["best.trial"] == str(study.best_trial.number)
    client = MlflowClient()
    assert {"plots/optimization_history.png", "plots/param_importances.png"} <= {
        a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    by_trial = {int(r.data.tags["fbad.trial"]): r for r in runs}
    assert sorted(by_trial) == [0, 1, 2, 3, 4]
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in runs)
    assert all(r.data.tags["fbad.study"] == "sq" for r in runs)
    status = {n: (r.info.status, r.data.tags["fbad.trial_state"]) for n, r in by_trial.items()}
    assert status == {0: ("FINISHED", "COMPLETE"), 1: ("FINISHED", "COMPLETE"), 2: ("KILLED", "PRUNED"),
                      3: ("FAILED", "FAIL"), 4: ("FAILED", "FAIL")}
    assert "no_such_preset" in by_trial[3].data.tags["fbad.error"]
    done = by_trial[0]
    assert done.data.params["trial.model.lr"] == "0.01" and done.data.params["model.name"] == "conv_ae"
    assert done.data.metrics["best_val_mse_mean"] == pytest.approx(trials[0].value)
    planes = client.search_runs([done.info.experiment_id],
                                filter_string=f"tags.`mlflow.parentRunId` = '{done.info.run_id}'")
    assert [p.data.tags["plane"] for p in planes] == ["trans_thalamic"]

    table, statuses = compare_runs("sq", metric="best_val_mse_mean", top=5)
    assert list(table["trial"]) == [str(study.best_trial.number), str(1 - study.best_trial.number)]
    assert {"model.lr", "model.loss", "enhancement", "test_auroc_mean"} <= set(table.columns)
    assert statuses["FINISHED"] == 2

    # the same command again continues the same study under the same MLflow parent
    again = sweep_cfg(tmp_path, shared_data, "study=sq", "n_trials=1", "objective.metric=best_val_mse_mean",
                      "objective.direction=minimize")
    again.sweep.params = cfg.sweep.params
    run_sweep(again, tmp_path / "run2")
    study = optuna.load_study(study_name="sq", storage=cfg.storage)
    assert len(study.trials) == 6 and {t.state for t in study.trials} <= FINISHED_STATES
    parents, runs = runs_by_role(cfg.paths.mlflow_uri, "sq")
    assert len(parents) == 1 and len(runs) == 6


def test_killed_worker_trial_is_failed_then_retried(tmp_path, shared_data):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    hb = ["heartbeat.interval=1", "heartbeat.grace=2"]
    worker = fbad("sweep", "sweep=smoke", "study=kill", f"storage={storage}", "n_trials=1", *hb, *shared_data,
                  train_list(("trainer.max_epochs=100000",)), cwd=tmp_path, start_new_session=True)
    try:
        deadline = time.time() + 240
        while True:  # until its trial runs (heartbeat thread started, MLflow run created)
            assert worker.poll() is None, worker.communicate()[0]
            assert time.time() < deadline, "the worker never started its trial"
            try:
                running = optuna.load_study(study_name="kill", storage=storage).get_trials(states=(TrialState.RUNNING,))
            except KeyError:
                running = []
            if running and "mlflow_run_id" in running[0].user_attrs:
                break
            time.sleep(0.5)
        time.sleep(1.0)
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.communicate()
    time.sleep(3.5)  # past the grace period: the trial's heartbeat has stopped

    cfg = sweep_cfg(tmp_path, shared_data, "study=kill", "n_trials=1", *hb)
    run_sweep(cfg, tmp_path / "run")
    study = optuna.load_study(study_name="kill", storage=storage)
    trials = sorted(study.trials, key=lambda t: t.number)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert trials[1].system_attrs["failed_trial"] == 0 and trials[1].params == trials[0].params
    from fbad.sweep.runner import _n_counted

    assert _n_counted(study) == 1  # towards max_trials the failed trial counts once, as its retry
    parents, runs = runs_by_role(cfg.paths.mlflow_uri, "kill")
    assert len(parents) == 1
    by_trial = {int(r.data.tags["fbad.trial"]): r for r in runs}
    assert by_trial[0].info.status == "FAILED" and by_trial[0].data.tags["fbad.trial_state"] == "FAIL"
    assert "heartbeat" in by_trial[0].data.tags["fbad.error"]
    assert by_trial[1].info.status == "FINISHED" and by_trial[1].data.tags["fbad.retry_of"] == "0"
    running = "attributes.status = 'RUNNING'"
    assert MlflowClient().search_runs([by_trial[0].info.experiment_id], filter_string=running) == []


def test_two_workers_share_a_postgres_study(tmp_path, shared_data, postgres, capsys, monkeypatch):
    storage = postgres.create_db("optuna_shared")
    tracking = postgres.create_db("mlflow_shared")
    args = ["sweep", "sweep=smoke", "study=shared", f"storage={storage}", "n_trials=2",
            f"paths.mlflow_uri={tracking}", *shared_data, train_list()]
    workers = [fbad(*args, cwd=tmp_path) for _ in range(2)]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    for w, out in zip(workers, outputs, strict=True):
        assert w.returncode == 0, out

    study = optuna.load_study(study_name="shared", storage=storage)
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert {t.state for t in trials} <= FINISHED_STATES
    assert all(t.intermediate_values for t in trials if t.state == TrialState.COMPLETE)  # per-epoch val AUROC
    parents, runs = runs_by_role(tracking, "shared")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(int(r.data.tags["fbad.trial"]) for r in runs) == [0, 1, 2, 3]  # one child run per trial
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {parents[0].info.run_id}
    assert {r.data.tags["fbad.trial_state"] for r in runs} <= {"COMPLETE", "PRUNED", "FAIL"}

    # the console command, in this process (its imports are paid already)
    from fbad.cli import main as fbad_cli

    monkeypatch.setattr(sys, "argv", sys.argv[:])
    monkeypatch.chdir(tmp_path)
    fbad_cli(["compare", "experiment=shared", "top=3", f"paths.mlflow_uri={tracking}"])
    out = capsys.readouterr().out
    csv = next((tmp_path / "outputs" / "compare").glob("*/compare.csv"))
    table = pd.read_csv(csv)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(table) == min(3, len(complete)) and table["val_auroc_mean"].is_monotonic_decreasing
    assert table["val_auroc_mean"].iloc[0] == pytest.approx(max(t.value for t in complete))
    assert "shared: best" in out and "model.lr" in out


def test_sweep_configs_compose_and_instantiate():
    from hydra.utils import instantiate

    cfg = compose("sweep", ["sweep=default"])
    space = OmegaConf.to_container(cfg.sweep.params)
    assert {"enhancement", "model.widths", "model.latent_dim", "model.loss"} <= set(space)
    assert cfg.storage.startswith("sqlite:///") and cfg.storage.endswith("/optuna.db")
    for name in ("default", "full", "smoke"):
        assert parse_space(compose("sweep", [f"sweep={name}"]).sweep.params)
    other = compose("sweep", ["sampler=random", "pruner=hyperband"])
    assert isinstance(instantiate(other.sampler, seed=1), optuna.samplers.RandomSampler)
    assert isinstance(instantiate(other.pruner), optuna.pruners.HyperbandPruner)
    preset = compose("sweep", ["experiment=sweep_phantom"])
    assert preset.study == "sweep_phantom" and preset.sweep.name == "default" and len(preset.enqueue) == 1


def test_max_trials_timeout_multi_objective_and_hyperband(tmp_path, shared_data):
    """The study-level stops and the other study kinds, tiny: `max_trials` counts the whole study, `timeout`
    stops this worker, two metrics make a multi-objective study (Pareto front logged, no pruner reports),
    `pruner=hyperband` prunes on the per-epoch value."""
    capped = sweep_cfg(tmp_path, shared_data, "study=capped", "n_trials=null", "max_trials=2")
    run_sweep(capped, tmp_path / "capped")
    assert len(optuna.load_study(study_name="capped", storage=capped.storage).trials) == 2
    run_sweep(capped, tmp_path / "capped2")  # the study is full: another worker runs nothing
    assert len(optuna.load_study(study_name="capped", storage=capped.storage).trials) == 2

    timed = sweep_cfg(tmp_path, shared_data, "study=timed", "n_trials=null", "timeout=1")
    run_sweep(timed, tmp_path / "timed")
    n_timed = len(optuna.load_study(study_name="timed", storage=timed.storage).trials)
    assert 1 <= n_timed <= 3  # a trial takes about two seconds: the second check after 1 s stops it

    multi = sweep_cfg(tmp_path, shared_data, "study=multi", "n_trials=3",
                      "objective.metric=[best_val_mse_mean,val_auroc_mean]", "objective.direction=[minimize,maximize]")
    summary = run_sweep(multi, tmp_path / "multi")
    study = optuna.load_study(study_name="multi", storage=multi.storage)
    assert [d.name for d in study.directions] == ["MINIMIZE", "MAXIMIZE"]
    assert all(len(t.values) == 2 for t in study.trials if t.state == TrialState.COMPLETE)
    assert {t.number for t in study.best_trials} == {b["number"] for b in summary["best"]}
    assert all(not t.intermediate_values for t in study.trials)  # no per-epoch reports without pruning

    hb = sweep_cfg(tmp_path, shared_data, "study=hb", "n_trials=4", "pruner=hyperband", "pruner.min_resource=1",
                   "objective.metric=best_val_mse_mean", "objective.direction=minimize")
    run_sweep(hb, tmp_path / "hb")
    study = optuna.load_study(study_name="hb", storage=hb.storage)
    assert len(study.trials) == 4
    parents, _ = runs_by_role(hb.paths.mlflow_uri, "hb")
    assert parents[0].data.params["pruner._target_"] == "optuna.pruners.HyperbandPruner"
    assert all(len(t.intermediate_values) >= 1 for t in study.trials if t.state != TrialState.FAIL)
