"""`fbad predict` and `fbad export` on a real tiny training run: inputs, plane routing, backends, safety."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from helpers import fbad
from mlflow.tracking import MlflowClient

from fbad.data.records import Plane
from fbad.errors import DatasetError
from fbad.inference.backends import onnx_max_abs_diff
from fbad.inference.bundle import ModelSourceError, load_bundle
from fbad.inference.inputs import read_inputs
from fbad.inference.overlays import inside, safe_name
from fbad.inference.predictor import predict_records

PLANES = {"trans_thalamic", "trans_cerebellum", "trans_ventricular"}


def _images(trained_run, n: int) -> list[Path]:
    return sorted((trained_run.phantom / "Images").glob("*.png"))[:n]


def _phantom(trained_run) -> dict:
    return {"name": "phantom", "root": str(trained_run.phantom), "n_per_plane": 20, "size": 96,
            "anomaly_fraction": 0.5}


def _plane_of(trained_run) -> dict[str, str]:
    index = pd.read_csv(trained_run.phantom / "FETAL_PLANES_DB_data.csv", sep=";")
    return {f"{n}.png": str(Plane.parse(p)) for n, p in zip(index.Image_name, index.Brain_plane, strict=True)}


def test_predict_cli_on_dataset_index(trained_run, tmp_path):
    proc = fbad("predict", f"model={trained_run.run_dir}", "dataset=phantom", *trained_run.data_overrides,
                "progress=false", "overlays=4", cwd=tmp_path, subprocess_=True)  # the console command, once
    out = next((tmp_path / "outputs" / "predict").glob("*/"))
    pred = pd.read_csv(out / "predictions.csv")
    assert len(pred) == 60  # every image has a row, failures included
    assert set(pred.plane_source) == {"index"} and set(pred.plane) == PLANES
    scored = pred[pred.label.isin(["normal", "abnormal"])]
    assert len(scored) >= 50 and scored.score.notna().all()
    assert (scored.label == np.where(scored.score > scored.threshold, "abnormal", "normal")).all()
    failed = pred[pred.label == "failed"]  # phantom frames where no head was found: each listed, with the reason
    skipped = pd.read_csv(out / "skipped.csv") if (out / "skipped.csv").is_file() else pd.DataFrame(
        {"path": [], "reason": []})
    assert set(failed.path) == set(skipped.path) and (skipped.reason.str.len() > 0).all()
    summary = pd.read_csv(out / "summary.csv").set_index("plane")
    assert summary.loc["all", "total"] == 60 and summary.loc["all", "abnormal"] == (pred.label == "abnormal").sum()
    assert "trans_thalamic" in proc.stdout and "abnormal" in proc.stdout
    assert len(list((out / "overlays").glob("*.png"))) == min(4, (pred.label == "abnormal").sum())
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    client = MlflowClient()
    run = client.search_runs([client.get_experiment_by_name("fbad-predict").experiment_id])[0]
    assert run.data.metrics["images"] == 60 and run.data.tags["fbad.command"] == "predict"
    assert "predictions.csv" in {a.path for a in client.list_artifacts(run.info.run_id)}


def test_predict_folder_with_known_and_unknown_planes(trained_run, tmp_path):
    images = _images(trained_run, 6)
    folder = tmp_path / "in"
    (folder / "trans_thalamic").mkdir(parents=True)
    for img in images[:3]:
        shutil.copy(img, folder / "trans_thalamic" / img.name)  # the folder names the plane
    for img in images[3:]:
        shutil.copy(img, folder / img.name)  # no plane folder: unknown plane
    (folder / "trans_thalamic" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    read = read_inputs(folder)
    pred = predict_records(load_bundle(trained_run.run_dir), read.records, workers=1, progress=False).table
    pred["name"] = pred.path.map(lambda p: Path(p).name)
    pred = pred.set_index("name")
    assert (pred.loc[[i.name for i in images[:3]], "plane"] == "trans_thalamic").all()
    assert (pred.loc[[i.name for i in images[:3]], "plane_source"] == "index").all()
    unknown = pred.loc[[i.name for i in images[3:]]]
    assert (unknown.label == "unsupported_plane").all() and unknown.reason.str.contains("no plane classifier").all()
    assert pred.loc["broken.png", "label"] == "failed" and pred.loc["broken.png", "reason"]


def test_predict_csv_and_single_image(trained_run, tmp_path):
    planes = _plane_of(trained_run)
    images = _images(trained_run, 3)
    csv = tmp_path / "list.csv"
    rows = [f"{images[0]},{planes[images[0].name]}", f"{images[1]},other", f"{images[2]},",
            f"{tmp_path / 'missing.png'},trans_thalamic"]
    csv.write_text("path,plane\n" + "\n".join(rows) + "\n")
    read = read_inputs(csv)
    assert [r for r, _ in read.skipped.rows] == [str(tmp_path / "missing.png")]  # listed, not dropped
    pred = predict_records(load_bundle(trained_run.run_dir), read.records, workers=1, progress=False).table
    assert pred.plane.tolist()[:2] == [planes[images[0].name], "other"]
    assert pred.label.tolist()[1:] == ["unsupported_plane", "unsupported_plane"]
    assert "not one the model covers" in pred.reason[1]
    one = read_inputs(images[0])
    assert len(one.records) == 1 and one.records[0].path == images[0].resolve()
    with pytest.raises(DatasetError, match="not an image"):
        read_inputs(csv.with_suffix(".txt"))


def test_onnx_backend_matches_torch(trained_run, tmp_path):
    bundle = load_bundle(trained_run.run_dir)
    records = read_inputs(None, _phantom(trained_run)).records
    torch_pred = predict_records(bundle, records, "torch", workers=1, progress=False).table
    onnx_pred = predict_records(bundle, records, "onnx", onnx_dir=tmp_path / "onnx", workers=1, progress=False).table
    assert (torch_pred.label == onnx_pred.label).all()
    assert np.nanmax(np.abs(torch_pred.score - onnx_pred.score)) < 1e-5
    x = np.random.default_rng(0).random((8, 1, bundle.image_size, bundle.image_size), np.float32)
    for plane, pm in bundle.planes.items():
        assert onnx_max_abs_diff(pm.module, pm.onnx_path, x) <= 1e-4, plane


def test_export_cli_writes_checked_onnx_bundle(trained_run, tmp_path):
    proc = fbad("export", f"model={trained_run.run_dir}", cwd=tmp_path)
    assert "max_abs_diff" in proc.stdout
    out = next((tmp_path / "outputs" / "export").glob("*/"))
    bundle = load_bundle(out / "bundle")
    assert set(bundle.planes) == PLANES and all(pm.onnx_path.is_file() for pm in bundle.planes.values())


def test_a_plane_model_is_named_by_its_own_plane(trained_run, tmp_path):
    """A plane model copied under another folder name, or given as the file itself, keeps its plane."""
    (tmp_path / "model").mkdir()
    shutil.copy(trained_run.run_dir / "trans_cerebellum" / "model.pt", tmp_path / "model" / "model.pt")
    assert set(load_bundle(tmp_path).planes) == {"trans_cerebellum"}
    assert set(load_bundle(trained_run.run_dir / "trans_thalamic" / "model.pt").planes) == {"trans_thalamic"}


def test_models_refuse_a_segmenter_retrained_under_the_same_name(trained_run, tmp_path):
    from fbad.segmentation.learned.net import UNet
    from fbad.segmentation.learned.weights import save_weights, weights_digest

    torch.manual_seed(0)
    weights = save_weights(tmp_path / "segmenter.pt", UNet((4, 8)), (32, 48), ["a.png"])
    blob = torch.load(trained_run.run_dir / "trans_thalamic" / "model.pt", weights_only=True)
    blob["preprocess"]["segmentation"] = {"name": "learned", "weights": str(weights)}
    blob["segmenter_sha256"] = weights_digest(weights)  # as training records it
    (tmp_path / "run" / "trans_thalamic").mkdir(parents=True)
    torch.save(blob, tmp_path / "run" / "trans_thalamic" / "model.pt")
    assert load_bundle(tmp_path / "run").segmenter_sha256 == blob["segmenter_sha256"]
    torch.manual_seed(1)
    save_weights(weights, UNet((4, 8)), (32, 48), ["a.png"])  # retrained into the same file
    with pytest.raises(ModelSourceError, match="no longer the segmenter these models were trained with"):
        load_bundle(tmp_path / "run")


def test_export_failing_the_check_writes_no_bundle(trained_run, tmp_path):
    proc = fbad("export", f"model={trained_run.run_dir}", "tolerance=-1", cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "ONNX export differs from PyTorch" in proc.stderr
    out = next((tmp_path / "outputs" / "export").glob("*/"))
    assert not (out / "bundle").exists()


def test_bundle_carries_the_learned_segmenter(trained_run, tmp_path):
    """A model trained on `segmentation=learned` must predict where its segmenter's path or URI means nothing."""
    from fbad.inference.bundle import write_bundle
    from fbad.segmentation.learned.net import UNet
    from fbad.segmentation.learned.weights import save_weights

    weights = save_weights(tmp_path / "seg" / "segmenter.pt", UNet((4, 8)), (32, 48), ["a.png"])
    bundle = load_bundle(trained_run.run_dir)
    bundle.preprocess = {**bundle.preprocess, "segmentation": {"name": "learned", "weights": str(weights)}}
    out = write_bundle(bundle, tmp_path / "bundle")
    original = weights.read_bytes()
    shutil.rmtree(weights.parent)  # the training machine's file is gone

    moved = load_bundle(out)
    carried = Path(moved.preprocess["segmentation"]["weights"])
    assert carried.parent == out and carried.read_bytes() == original
    records = read_inputs(None, _phantom(trained_run)).records[:3]
    pred = predict_records(moved, records, workers=1, progress=False).table
    assert len(pred) == 3 and set(pred.label) <= {"normal", "abnormal", "failed"}  # segmented, or listed: no crash
    assert not pred.reason.str.contains("segmentation weights").any()


