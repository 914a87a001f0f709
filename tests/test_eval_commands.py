"""`fbad eval-seg` and `fbad eval-enhance` end to end: tables, files and MLflow runs in a sqlite store."""

from __future__ import annotations

import json

import mlflow
from test_cli import fbad


def _metrics(tmp_path, experiment):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=[experiment])
    assert len(runs) == 1 and runs.status[0] == "FINISHED"
    return runs.iloc[0]


def test_eval_seg_on_hc18_and_phantom(tmp_path, hc18_root):
    proc = fbad("eval-seg", "dataset=hc18", f"dataset.root={hc18_root}", "segmentation=ellipse", "limit=6",
                "workers=1", "progress=false", cwd=tmp_path)
    assert "dice_mean" in proc.stdout and "6 images, 0 skipped" in proc.stdout
    run = _metrics(tmp_path, "eval-seg")
    for key in ("dice_mean", "hd_mm_mean", "hc_abs_err_mm_mean", "failure_rate"):
        assert key in run.index.str.removeprefix("metrics.").tolist()
    assert 0.5 < run["metrics.dice_mean"] <= 1.0
    out = next((tmp_path / "outputs" / "eval_seg").glob("*/"))
    assert (out / "overlays.png").stat().st_size > 1000
    assert json.loads((out / "summary.json").read_text())["n_images"] == 6

    fbad("eval-seg", "dataset=phantom", "dataset.n_per_plane=3", "dataset.size=128", "segmentation=seed",
         "workers=1", "progress=false", "logger.experiment=seg-phantom", cwd=tmp_path)
    run = _metrics(tmp_path, "seg-phantom")
    assert run["metrics.n_images"] == 9 and 0.0 <= run["metrics.dice_mean"] <= 1.0


def test_eval_enhance_on_phantom(tmp_path):
    fbad("eval-enhance", "dataset.n_per_plane=2", "dataset.size=64", "enhancement=bilateral", "workers=1",
         "progress=false", cwd=tmp_path)
    run = _metrics(tmp_path, "eval-enhance")
    assert run["metrics.n_images"] == 6
    for key in ("psnr_mean", "ssim_mean", "speckle_index_brain_mean", "cnr_brain_vs_skull_mean", "epi_mean"):
        assert f"metrics.{key}" in run.index
    out = next((tmp_path / "outputs" / "eval_enhance").glob("*/"))
    assert (out / "before_after.png").is_file()


def test_eval_enhance_needs_ground_truth(tmp_path, hc18_root):
    proc = fbad("eval-enhance", "dataset=hc18", f"dataset.root={hc18_root}", cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "no noise-free reference" in proc.stderr
