"""The plane classifier: input preparation, the phantom's negatives, `fbad train-planes` on a small phantom
through the real config into a real sqlite MLflow store, loading by path and by `runs:/` URI, `unsupported`
answers, weights-only loading and a bad image skipped and listed."""

from __future__ import annotations

import shutil
import sys
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from fbad.config import compose
from fbad.data.phantom import PhantomConfig, generate_sample
from fbad.data.phantom.negatives import NEGATIVE_KINDS, generate_negative, write_negatives
from fbad.data.readers.fetal_planes_db import read_fetal_planes_db
from fbad.data.records import BRAIN_PLANES, Plane
from fbad.planes import UNSUPPORTED, PlaneClassifier, PlaneNet, prepare_frame, prepare_input
from fbad.planes.classifier import make_weights
from fbad.planes.data import balanced_weights
from fbad.tracking.artifacts import save_weights_file
from fbad.training.planes import evaluate, run_train_planes

CLASSES = [p.value for p in BRAIN_PLANES] + [UNSUPPORTED]
# small but learnable in ~10 s: 100 images per class at 128 px, 48 px network input, 15 epochs (about 0.7 held-out
# accuracy; the default config reaches 0.98 on the full phantom)
EPOCHS = 15
TINY = ["dataset.n_per_plane=100", "dataset.size=128", "unsupported.phantom_negatives=100", "input.size=48",
        "model.widths=[8,16,32,64]", "model.convs_per_block=2", f"trainer.max_epochs={EPOCHS}", "data.batch_size=16",
        "data.workers=1", "progress=false", "threads=1"]


def test_prepare_frame_is_pure_and_fixed_size():
    img = generate_sample("trans_thalamic", 1, PhantomConfig(size=128)).image
    before = img.copy()
    a, b = prepare_frame(img, 64), prepare_frame(img, 64)
    assert a.dtype == np.uint8 and a.shape == (64, 64)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(img, before)
    wide = np.zeros((540, 800), np.uint8)
    wide[100:500, 200:600] = 120  # a "fan" inside a larger black frame with text outside it
    wide[5:15, 5:60] = 255
    out = prepare_frame(wide, 32)
    assert out.max() == 120 and out[16, 0] == out[16, -1] == 120  # cropped to the fan, the text zeroed
    assert prepare_frame(wide, 32, crop="frame")[0, :3].min() > 0  # the whole frame: text kept
    x = prepare_input(img, 48)
    assert x.shape == (1, 48, 48) and x.dtype == torch.float32 and 0 <= float(x.min()) <= float(x.max()) <= 1


@pytest.mark.parametrize("bad, match", [(np.zeros((4, 4), np.uint8), "too small"),
                                        (np.zeros((2, 3, 4, 5), np.uint8), "2-D gray"),
                                        (np.zeros(100, np.uint8), "2-D gray")])
def test_prepare_frame_rejects_non_images(bad, match):
    with pytest.raises(ValueError, match=match):
        prepare_frame(bad)


def test_negatives_are_deterministic_and_read_as_unsupported(tmp_path):
    cfg = PhantomConfig(size=96)
    for kind in NEGATIVE_KINDS:
        np.testing.assert_array_equal(generate_negative(kind, 5, cfg), generate_negative(kind, 5, cfg))
    assert not np.array_equal(generate_negative("abdomen", 5, cfg), generate_negative("abdomen", 6, cfg))
    with pytest.raises(ValueError, match="unknown negative kind"):
        generate_negative("heart", 0, cfg)
    root = write_negatives(tmp_path / "neg", 8, cfg, seed=1, workers=1)
    assert len(read_fetal_planes_db(root).records) == 0  # the default (brain planes) reader sees none of them
    recs = read_fetal_planes_db(root, planes=("other", "not_a_brain")).records
    assert len(recs) == 8 and {r.plane for r in recs} == {Plane.OTHER, Plane.NOT_BRAIN}


def test_evaluate_and_class_weights():
    truth = ["trans_thalamic", "trans_thalamic", "unsupported", "trans_cerebellum"]
    answers = [("trans_thalamic", 0.9), ("unsupported", 0.6), ("unsupported", 0.8), ("trans_cerebellum", 0.7)]
    metrics, cm = evaluate(truth, answers, ["trans_thalamic", "trans_cerebellum", "unsupported"])
    assert metrics["accuracy"] == 0.75 and metrics["f1_trans_cerebellum"] == 1.0
    assert metrics["f1_trans_thalamic"] == pytest.approx(2 / 3)
    assert metrics["accuracy_brain_planes"] == pytest.approx(2 / 3)
    assert cm["labels"] == ["trans_thalamic", "trans_cerebellum", "unsupported"]
    assert cm["matrix"] == [[1, 0, 1], [0, 1, 0], [0, 0, 1]]
    assert balanced_weights([0, 0, 0, 1], 3) == [4 / 9, 4 / 3, 0.0]