class _RunsCode:
    """A pickle that would create a file when unpickled without weights_only."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpoint_with_code_is_refused(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run.run_dir, run, ignore=shutil.ignore_patterns("checkpoints"))
    marker = tmp_path / "code-ran"
    blob = torch.load(run / "trans_thalamic" / "model.pt", weights_only=True)
    torch.save({**blob, "payload": _RunsCode(marker)}, run / "trans_thalamic" / "model.pt")
    with pytest.raises(ModelSourceError, match="not a loadable fbad plane model"):
        load_bundle(run)
    assert not marker.exists()


def test_bad_model_uris_are_clear_errors(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    for uri in ("runs:/0123456789abcdef", "models:/nobody@champion", str(tmp_path / "nowhere"), str(tmp_path)):
        with pytest.raises(ModelSourceError, match=r"^model '"):
            load_bundle(uri)
    proc = fbad("predict", "model=models:/nobody@champion", f"input={tmp_path}", cwd=tmp_path, check=False)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("fbad: error: model 'models:/nobody@champion'")


def test_writes_stay_in_the_output_folder(trained_run, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for evil in ("../../etc/passwd", "..\\..\\x.png", "/abs/olute.png", "a b;rm -rf ~.png", "...png"):
        path = inside(out, safe_name(3, evil))
        assert path.parent == out.resolve()
    with pytest.raises(ValueError, match="outside"):
        inside(out, "../escape.png")
    # a real predict over an abnormal image whose name is full of path syntax: its overlay stays inside
    records = read_inputs(None, _phantom(trained_run)).records
    pred = predict_records(load_bundle(trained_run.run_dir), records, workers=1, progress=False).table
    abnormal = Path(pred.path[pred.label == "abnormal"].iloc[0])
    plane = pred.plane[pred.label == "abnormal"].iloc[0]
    weird = tmp_path / "in" / plane / "a..b ..;name%2F..%2F.png"
    weird.parent.mkdir(parents=True)
    shutil.copy(abnormal, weird)
    fbad("predict", f"model={trained_run.run_dir}", f"input={weird.parent.parent}", "overlays=8", "progress=false",
         cwd=tmp_path)
    overlays = list((tmp_path / "outputs" / "predict").glob("*/overlays/*.png"))
    assert len(overlays) == 1 and ".." not in overlays[0].name
    outside = {p for p in tmp_path.rglob("*") if not p.is_relative_to(tmp_path / "outputs")}
    assert outside == {tmp_path / "in", weird.parent, weird, out}


def test_predict_dataset_index_with_planes_the_model_does_not_cover(trained_run, tmp_path):
    """FETAL_PLANES_DB's brain `Other` and non-brain rows are reported, never forced into a plane."""
    root = tmp_path / "fpdb"
    root.mkdir()
    (root / "Images").symlink_to(trained_run.phantom / "Images")
    index = pd.read_csv(trained_run.phantom / "FETAL_PLANES_DB_data.csv", sep=";")
    index.loc[:4, "Brain_plane"] = "Other"
    index.loc[5:9, ["Plane", "Brain_plane"]] = ["Fetal abdomen", "Not A Brain"]
    index.to_csv(root / "FETAL_PLANES_DB_data.csv", sep=";", index=False)
    cfg = {"name": "fetal_planes_db", "root": str(root),
           "planes": ["trans_thalamic", "trans_cerebellum", "trans_ventricular", "other", "not_a_brain"]}
    read = read_inputs(None, cfg)
    pred = predict_records(load_bundle(trained_run.run_dir), read.records, workers=1, progress=False).table
    assert len(pred) == len(index) == 60
    assert (pred.plane == "other").sum() == 5 and (pred.plane == "not_a_brain").sum() == 5
    off = pred[pred.plane.isin(["other", "not_a_brain"])]
    assert (off.label == "unsupported_plane").all() and off.score.isna().all()
    brain = pred[pred.plane.isin(PLANES)]
    assert set(brain.label) <= {"normal", "abnormal", "failed"} and (brain.label != "failed").sum() >= 40


