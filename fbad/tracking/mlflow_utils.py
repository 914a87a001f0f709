"""MLflow run layout: a parent run per command, a child per plane, config as params, epoch curves."""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)
MAX_PARAM_LEN = 6000


def setup_experiment(tracking_uri: str, experiment: str, artifact_root: str | Path | None = None) -> str:
    """Point MLflow at the store and make sure the experiment exists with artifacts under outputs/."""
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        location = None
        if artifact_root is not None and "://" not in str(artifact_root):
            location = (Path(artifact_root).expanduser().resolve() / experiment).as_uri()
        elif artifact_root is not None:
            location = f"{artifact_root}/{experiment}"
        exp_id = client.create_experiment(experiment, artifact_location=location)
    else:
        exp_id = exp.experiment_id
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


def start_command_run(command: str, run_dir: Path, config: Mapping, run_name: str | None = None,
                      tags: Mapping[str, str] | None = None, run_id: str | None = None,
                      log_config: bool = True) -> mlflow.ActiveRun:
    """The one way a command opens its MLflow run: a new run named `<command>-<run folder>` (or `run_id`
    reopened: a resumed training, a sweep's trial run), with the config as params and config.yaml and the tags
    `fbad.command`, `git_commit`, `run_dir` (not logged again with `log_config=False`, e.g. on resume)."""
    run = mlflow.start_run(run_id=run_id, run_name=None if run_id else (run_name or f"{command}-{run_dir.name}"))
    if log_config:
        log_params(flat_params(config))
        mlflow.log_text(OmegaConf.to_yaml(OmegaConf.create(dict(config))), "config.yaml")
        mlflow.set_tags({"fbad.command": command, "git_commit": git_commit(), "run_dir": str(run_dir), **(tags or {})})
    return run


def end_failed_run(exc: BaseException) -> None:
    """End the active run FAILED (KILLED when interrupted) with the error in the `fbad.error` tag, so no run
    is left RUNNING."""
    mlflow.set_tag("fbad.error", (str(exc) or type(exc).__name__)[:5000])
    mlflow.end_run("KILLED" if isinstance(exc, KeyboardInterrupt | SystemExit) else "FAILED")


@contextmanager
def command_run(
    command: str, run_dir: Path, config: Mapping, run_name: str | None = None, skipped: int | None = 0,
    tags: Mapping[str, str] | None = None,
) -> Iterator[mlflow.ActiveRun]:
    """The MLflow run of a single-run command (train-seg, train-planes, eval-*, predict, publish), see
    `start_command_run`; on success the skipped-image count and skipped.csv, then FINISHED; on an error
    `end_failed_run`."""
    run = start_command_run(command, run_dir, config, run_name, tags)
    try:
        yield run
        if skipped is not None:  # commands that read images
            mlflow.log_metric("images_skipped", skipped)
        if (run_dir / "skipped.csv").is_file():
            mlflow.log_artifact(str(run_dir / "skipped.csv"))
    except BaseException as exc:
        end_failed_run(exc)
        raise
    mlflow.end_run("FINISHED")


def flat_params(cfg: DictConfig | Mapping, prefix: str = "") -> dict[str, str]:
    """Nested config as dotted keys (lists kept whole), values cut to MLflow's length limit."""
    container = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    out: dict[str, str] = {}

    def walk(node: Any, key: str) -> None:
        if isinstance(node, dict) and node:
            for k, v in node.items():
                walk(v, f"{key}.{k}" if key else str(k))
        else:
            out[key] = json.dumps(node) if isinstance(node, list | dict) else str(node)
            out[key] = out[key][:MAX_PARAM_LEN]

    walk(container, prefix)
    return {k: v for k, v in out.items() if k}  # an empty top-level config has no parameter to log


def log_params(params: Mapping[str, str], run_id: str | None = None) -> None:
    from mlflow.entities import Param

    client = MlflowClient()
    if not run_id:
        run = mlflow.active_run()
        assert run is not None, "log_params: no run_id and no active run"
        run_id = run.info.run_id
    items = [Param(k, v) for k, v in params.items()]
    for i in range(0, len(items), 100):
        client.log_batch(run_id, params=items[i: i + 100])


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def register_model(name: str, run: Any) -> str:
    """A new version of registered model `name` whose source is this run's `model/` folder."""
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name)
    mv = client.create_model_version(name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    return str(mv.version)