def test_threshold_makes_unsure_answers_unsupported(tmp_path):
    net = PlaneNet(4, (4, 8))
    path = save_weights_file(tmp_path / "plane_classifier.pt", make_weights(net, CLASSES, 32, "fov", 0.6))
    clf = PlaneClassifier.load(path)
    probs = torch.tensor([[0.7, 0.1, 0.1, 0.1], [0.4, 0.3, 0.2, 0.1], [0.1, 0.1, 0.2, 0.6]])
    assert clf.decide(probs) == [("trans_thalamic", pytest.approx(0.7)), (UNSUPPORTED, pytest.approx(0.6)),
                                 (UNSUPPORTED, pytest.approx(0.6))]
    assert PlaneClassifier.load(path, min_confidence=0.0).decide(probs)[1][0] == "trans_thalamic"


def test_fetal_planes_db_other_and_non_brain_become_unsupported(fpdb_index, tmp_path):
    """The real FETAL_PLANES_DB index: brain `Other` and non-brain rows are asked for and become `unsupported`;
    with `unsupported.enabled=false` only the three brain planes are read (the reader's default)."""
    import cv2

    from fbad.data.readers.fetal_planes_db import load_index
    from fbad.planes.data import class_of
    from fbad.training.planes import gather_records

    root = tmp_path / "fpdb"
    (root / "Images").mkdir(parents=True)
    shutil.copy(fpdb_index, root)
    df = load_index(root / fpdb_index.name)
    picks = {"Trans-thalamic": "Fetal brain", "Other": "Fetal brain", "Not A Brain": "Fetal femur"}
    for brain_plane, plane in picks.items():
        name = df[(df.Brain_plane == brain_plane) & (df.Plane == plane)].Image_name.iloc[0]
        cv2.imwrite(str(root / "Images" / f"{name}.png"), np.full((40, 40), 90, np.uint8))
    records, skipped, _ = gather_records(compose("train_planes", ["dataset=fetal_planes_db", f"dataset.root={root}"]))
    assert sorted(class_of(r) for r in records) == ["trans_thalamic", "unsupported", "unsupported"]
    assert len(skipped) == len(df) - 3  # every listed image without a file is skipped, with its reason
    only_brain, _, _ = gather_records(compose("train_planes", ["dataset=fetal_planes_db", f"dataset.root={root}",
                                                               "unsupported.enabled=false"]))
    assert [class_of(r) for r in only_brain] == ["trans_thalamic"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One small train-planes run (module-scoped: the slow part) on a phantom with one corrupt image."""
    from fbad.data.readers.phantom import ensure_phantom

    out = tmp_path_factory.mktemp("planes")
    phantom = ensure_phantom(out / "phantom", n_per_plane=100, size=128, seed=0, workers=1)
    bad = sorted((phantom / "Images").glob("*.png"))[0]
    bad.write_bytes(bad.read_bytes()[:100])  # truncated: must be skipped and listed, never stop the run
    mp = pytest.MonkeyPatch()
    mp.setenv("FBAD_OUTPUTS", str(out / "outputs"))
    try:
        cfg = compose("train_planes", [*TINY, f"dataset.root={phantom}"])
        uri = cfg.paths.mlflow_uri  # follows FBAD_OUTPUTS, so read it while that is set
        summary = run_train_planes(cfg, out / "run")
    finally:
        mp.undo()
    return SimpleNamespace(uri=uri, summary=summary, run_dir=out / "run", outputs=out / "outputs", bad=bad)


def held_out_images(n: int = 6, size: int = 128) -> tuple[list[np.ndarray], list[str]]:
    """Fresh phantom frames (seeds the training phantom never drew), n per class."""
    cfg = PhantomConfig(size=size)
    images, truth = [], []
    for i in range(n):
        for plane in BRAIN_PLANES:
            images.append(generate_sample(plane, 10_000 + i, cfg).image)
            truth.append(plane.value)
        images.append(generate_negative(NEGATIVE_KINDS[i % len(NEGATIVE_KINDS)], 10_000 + i, cfg))
        truth.append(UNSUPPORTED)
    return images, truth


def test_train_planes_learns_the_phantom(trained):
    s = trained.summary
    assert s["classes"] == CLASSES
    assert s["n_held_out"] >= 60
    assert s["test_accuracy_argmax"] >= 0.5, s  # chance is 0.25
    clf = PlaneClassifier.load(s["weights"], min_confidence=0.0)
    images, truth = held_out_images()
    answers = clf.predict(images)
    assert np.mean([a == t for (a, _), t in zip(answers, truth, strict=True)]) >= 0.5
    assert all(0.0 <= c <= 1.0 for _, c in answers)


def test_mlflow_run_has_metrics_and_artifacts(trained):
    client = MlflowClient(trained.uri)
    run = client.get_run(trained.summary["run_id"])
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "train-planes"
    for key in ("train_loss", "val_loss", "train_acc", "val_acc"):
        assert len(client.get_metric_history(run.info.run_id, key)) == EPOCHS
    for key in ("test_accuracy", "macro_f1", *(f"f1_{c}" for c in CLASSES), "train_seconds"):
        assert key in run.data.metrics
    assert run.data.params["input.size"] == "48" and run.data.params["dataset.name"] == "phantom"
    arts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"confusion_matrix.png", "confusion_matrix.json", "config.yaml", "predictions.csv", "skipped.csv"} <= arts
    assert [a.path for a in client.list_artifacts(run.info.run_id, "model")] == ["model/plane_classifier.pt"]


def test_bad_image_is_skipped_and_listed(trained):
    skipped = pd.read_csv(trained.run_dir / "skipped.csv")
    assert list(skipped["path"]) == [str(trained.bad)]
    assert "truncated" in skipped["reason"][0]
    assert trained.summary["images_skipped"] == 1
    assert MlflowClient(trained.uri).get_run(trained.summary["run_id"]).data.metrics["images_skipped"] == 1


def test_load_by_path_and_run_uri_agree(trained):
    run_id = trained.summary["run_id"]
    by_path = PlaneClassifier.load(trained.run_dir / "plane_classifier.pt")
    by_run = PlaneClassifier.load(f"runs:/{run_id}/model/plane_classifier.pt", tracking_uri=trained.uri)
    by_folder = PlaneClassifier.load(f"runs:/{run_id}/model", tracking_uri=trained.uri)
    images, _ = held_out_images(2)
    assert by_path.predict(images) == by_run.predict(images) == by_folder.predict(images)
    assert by_path.classes == tuple(CLASSES) and by_path.input_size == 48 and by_path.crop == "fov"


@pytest.mark.parametrize("bad", ["runs:/0123456789abcdef/model/plane_classifier.pt", "/no/such/plane_classifier.pt"])
def test_bad_weights_source_is_a_clear_error(trained, bad):
    with pytest.raises(FileNotFoundError, match="plane classifier weights"):
        PlaneClassifier.load(bad, tracking_uri=trained.uri)


def test_unsupported_on_images_without_a_head(trained):
    clf = PlaneClassifier.load(trained.summary["weights"])
    black = np.zeros((300, 400), np.uint8)
    assert clf.predict([black]) == [(UNSUPPORTED, 1.0)]
    no_fetus = [generate_negative("no_fetus", 20_000 + i, PhantomConfig(size=128)) for i in range(3)]
    answers = clf.predict(no_fetus)
    assert [a for a, _ in answers].count(UNSUPPORTED) >= 2, answers
    tiny = np.full((3, 5), 128, np.uint8)
    assert clf.predict([tiny, black]) == [(UNSUPPORTED, 1.0), (UNSUPPORTED, 1.0)]  # never stops a batch
    with pytest.raises(ValueError, match="2-D gray"):
        clf.predict([np.zeros((3, 4, 5, 6), np.uint8)])
    assert clf.predict([]) == []


def test_weights_file_loads_weights_only(trained, tmp_path):
    bundle = torch.load(trained.summary["weights"], weights_only=True)
    assert bundle["format"] == "fbad-plane-classifier/1" and bundle["classes"] == CLASSES
    assert bundle["input"] == {"size": 48, "crop": "fov"}
    assert bundle["min_confidence"] == trained.summary["min_confidence"]  # calibrated on validation, stored
    assert all(isinstance(v, torch.Tensor) for v in bundle["state_dict"].values())
    assert bundle["config"]["model"]["widths"] == [8, 16, 32, 64]
    pickled = tmp_path / "plane_classifier.pt"
    torch.save({"format": "fbad-plane-classifier/1", "obj": SimpleNamespace(a=1)}, pickled)
    with pytest.raises(FileNotFoundError, match="not a readable weights file"):
        PlaneClassifier.load(pickled)  # a pickled object is refused, never executed
    torch.save({"format": "something-else"}, pickled)
    with pytest.raises(FileNotFoundError, match="not an fbad plane_classifier.pt file"):
        PlaneClassifier.load(pickled)


def test_train_planes_command_bad_root_is_a_clear_error(tmp_path, monkeypatch):
    from fbad.commands import train_planes

    monkeypatch.setattr(sys, "argv", ["fbad train-planes", "dataset=fetal_planes_db",
                                      f"dataset.root={tmp_path / 'nowhere'}"])
    with pytest.raises(SystemExit, match="fbad: error: .*nowhere"):
        train_planes.main()


def test_train_planes_command_runs(tmp_path, monkeypatch, capsys):
    """`fbad train-planes` as the command line calls it: a run folder with the weights, the printed summary."""
    from fbad import cli

    # dataset.workers=1: the phantom writer forks, and a fork after this process ran torch can deadlock
    cli.main(["train-planes", "dataset.n_per_plane=6", "+dataset.workers=1", "dataset.size=64",
              "unsupported.phantom_negatives=6", "input.size=32", "model.widths=[4,8]", "trainer.max_epochs=1",
              "data.workers=1", "progress=false"])
    weights = list((tmp_path / "outputs" / "train_planes").glob("*/plane_classifier.pt"))
    assert len(weights) == 1
    out = capsys.readouterr().out
    assert "runs:/" in out and "test_accuracy" in out and "#/experiments/" in out