def test_unknown_planes_go_to_the_plane_classifier(trained_run, tmp_path):
    """Images with no plane are routed by the bundle's classifier; what it calls unsupported is not scored."""
    import cv2

    from fbad.inference.bundle import write_bundle
    from fbad.planes import PlaneClassifier, PlaneNet
    from fbad.planes.classifier import make_weights
    from fbad.tracking.artifacts import save_weights_file

    classes = ["trans_thalamic", "trans_cerebellum", "trans_ventricular", "unsupported"]
    torch.manual_seed(0)
    clf_path = save_weights_file(tmp_path / "plane_classifier.pt",
                                 make_weights(PlaneNet(4, (4, 8)), classes, 32, "fov", 0.0))
    bundle = load_bundle(trained_run.run_dir)
    bundle.classifier_path = clf_path
    bundle = load_bundle(write_bundle(bundle, tmp_path / "bundle"))  # the classifier travels in the bundle
    assert bundle.classifier_path.name == "plane_classifier.pt"
    folder = tmp_path / "in"
    folder.mkdir()
    images = _images(trained_run, 6)
    for img in images:
        shutil.copy(img, folder / img.name)
    cv2.imwrite(str(folder / "zz_blank.png"), np.zeros((96, 96), np.uint8))  # no fan, no head
    pred = predict_records(bundle, read_inputs(folder).records, workers=1, progress=False).table
    expected = PlaneClassifier.load(clf_path).predict([cv2.imread(str(i), cv2.IMREAD_GRAYSCALE) for i in images])
    assert (pred.plane_source == "classifier").all()
    assert pred.plane[:6].tolist() == [p for p, _ in expected]
    np.testing.assert_allclose(pred.plane_confidence[:6], [c for _, c in expected], rtol=1e-5)
    head = pred[:6][pred.plane[:6] != "unsupported"]
    assert set(head.label) <= {"normal", "abnormal", "failed"}
    blank = pred.iloc[6]
    assert blank.plane == "unsupported" and blank.label == "unsupported_plane"
    assert "not a supported plane" in blank.reason and np.isnan(blank.score)


