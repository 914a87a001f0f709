"""`fbad benchmark` end to end on tiny real suites: a handful of real HC18 and Roboflow frames (copied into the
layout each reader expects), lesions formed in their test heads, the phantom; real config, real sqlite MLflow."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SHARED
from mlflow.tracking import MlflowClient

from fbad.benchmark.metrics import detection_figures, sensitivity_at_specificity
from fbad.config import compose


def _copy_rows(src_csv: Path, dst_dir: Path, names: list[str]) -> None:
    with open(src_csv, newline="") as f:
        rows = list(csv.reader(f))
    keep = [rows[0]] + [r for r in rows[1:] if r[0].strip() in names]
    dst_dir.mkdir(parents=True, exist_ok=True)
    with open(dst_dir / src_csv.name, "w", newline="") as f:
        csv.writer(f).writerows(keep)


@pytest.fixture(scope="module")
def tiny_real(tmp_path_factory) -> Path:
    """A few real frames of each set, in the sets' own layouts."""
    if not (SHARED / "hc18").is_dir() or not (SHARED / "roboflow_abnormalities").is_dir():
        pytest.skip(f"reference data not found at {SHARED}")
    root = tmp_path_factory.mktemp("real")
    hc = SHARED / "hc18"
    train = sorted(p.name for p in (hc / "images").glob("*_HC.png"))[:8]
    (root / "hc18" / "images").mkdir(parents=True)
    for name in train:
        shutil.copy(hc / "images" / name, root / "hc18" / "images" / name)
        shutil.copy(hc / "images" / name.replace(".png", "_Annotation.png"), root / "hc18" / "images")
    _copy_rows(hc / "training_set_pixel_size_and_HC.csv", root / "hc18", train)
    test = sorted(p.name for p in (hc / "test_set").glob("*_HC.png"))[:6]
    (root / "hc18" / "test_set").mkdir(parents=True)
    for name in test:
        shutil.copy(hc / "test_set" / name, root / "hc18" / "test_set" / name)
    _copy_rows(hc / "test_set" / "test_set_pixel_size.csv", root / "hc18" / "test_set", test)
    rf = SHARED / "roboflow_abnormalities"
    for split, n_normal, n_abnormal in (("train", 8, 6), ("test", 4, 6)):
        with open(rf / split / "_classes.csv", newline="") as f:
            rows = list(csv.reader(f))
        normal = [r[0] for r in rows[1:] if r[0].startswith("Patient")][:n_normal]
        abnormal = [r[0] for r in rows[1:] if not r[0].startswith("Patient")][:: max(1, len(rows) // 40)][:n_abnormal]
        for name in normal + abnormal:
            (root / "roboflow_abnormalities" / split).mkdir(parents=True, exist_ok=True)
            shutil.copy(rf / split / name, root / "roboflow_abnormalities" / split / name)
        _copy_rows(rf / split / "_classes.csv", root / "roboflow_abnormalities" / split, normal + abnormal)
    (root / "fetal_planes_db").mkdir()
    shutil.copy(SHARED / "fetal_planes_db" / "FETAL_PLANES_DB_data.csv", root / "fetal_planes_db")
    return root


def test_sensitivity_at_specificity_and_per_class_auroc_on_known_scores():
    labels = np.array([0] * 10 + [1] * 10)
    scores = np.concatenate([np.arange(10), np.arange(10) + 5.5])  # abnormal 5.5..14.5, normal 0..9
    # specificity 0.9 lets 1 of 10 normals (9) be flagged: a threshold in (8, 8.5) flags 8.5..14.5 (7 of 10)
    assert sensitivity_at_specificity(scores, labels, 0.90) == pytest.approx(0.7)
    assert sensitivity_at_specificity(scores, labels, 1.0) == pytest.approx(0.6)  # above 9: 9.5..14.5
    classes = [None] * 10 + ["cyst"] * 5 + ["mass"] * 5
    flagged = scores > 9
    f = detection_figures(scores, labels, flagged, classes)
    assert f["sensitivity"] == pytest.approx(0.6) and f["specificity"] == 1.0
    assert f["f1"] == pytest.approx(2 * 6 / (2 * 6 + 0 + 4))
    # cyst scores 5.5..9.5 against normals 0..9: pairs won / 50
    wins = sum((c > n) for c in scores[10:15] for n in scores[:10])
    assert f["auroc/cyst"] == pytest.approx(wins / 50) and f["auroc/mass"] == 1.0


@pytest.mark.slow  # ~75 s: run by CI's second step (pytest -m slow)
def test_tiny_benchmark_on_real_suites(tiny_real, tmp_path):
    from fbad.benchmark.runner import run_benchmark

    out = tmp_path / "outputs"
    cfg = compose("benchmark", [
        f"paths.root={out}", f"real_data={tiny_real}", "suites=[real_abnormalities,lesions,phantom]",
        "methods=[image_stats,pca,conv_ae,patchcore,nsa,supervised]", "threshold.min_count=2", "workers=1",
        "supervised.epochs=2",
        "suite_defs.phantom.dataset.n_per_plane=8", "suite_defs.phantom.dataset.size=96",
        "train=['trainer.max_epochs=1','preprocess.image_size=32','data.preprocess_workers=1','data.epoch_samples=16']",
    ])
    run_dir = out / "benchmark" / "run"
    run_dir.mkdir(parents=True)
    results = run_benchmark(cfg, run_dir)

    table = pd.read_csv(run_dir / "benchmark.csv")
    methods = ("image_stats", "pca", "conv_ae", "patchcore", "nsa", "supervised")
    # the supervised bound needs abnormal training frames: lesions are formed in test frames only, so it skips
    assert list(zip(table["suite"], table["method"], strict=True)) == [
        (s, m) for s in ("real_abnormalities", "lesions", "phantom") for m in methods
        if (s, m) != ("lesions", "supervised")]
    assert table["auroc"].between(0, 1).all()
    assert (table.loc[table["method"] == "image_stats", "auroc_vs_image_stats"] == 0).all()
    for r in results:  # every test frame is scored or listed as failed, none lost
        n_test = len(pd.read_csv(run_dir / f"scores_{r.suite}_{r.method}.csv"))
        assert r.figures["n_normal"] + r.figures["n_abnormal"] + r.figures["n_failed"] == n_test
    # the lesion suite: lesions only in official-test frames, of fbad's kinds, with masks for pixel AUROC
    lesions = pd.read_csv(Path(cfg.suite_defs.lesions.dataset.root) / "index.csv")
    assert set(lesions.loc[lesions["label"] == "abnormal", "split"]) == {"test"}
    conv = next(r for r in results if (r.suite, r.method) == ("lesions", "conv_ae"))
    assert 0 <= conv.figures["pixel_auroc"] <= 1
    assert any(k.startswith("auroc/") for k in conv.figures)
    real = next(r for r in results if (r.suite, r.method) == ("real_abnormalities", "image_stats"))
    assert real.figures["n_abnormal"] == 6 and real.figures["n_normal"] == 4

    client = MlflowClient(cfg.paths.mlflow_uri)
    exp = client.get_experiment_by_name("benchmark")
    runs = client.search_runs([exp.experiment_id])
    parent = [r for r in runs if r.data.tags.get("fbad.command") == "benchmark" and "fbad.role" not in r.data.tags]
    pairs = [r for r in runs if r.data.tags.get("fbad.role") == "pair"]
    assert len(parent) == 1 and len(pairs) == 18  # a training's own per-plane run nests below its pair
    skipped = [r for r in pairs if "fbad.skipped" in r.data.tags]
    assert [r.data.tags["fbad.method"] + "@" + r.data.tags["fbad.suite"] for r in skipped] == ["supervised@lesions"]
    # every trained method shows its worst normal frames and missed abnormal ones, with their maps
    for m in ("pca", "conv_ae", "patchcore", "nsa"):
        assert (run_dir / f"examples_real_abnormalities_{m}.png").is_file()
    assert all(r.info.status == "FINISHED" for r in runs)
    assert all(r.data.tags["mlflow.parentRunId"] == parent[0].info.run_id for r in pairs)
    assert "real_abnormalities/conv_ae/auroc" in parent[0].data.metrics
    assert {a.path for a in client.list_artifacts(parent[0].info.run_id)} >= {
        "benchmark.csv", "benchmark.md", "per_class.csv", "roc_lesions.png"}


def test_unknown_suite_or_method_is_a_clear_error(tmp_path):
    from fbad.benchmark.runner import run_benchmark
    from fbad.errors import UserError

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    cfg = compose("benchmark", [f"paths.root={tmp_path}", "methods=[image_stats,nope]"])
    with pytest.raises(UserError, match=r"unknown method\(s\) \['nope'\]"):
        run_benchmark(cfg, run_dir)
    cfg = compose("benchmark", [f"paths.root={tmp_path}", "suites=[nope]", "methods=[image_stats]"])
    with pytest.raises(UserError, match="unknown suite 'nope'"):
        run_benchmark(cfg, run_dir)
    client = MlflowClient(cfg.paths.mlflow_uri)  # the call that failed ended its run FAILED, none left RUNNING
    runs = client.search_runs([client.get_experiment_by_name("benchmark").experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]


def test_lesions_reader_refuses_a_folder_that_is_not_a_lesion_dataset(tmp_path):
    from fbad.data.readers import read_dataset
    from fbad.errors import DatasetError

    with pytest.raises(DatasetError, match="index.csv not found: not a lesion dataset"):
        read_dataset({"name": "lesions", "root": str(tmp_path)})


def test_supervised_bound_trains_on_abnormal_frames_with_no_patient_on_two_sides(tiny_real, tmp_path):
    from fbad.benchmark.runner import suite_dataset
    from fbad.benchmark.supervised import supervised_data

    cfg = compose("benchmark", [f"paths.root={tmp_path}", f"real_data={tiny_real}", "workers=1"])
    tcfg = compose("train", [f"paths.root={tmp_path}", "preprocess.image_size=32"])
    prepared = supervised_data(cfg, suite_dataset(cfg, "real_abnormalities"), tcfg)
    s = prepared.splits
    assert {r.label.value for r in s.train} == {"normal", "abnormal"}  # what a one-class split would exclude
    assert not any(r.label.value == "abnormal" for r in s.excluded)
    sides = [{r.patient_id for r in part} for part in (s.train, s.val, s.test)]
    assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
    # the same validation and test frames as every one-class method of the suite
    from fbad.benchmark.runner import suite_splits

    one_class = suite_splits(suite_dataset(cfg, "real_abnormalities"), float(cfg.val_fraction), int(cfg.seed))
    assert [r.path for r in one_class.test] == [r.path for r in s.test]
    assert [r.path for r in one_class.val] == [r.path for r in s.val]
