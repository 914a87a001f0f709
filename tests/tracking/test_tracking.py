"""The single-run commands' MLflow run (train-seg, train-planes) on a real sqlite store: no run is left RUNNING."""

from __future__ import annotations

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from fbad.tracking.mlflow_utils import command_run, setup_experiment


@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    setup_experiment(uri, "cmd", tmp_path / "artifacts")
    yield MlflowClient(uri)
    while mlflow.active_run():
        mlflow.end_run()


def test_finished_run_logs_config_tags_and_skipped(store, tmp_path):
    (tmp_path / "skipped.csv").write_text("path,reason\nbad.png,corrupt\n")
    with command_run("train-seg", tmp_path, {"seed": 3, "model": {"widths": [8, 16]}}, skipped=1,
                     tags={"held_out": "test"}) as run:
        mlflow.log_metric("dice_mean", 0.9)
    got = store.get_run(run.info.run_id)
    assert got.info.status == "FINISHED"
    assert got.info.run_name == f"train-seg-{tmp_path.name}"
    assert got.data.params["seed"] == "3" and got.data.params["model.widths"] == "[8, 16]"
    assert got.data.tags["fbad.command"] == "train-seg" and got.data.tags["held_out"] == "test"
    assert got.data.metrics["images_skipped"] == 1.0
    assert {"config.yaml", "skipped.csv"} <= {a.path for a in store.list_artifacts(run.info.run_id)}
    assert mlflow.active_run() is None


@pytest.mark.parametrize(("error", "status"), [(ValueError("no readable training image"), "FAILED"),
                                               (KeyboardInterrupt(), "KILLED")])
def test_error_ends_run_with_status_and_reason(store, tmp_path, error, status):
    with pytest.raises(type(error)), command_run("train-planes", tmp_path, {}, run_name="x") as run:
        raise error
    got = store.get_run(run.info.run_id)
    assert got.info.status == status
    assert got.data.tags["fbad.error"] == (str(error) or type(error).__name__)
    assert "images_skipped" not in got.data.metrics
    assert mlflow.active_run() is None
