"""The `fbad` console command and its `data` subcommands, run as a user runs them."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from helpers import fbad


def test_help_and_unknown_command(tmp_path):
    out = fbad("--help", cwd=tmp_path, subprocess_=True).stdout
    assert "train" in out and "data" in out
    bad = fbad("frobnicate", cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "unknown command 'frobnicate'" in bad.stderr


def test_data_phantom_then_index(tmp_path):
    out = tmp_path / "ph"
    fbad("data", "phantom", f"out={out}", "n_per_plane=5", "size=64", "seed=1", cwd=tmp_path)
    assert len(list((out / "Images").glob("*.png"))) == 15
    header = (out / "FETAL_PLANES_DB_data.csv").read_text().splitlines()[0]
    assert header == "Image_name;Patient_num;Plane;Brain_plane;Operator;US_Machine;Train "
    proc = fbad("data", "index", "dataset=phantom", f"dataset.root={out}", cwd=tmp_path)
    assert "phantom: 15 images, 0 skipped" in proc.stdout
    index = next((tmp_path / "outputs" / "data_index").glob("*/index.csv"))
    df = pd.read_csv(index)
    assert len(df) == 15 and df.plane.value_counts().to_dict() == {
        "trans_thalamic": 5, "trans_cerebellum": 5, "trans_ventricular": 5}
    assert set(df.fbad_split) <= {"train", "val", "test", "excluded"}


def test_data_index_real_fpdb_lists_missing_images(tmp_path, fpdb_index):
    root = tmp_path / "fpdb"
    (root / "Images").mkdir(parents=True)
    shutil.copy(fpdb_index, root)
    for name in ("Patient00168_Plane3_1_of_3", "Patient00168_Plane3_2_of_3"):
        (root / "Images" / f"{name}.png").write_bytes(b"")  # presence is all the index needs
    proc = fbad("data", "index", "dataset=fetal_planes_db", f"dataset.root={root}", cwd=tmp_path)
    assert "2 images, 2947 skipped" in proc.stdout
    run = next((tmp_path / "outputs" / "data_index").glob("*/"))
    skipped = pd.read_csv(run / "skipped.csv")
    assert len(skipped) == 2947 and set(skipped.reason) == {"named in the index but the file is missing"}
    assert "trans_thalamic" in proc.stdout


def test_data_index_bad_root_is_a_clear_error(tmp_path):
    proc = fbad("data", "index", "dataset=hc18", f"dataset.root={tmp_path / 'nowhere'}", cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "dataset root not found" in proc.stderr


def test_train_multirun_logs_one_run_per_job(tmp_path):
    import mlflow

    fbad("train", "-m", "dataset.n_per_plane=12", "dataset.size=96", "preprocess.image_size=32",
         "model.widths=[8,16]", "model.latent_dim=8,16", "trainer.max_epochs=1", "planes=[trans_thalamic]",
         "progress=false", "++threshold.min_count=2", cwd=tmp_path)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["fbad"])
    parents = runs[runs["tags.mlflow.parentRunId"].isna()]
    assert sorted(parents["params.model.latent_dim"]) == ["16", "8"]
    assert set(runs.status) == {"FINISHED"} and len(runs) == 4


def test_calls_started_in_the_same_second_get_their_own_folders(tmp_path):
    """A job array: two calls must never write into one run folder."""
    from fbad.config import new_dir

    base = str(tmp_path / "train" / "2026-11-29_04-18-18")
    assert [new_dir(base) for _ in range(3)] == [base, base + "_2", base + "_3"]
    assert all((tmp_path / "train" / n).is_dir() for n in ("2026-11-29_04-18-18", "2026-11-29_04-18-18_2"))


def test_train_console_is_quiet_readable_at_80_columns_and_logs_progress(tmp_path):
    """Output to a pipe (not a terminal), as under nohup or a batch system: one progress line per epoch with
    elapsed and ETA, none of Lightning's tips, model summaries or known-harmless warnings, a summary table
    that fits 80 columns, and the direct link to the run."""
    import os
    import subprocess
    import sys

    args = ["train", "dataset.n_per_plane=12", "dataset.size=96", "preprocess.image_size=32", "model.widths=[8,16]",
            "model.latent_dim=8", "trainer.max_epochs=2", "++threshold.min_count=2", "data.preprocess_workers=1"]
    env = {**os.environ, "FBAD_OUTPUTS": str(tmp_path / "outputs"), "COLUMNS": "80"}
    proc = subprocess.run([sys.executable, "-m", "fbad.cli", *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    for plane in ("trans_thalamic", "trans_cerebellum", "trans_ventricular"):
        assert f"{plane} epoch 2/2" in out and "ETA" in out  # a plain line per epoch and plane
        assert plane in proc.stdout.split("per-plane summary")[1]  # whole names in the table, never cut
    assert "Tip:" not in out and "litlogger" not in out and "LeafSpec" not in out
    assert "Total params" not in out and "| Name" not in out  # no per-plane model summary
    table = proc.stdout.split("per-plane summary")[1].split("MLflow run")[0]
    assert max(len(line) for line in table.splitlines()) <= 80
    assert "…" not in table
    assert "#/experiments/" in proc.stdout and "/runs/" in proc.stdout
    log = next((tmp_path / "outputs" / "train").glob("*/train.log")).read_text()
    assert "trans_thalamic epoch 2/2" in log  # the run's log file holds the progress too
    verbose = subprocess.run([sys.executable, "-m", "fbad.cli", *args, "verbose=true", "planes=[trans_thalamic]"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert verbose.returncode == 0 and "Total params" in verbose.stdout + verbose.stderr


def test_cli_resume_with_two_planes_and_early_stopping_skips_the_finished_plane(tmp_path, monkeypatch):
    """`fbad train` stopped (Ctrl-C) in its second plane, then `fbad train resume=true` as a user types them:
    the finished plane is not retrained (same weights file, same curve), the second continues from its
    checkpoint under early stopping, both end in the same MLflow runs."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from fbad import cli

    args = ["train", "dataset.n_per_plane=20", "dataset.size=96", "preprocess.image_size=32", "model.widths=[8,16]",
            "model.latent_dim=8", "trainer.max_epochs=6", "early_stopping.patience=2", "++threshold.min_count=2",
            "data.batch_size=8", "data.preprocess_workers=1", "progress=false",
            "planes=[trans_thalamic,trans_cerebellum]",
            "+callbacks.stop={_target_: helpers.InterruptAfter, epochs: 2, plane: trans_cerebellum, env: FBAD_STOP}"]
    monkeypatch.setenv("FBAD_STOP", "1")
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        cli.main(args)
    run_dir = next((tmp_path / "outputs" / "train").glob("*/"))
    done = (run_dir / "trans_thalamic" / "model.pt").read_bytes()
    written = (run_dir / "trans_thalamic" / "model.pt").stat().st_mtime_ns
    assert not (run_dir / "trans_cerebellum" / "model.pt").exists()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    client = MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("fbad").experiment_id])
    child = {r.data.tags["plane"]: r for r in runs if "plane" in r.data.tags}
    tt_curve = [m.value for m in client.get_metric_history(child["trans_thalamic"].info.run_id, "val_mse")]

    monkeypatch.delenv("FBAD_STOP")
    cli.main(["train", "resume=true"])
    assert (run_dir / "trans_thalamic" / "model.pt").read_bytes() == done  # not retrained, not even rewritten
    assert (run_dir / "trans_thalamic" / "model.pt").stat().st_mtime_ns == written
    runs2 = client.search_runs([client.get_experiment_by_name("fbad").experiment_id])
    assert {r.info.run_id for r in runs2} == {r.info.run_id for r in runs}  # the same runs, continued
    assert {r.info.status for r in runs2} == {"FINISHED"}
    assert [m.value for m in client.get_metric_history(child["trans_thalamic"].info.run_id, "val_mse")] == tt_curve
    tc = client.get_metric_history(child["trans_cerebellum"].info.run_id, "val_mse")
    steps = sorted(m.step for m in tc)
    assert steps == list(range(steps[0], steps[0] + len(steps))) and len(steps) > 2  # one value per epoch, no repeat
    assert (run_dir / "trans_cerebellum" / "model.pt").is_file()
