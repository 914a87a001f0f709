"""MLflow for a sweep: one parent run per study (shared by every worker), one child run per trial.

The parent's run id is kept in the study's user attributes: the worker that creates the study creates
the parent (and the MLflow store's tables), the others wait for it, and a restarted sweep finds it again.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import optuna
from mlflow.entities import Metric, RunStatus, RunTag
from mlflow.tracking import MlflowClient
from optuna.trial import FrozenTrial, TrialState

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)
PARENT_ATTR = "mlflow_parent_run_id"
PENDING_ATTR = "mlflow_parent_pending_since"
RUN_ATTR = "mlflow_run_id"
STATE_TAG = "fbad.trial_state"


def mark_pending(study: optuna.Study) -> None:
    study.set_user_attr(PENDING_ATTR, time.time())


def create_parent(study: optuna.Study, experiment_id: str, params: dict[str, str], tags: dict[str, str]) -> str:
    """The sweep's parent run, announced to every other worker through the study."""
    from fbad.tracking.mlflow_utils import log_params

    client = MlflowClient()
    run = client.create_run(experiment_id, run_name=f"sweep-{study.study_name}",
                            tags={"fbad.command": "sweep", "fbad.role": "sweep", "fbad.study": study.study_name,
                                  **tags})
    log_params(params, run.info.run_id)
    study.set_user_attr(PARENT_ATTR, run.info.run_id)
    return run.info.run_id


def wait_for_parent(study: optuna.Study, timeout: float = 120.0) -> str | None:
    """The parent run id another worker is creating; None when nobody announced one in time."""
    deadline = None
    while True:
        attrs = optuna.load_study(study_name=study.study_name, storage=study._storage).user_attrs
        if PARENT_ATTR in attrs:
            return str(attrs[PARENT_ATTR])
        since = attrs.get(PENDING_ATTR)
        if deadline is None:
            deadline = (float(since) if since else time.time()) + timeout
        if time.time() > deadline:
            return None
        time.sleep(0.5)


def create_trial_run(experiment_id: str, parent_id: str, study: str, trial: optuna.Trial) -> str:
    """The trial's run (a child of the sweep run); `fbad train` then logs into it as its own parent run."""
    frozen = trial.study._storage.get_trial(trial._trial_id)  # Trial has no public system_attrs
    retried = frozen.system_attrs.get("failed_trial")
    tags = {"mlflow.parentRunId": parent_id, "fbad.role": "trial", "fbad.study": study,
            "fbad.trial": str(trial.number), STATE_TAG: "RUNNING"}
    if retried is not None:
        tags["fbad.retry_of"] = str(retried)
    run = MlflowClient().create_run(experiment_id, run_name=f"trial-{trial.number}", tags=tags)
    trial.set_user_attr(RUN_ATTR, run.info.run_id)
    return run.info.run_id


def log_choices(run_id: str, choices: dict[str, Any]) -> None:
    """The trial's choices as `trial.<key>` params, beside the resolved config that training logs."""
    from fbad.tracking.mlflow_utils import log_params

    log_params({f"trial.{k}": _param(v) for k, v in choices.items()}, run_id)


def _param(v: Any) -> str:
    return json.dumps(v) if isinstance(v, list | dict) else str(v)


def end_trial_run(run_id: str, state: str, error: str | None = None) -> None:
    """Tag the trial's outcome; end the run (and any plane run left open) if training did not."""
    client = MlflowClient()
    client.set_tag(run_id, STATE_TAG, state)
    if error:
        client.set_tag(run_id, "fbad.error", error[:5000])
    status = {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}.get(state, "FAILED")
    trial_run = client.get_run(run_id)
    if trial_run.info.status == "RUNNING" or (trial_run.info.status == "FINISHED" and status != "FINISHED"):
        client.set_terminated(run_id, status)  # e.g. trained fine but the objective metric was missing
    for run in _children(trial_run.info.experiment_id, run_id):
        if run.info.status == "RUNNING":
            client.set_terminated(run.info.run_id, status)


