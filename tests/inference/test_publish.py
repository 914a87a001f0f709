"""`fbad publish` → Model Registry version with alias → load by models:/…@alias → served over HTTP."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

import mlflow
import numpy as np
import pandas as pd
import pytest
from helpers import fbad
from mlflow.tracking import MlflowClient

from fbad.inference.bundle import load_bundle
from fbad.inference.inputs import read_inputs
from fbad.inference.predictor import predict_records
from fbad.inference.publish import PublishError, best_run, publish


def _records(trained_run):
    cfg = {"name": "phantom", "root": str(trained_run.phantom), "n_per_plane": 20, "size": 96,
           "anomaly_fraction": 0.5}
    return read_inputs(None, cfg).records


@pytest.fixture(scope="module")
def published(trained_run, tmp_path_factory):
    """The tiny run published once through the CLI, as a user does it."""
    name = f"fbad-test-{uuid.uuid4().hex[:6]}"
    cwd = tmp_path_factory.mktemp("publish")
    env_root = trained_run.root
    from fbad.planes import PlaneNet
    from fbad.planes.classifier import make_weights
    from fbad.tracking.artifacts import save_weights_file

    classes = ["trans_thalamic", "trans_cerebellum", "trans_ventricular", "unsupported"]
    clf = save_weights_file(cwd / "plane_classifier.pt", make_weights(PlaneNet(4, (4, 8)), classes, 32, "fov", 0.5))
    proc = subprocess.run([sys.executable, "-m", "fbad.cli", "publish", f"experiment={trained_run.experiment}",
                           "metric=val_auroc_mean", f"name={name}", f"classifier={clf}"], cwd=cwd,
                          capture_output=True, text=True, env={**os.environ, "FBAD_OUTPUTS": str(env_root)},
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"as {name} version 1, alias @champion" in proc.stdout
    mlflow.set_tracking_uri(trained_run.mlflow_uri)
    return name


def test_publish_registers_version_alias_and_card(trained_run, published):
    client = MlflowClient(trained_run.mlflow_uri)
    mv = client.get_model_version_by_alias(published, "champion")
    assert str(mv.version) == "1"
    parent = next(r for r in client.search_runs(
        [client.get_experiment_by_name(trained_run.experiment).experiment_id],
        "tags.`fbad.command` = 'train'") if "plane" not in r.data.tags)
    assert mv.tags["fbad.source_run_id"] == parent.info.run_id
    for plane in ("trans_thalamic", "trans_cerebellum", "trans_ventricular"):
        assert f"| {plane} | " in mv.description
    assert "```yaml" in mv.description and parent.info.run_id in mv.description
    pub_run = client.get_run(mv.tags["fbad.publish_run_id"])
    assert "model_card.md" in {a.path for a in client.list_artifacts(pub_run.info.run_id)}


def test_publish_again_changes_nothing(trained_run, published, tmp_path):
    mlflow.set_tracking_uri(trained_run.mlflow_uri)
    live = MlflowClient().get_model_version_by_alias(published, "champion")
    again = publish(trained_run.experiment, "val_auroc_mean", None, published, "champion", tmp_path / "p",
                    classifier=live.tags["fbad.classifier"])
    assert not again.changed and str(again.version) == "1"
    assert len(MlflowClient().search_model_versions(f"name = '{published}'")) == 1


def test_publish_again_with_other_packaging_is_a_new_version(trained_run, tmp_path, monkeypatch):
    mlflow.set_tracking_uri(trained_run.mlflow_uri)
    monkeypatch.setenv("FBAD_SERVE_PATH_ROOT", str(trained_run.phantom))
    name = f"fbad-pack-{uuid.uuid4().hex[:6]}"
    first = publish(trained_run.experiment, "val_auroc_mean", None, name, "champion", tmp_path / "a", onnx=False)
    second = publish(trained_run.experiment, "val_auroc_mean", None, name, "champion", tmp_path / "b", onnx=True)
    assert first.changed and second.changed and str(second.version) == "2"
    assert MlflowClient().get_model_version_by_alias(name, "champion").tags["fbad.onnx"] == "True"
    # served without packaged ONNX files, backend=onnx exports them once and keeps them for later requests
    model = mlflow.pyfunc.load_model(f"models:/{name}/1")
    records = _records(trained_run)[:4]
    df = pd.DataFrame({"path": [str(r.path) for r in records], "plane": [str(r.plane) for r in records]})
    first_answer = model.predict(df, params={"backend": "onnx"})
    assert model.predict(df, params={"backend": "onnx"}).label.tolist() == first_answer.label.tolist()
    assert (first_answer.label != "failed").all(), first_answer.reason.tolist()


def test_publish_chooses_on_validation_by_the_metric_kind_and_never_an_oracle(trained_run, tmp_path):
    mlflow.set_tracking_uri(trained_run.mlflow_uri)
    exp = f"choose-{uuid.uuid4().hex[:6]}"
    mlflow.set_experiment(exp)
    ids = {}
    for tag, seg, auroc, mse in (("oracle", "ground_truth", 0.99, 0.001), ("good", "ellipse", 0.95, 0.002),
                                 ("worse", "ellipse", 0.90, 0.003)):
        with mlflow.start_run() as run:
            mlflow.set_tag("fbad.command", "train")
            mlflow.log_param("segmentation.name", seg)
            mlflow.log_metrics({"val_auroc_mean": auroc, "best_val_mse_mean": mse, "test_auroc_mean": auroc})
            ids[tag] = run.info.run_id
    client = MlflowClient()
    assert best_run(client, exp, "val_auroc_mean").info.run_id == ids["good"]  # the oracle is passed over
    assert best_run(client, exp, "best_val_mse_mean").info.run_id == ids["good"]  # lowest loss, inferred
    assert best_run(client, exp, "best_val_mse_mean", "max").info.run_id == ids["worse"]
    with pytest.raises(PublishError, match="chooses the model on its test split"):
        publish(exp, "test_auroc_mean", None, "never", "champion", tmp_path / "p")
    with pytest.raises(PublishError, match="missing: config.yaml"):  # allowed: it gets as far as the run's files
        publish(exp, "test_auroc_mean", None, "never", "champion", tmp_path / "p", allow_test=True)


def test_published_model_predicts_like_the_source_run(trained_run, published, tmp_path, monkeypatch):
    mlflow.set_tracking_uri(trained_run.mlflow_uri)
    monkeypatch.setenv("FBAD_SERVE_PATH_ROOT", str(trained_run.phantom))  # path rows served from there only
    records = _records(trained_run)
    source = predict_records(load_bundle(trained_run.run_dir), records, workers=1, progress=False).table
    registry = load_bundle(f"models:/{published}@champion", download_dir=tmp_path)
    assert all(pm.onnx_path is not None for pm in registry.planes.values())  # ONNX travels with the model
    assert registry.classifier_path is not None and registry.classifier_path.is_file()
    from_registry = predict_records(registry, records, workers=1, progress=False).table
    pd.testing.assert_series_equal(source.label, from_registry.label)
    np.testing.assert_allclose(source.score, from_registry.score, rtol=0, atol=0)
    model = mlflow.pyfunc.load_model(f"models:/{published}@champion")
    df = pd.DataFrame({"path": [str(r.path) for r in records[:6]], "plane": [str(r.plane) for r in records[:6]]})
    served = model.predict(df)
    assert served.label.tolist() == source.label[:6].tolist()
    odd = pd.DataFrame({"path": [str(records[0].path)] * 2, "plane": ["brain", str(records[0].plane)]})
    rows = model.predict(odd)  # a bad plane fails its own row, not the request
    assert rows.label.tolist() == ["failed", source.label[0]] and "unknown plane 'brain'" in rows.reason[0]


def test_served_paths_are_refused_unless_inside_the_allowed_root(trained_run, published, tmp_path, monkeypatch):
    """A client must not read the server's files nor learn whether one exists: `path` rows are refused by
    default, and with FBAD_SERVE_PATH_ROOT only paths resolving inside it (symlinks followed) are served."""
    mlflow.set_tracking_uri(trained_run.mlflow_uri)
    inside = _records(trained_run)[0].path
    outside = tmp_path / "secret.png"
    outside.write_bytes(inside.read_bytes())  # a real image, outside the allowed folder
    link = trained_run.phantom / "link_out.png"
    link.symlink_to(outside)
    try:
        probes = [str(inside), str(outside), str(tmp_path / "missing.png"), str(link),
                  str(trained_run.phantom / ".." / outside.name)]
        monkeypatch.delenv("FBAD_SERVE_PATH_ROOT", raising=False)
        closed = mlflow.pyfunc.load_model(f"models:/{published}@champion").predict(pd.DataFrame({"path": probes}))
        assert closed.label.tolist() == ["failed"] * 5 and closed.reason.nunique() == 1  # no existence oracle
        assert "FBAD_SERVE_PATH_ROOT" in closed.reason[0] and closed.score.isna().all()
        monkeypatch.setenv("FBAD_SERVE_PATH_ROOT", str(trained_run.phantom))
        served = mlflow.pyfunc.load_model(f"models:/{published}@champion").predict(pd.DataFrame({"path": probes}))
        assert served.label[0] != "failed"  # inside the root
        assert served.label[1:].tolist() == ["failed"] * 4 and served.reason[1:].nunique() == 1  # incl. symlink, ..
        assert "outside the folder" in served.reason[1]
    finally:
        link.unlink()


def test_served_request_limits_and_malformed_rows(trained_run, published, monkeypatch):
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(trained_run.mlflow_uri)
    monkeypatch.setenv("FBAD_SERVE_MAX_ROWS", "3")
    monkeypatch.setenv("FBAD_SERVE_MAX_IMAGE_BYTES", "100000")
    model = mlflow.pyfunc.load_model(f"models:/{published}@champion")
    good = base64.b64encode(_records(trained_run)[0].path.read_bytes()).decode()
    assert len(good) * 3 // 4 < 100000
    with pytest.raises(MlflowException, match="4 rows in one request; this server takes at most 3"):
        model.predict(pd.DataFrame({"image": [good] * 4}))
    with pytest.raises(MlflowException, match="needs an 'image'"):
        model.predict(pd.DataFrame({"picture": [good]}))
    big = base64.b64encode(b"\0" * 100_001).decode()
    rows = model.predict(pd.DataFrame({"image": [good, "%%not base64%%", big]}))
    assert rows.label[0] != "failed" and rows.label[1:].tolist() == ["failed", "failed"]
    assert "not base64" in rows.reason[1] and "at most 100000" in rows.reason[2]
    monkeypatch.setenv("FBAD_SERVE_MAX_ROWS", "zero")
    with pytest.raises(ValueError, match="whole numbers"):
        mlflow.pyfunc.load_model(f"models:/{published}@champion")


def test_publish_refuses_missing_artifacts_and_unknown_experiment(trained_run, tmp_path):
    mlflow.set_tracking_uri(trained_run.mlflow_uri)
    exp = f"broken-{uuid.uuid4().hex[:6]}"
    mlflow.set_experiment(exp)
    with mlflow.start_run():
        mlflow.set_tag("fbad.command", "train")
        mlflow.log_metric("val_auroc_mean", 0.99)
    with pytest.raises(PublishError, match=r"missing: config\.yaml .*per-plane child runs"):
        publish(exp, "val_auroc_mean", "max", "never", "champion", tmp_path / "p")
    with pytest.raises(PublishError, match="no MLflow experiment named 'nope'"):
        publish("nope", "val_auroc_mean", "max", "never", "champion", tmp_path / "p")
    with pytest.raises(PublishError, match="no finished training run with metric 'nonexistent'"):
        publish(trained_run.experiment, "nonexistent", "max", "never", "champion", tmp_path / "p")
    proc = fbad("publish", "experiment=nope", cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "fbad: error: no MLflow experiment named 'nope'" in proc.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlflow_models_serve_answers_on_loopback(trained_run, published):
    port = _free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": trained_run.mlflow_uri}
    server = subprocess.Popen(["mlflow", "models", "serve", "-m", f"models:/{published}@champion",
                               "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    log = server.stderr.read() if server.poll() is not None else ""
                    raise AssertionError(f"server did not start: {log}") from None
                time.sleep(0.5)
        records = _records(trained_run)[:2]
        body = {"dataframe_records": [
            {"image": base64.b64encode(r.path.read_bytes()).decode(), "plane": str(r.plane)} for r in records]}
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        answer = json.loads(urllib.request.urlopen(req, timeout=60).read())["predictions"]
        local = predict_records(load_bundle(trained_run.run_dir), records, workers=1, progress=False).table
        assert [a["label"] for a in answer] == local.label.tolist()
        assert [a["plane"] for a in answer] == local.plane.tolist()
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_load_script_answers_every_request_and_survives_malformed_ones(trained_run, published, tmp_path):
    """benchmarks/bench_serve.py, small: concurrent clients for a few seconds, then each malformed request."""
    from pathlib import Path

    images = tmp_path / "frames"
    images.mkdir()
    for r in _records(trained_run)[:6]:
        (images / r.path.name).write_bytes(r.path.read_bytes())
    script = Path(__file__).parents[2] / "benchmarks" / "bench_serve.py"
    proc = subprocess.run([sys.executable, str(script), "--model", f"models:/{published}@champion",
                           "--images", str(images), "--plane", "trans_thalamic", "--clients", "3", "--seconds", "4",
                           "--per-request", "2", "--json", str(tmp_path / "load.json")],
                          env={**os.environ, "MLFLOW_TRACKING_URI": trained_run.mlflow_uri},
                          capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    figures = json.loads((tmp_path / "load.json").read_text())
    assert figures["sent"] >= 3 and figures["lost"] == 0 and figures["answered_200"] == figures["sent"]
    assert figures["alive"] and {b["request"] for b in figures["malformed"]} >= {"bad base64", "too many rows"}
    assert all(b["ok"] for b in figures["malformed"]), figures["malformed"]
    assert "latency p50" in proc.stdout