def test_plane_forces_every_input_and_unrouted_frames_get_one_hint(trained_run, tmp_path):
    from fbad.errors import UserError
    from fbad.inference.predictor import unrouted_hint

    folder = tmp_path / "plain"
    folder.mkdir()
    images = _images(trained_run, 4)
    for img in images:
        shutil.copy(img, folder / img.name)  # a plain folder: no plane anywhere
    bundle = load_bundle(trained_run.run_dir)
    records = read_inputs(folder).records
    plain = predict_records(bundle, records, workers=1, progress=False).table
    assert (plain.label == "unsupported_plane").all()
    hint = unrouted_hint(plain, bundle)
    assert hint.startswith("4 of 4 images have no plane") and "plane=<trans_cerebellum|" in hint
    forced = predict_records(bundle, records, workers=1, progress=False, plane="Trans-thalamic").table
    assert (forced.plane == "trans_thalamic").all() and (forced.plane_source == "forced").all()
    assert set(forced.label) <= {"normal", "abnormal", "failed"} and (forced.label != "failed").sum() >= 3
    assert unrouted_hint(forced, bundle) is None
    # the forced plane's own model scores them: the same scores as when an index names that plane
    (folder / "trans_thalamic").mkdir()
    for img in images:
        shutil.move(folder / img.name, folder / "trans_thalamic" / img.name)
    indexed = predict_records(bundle, read_inputs(folder).records, workers=1, progress=False).table
    np.testing.assert_allclose(np.sort(indexed.score.dropna()), np.sort(forced.score.dropna()))
    with pytest.raises(UserError, match="unknown plane"):
        predict_records(bundle, records, workers=1, progress=False, plane="sagittal")
    with pytest.raises(UserError, match="has no other model"):
        predict_records(bundle, records, workers=1, progress=False, plane="other")


def test_predicting_loads_neither_lightning_nor_scikit_learn(trained_run, tmp_path):
    """Start-up of predict and serving: a trained bundle loads and labels frames with torch alone (Lightning and
    scikit-learn cost about 2.3 s and 0.7 s of imports on 2 cores, and inference uses neither)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from fbad.data.readers import read_dataset\n"
        "from fbad.inference.bundle import load_bundle\n"
        "from fbad.inference.predictor import predict_records\n"
        f"bundle = load_bundle({str(trained_run.run_dir)!r})\n"
        f"records = read_dataset({{'name': 'phantom', 'root': {str(trained_run.phantom)!r}}}).records[:6]\n"
        "table = predict_records(bundle, records, workers=1, progress=False).table\n"
        "assert len(table) == 6 and table.label.isin(['normal', 'abnormal']).sum() >= 5, table\n"
        "heavy = ('pytorch_lightning', 'lightning_fabric', 'sklearn')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