def _children(experiment_id: str, run_id: str) -> list:
    return MlflowClient().search_runs([experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{run_id}'")


def mark_stale(study: optuna.Study, trial: FrozenTrial) -> None:
    """A trial whose worker died: its MLflow runs end FAILED rather than RUNNING forever."""
    run_id = trial.user_attrs.get(RUN_ATTR)
    if not run_id:
        return
    try:
        end_trial_run(str(run_id), "FAIL", "the worker stopped sending heartbeats (killed or lost)")
    except Exception as exc:  # noqa: BLE001 (tracking must not stop the sweep)
        log.warning("could not mark MLflow run %s of stale trial %d: %s", run_id, trial.number, exc)


def log_trial_result(parent_id: str, study: optuna.Study, trial: FrozenTrial, metrics: list[str]) -> None:
    """Per trial on the parent: the trial's value(s), and the best value and parameters so far."""
    now = int(time.time() * 1000)
    items = []
    if trial.state == TrialState.COMPLETE and trial.values:
        items += [Metric(f"trial/{m}", float(v), now, trial.number) for m, v in zip(metrics, trial.values, strict=True)]
    counts = {s.name.lower(): len(study.get_trials(deepcopy=False, states=(s,)))
              for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    items += [Metric(f"n_{k}", float(v), now, 0) for k, v in counts.items()]
    best = best_trials(study)
    tags: list[RunTag] = []
    if best and len(study.directions) == 1:
        # a completed single-objective trial has its value
        items.append(Metric("best_value", float(cast(float, best[0].value)), now, trial.number))
        tags += [RunTag("best.trial", str(best[0].number)),
                 *[RunTag(f"best.{k}", str(v)) for k, v in best[0].params.items()]]
    elif best:
        tags.append(RunTag("best.trials", ",".join(str(t.number) for t in best)))
    MlflowClient().log_batch(parent_id, metrics=items, tags=tags)


def best_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The best trial (one objective) or the Pareto front (several); empty before any trial completes."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return []
    return [study.best_trial] if len(study.directions) == 1 else list(study.best_trials)


def log_summary(parent_id: str, study: optuna.Study, metrics: list[str], out_dir: Path) -> dict[str, Any]:
    """Best parameters as JSON, and the optimisation-history and parameter-importance plots, on the parent."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    client = MlflowClient()
    best = best_trials(study)
    summary = {"study": study.study_name, "metric": metrics, "n_trials": len(study.trials),
               "best": [{"number": t.number, "values": t.values, "params": t.params,
                         "mlflow_run_id": t.user_attrs.get(RUN_ATTR)} for t in best]}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "best.json").write_text(json.dumps(summary, indent=2, default=str))
    client.log_artifact(parent_id, str(out_dir / "best.json"))
    if not best:
        return summary
    target = (lambda t: t.values[0]) if len(metrics) > 1 else None
    plots = {"optimization_history": lambda: ovm.plot_optimization_history(study, target=target,
                                                                           target_name=metrics[0]),
             "param_importances": lambda: ovm.plot_param_importances(study, target=target, target_name=metrics[0])}
    for name, make in plots.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # experimental plots; "too few trials for importances"
                ax = make()
            # an Axes, or an array of them; either way drawn on a top-level Figure
            fig = cast("Figure", ax.figure if hasattr(ax, "figure") else cast(Any, ax).flat[0].figure)
            fig.tight_layout()
            path = out_dir / f"{name}.png"
            fig.savefig(path, dpi=100)
            plt.close(fig)
            client.log_artifact(parent_id, str(path), artifact_path="plots")
        except Exception as exc:  # noqa: BLE001 (e.g. importances need two completed trials that differ)
            log.info("no %s plot: %s", name, exc)
    return summary


def running_trials(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


def experiment_id(tracking_uri: str, name: str, artifacts: str | None) -> str:
    from fbad.tracking.mlflow_utils import setup_experiment

    return setup_experiment(tracking_uri, name, artifacts)


def finish_parent(parent_id: str, interrupted: bool, study: optuna.Study) -> None:
    """Close the parent unless another worker still runs a trial (that worker closes it)."""
    if running_trials(study):
        return
    status = RunStatus.to_string(RunStatus.KILLED if interrupted else RunStatus.FINISHED)
    MlflowClient().set_terminated(parent_id, status)


def reopen_parent(parent_id: str) -> None:
    MlflowClient().update_run(parent_id, status="RUNNING")

