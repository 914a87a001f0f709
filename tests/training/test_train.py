"""`fbad train` through the real config on a tiny phantom, with a real sqlite MLflow store."""

from __future__ import annotations

import signal

import mlflow
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from fbad.anomaly.model_file import load_plane_model
from fbad.config import compose
from fbad.inference.backends import export_onnx, onnx_max_abs_diff
from fbad.training.anomaly import run_training

PLANES = ("trans_thalamic", "trans_cerebellum", "trans_ventricular")


def tiny(extra=(), small_model: bool = True):
    model = ["model.widths=[8,16]", "model.latent_dim=16"] if small_model else []
    over = [*model,
        "dataset.n_per_plane=20", "dataset.size=96", "dataset.anomaly_fraction=0.5", "preprocess.image_size=32",
        "trainer.max_epochs=3", "progress=false",
        "++threshold.min_count=2", "data.batch_size=8", "data.preprocess_workers=1", "early_stopping.patience=0",
        *extra,
    ]
    return compose("train", over)


def _client(cfg):
    mlflow.set_tracking_uri(cfg.paths.mlflow_uri)
    return MlflowClient()


def _runs(cfg, client):
    exp = client.get_experiment_by_name(cfg.logger.experiment)
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children


def test_train_logs_per_plane_runs(tmp_path):
    cfg = tiny()
    summary = run_training(cfg, tmp_path / "run")
    assert 0.0 <= summary["test_auroc_mean"] <= 1.0
    client = _client(cfg)
    parents, children = _runs(cfg, client)
    assert len(parents) == 1 and len(children) == 3
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert {c.data.tags["plane"] for c in children} == set(PLANES)
    assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children)
    for c in children:
        assert len(client.get_metric_history(c.info.run_id, "train_mse")) == 3
        assert len(client.get_metric_history(c.info.run_id, "val_mse")) == 3
        assert "threshold" in c.data.metrics and "test_auroc" in c.data.metrics
        arts = {a.path for a in client.list_artifacts(c.info.run_id, "plots")}
        assert {"plots/loss_curves.png", "plots/score_histogram.png", "plots/reconstructions.png"} <= arts
        assert [a.path for a in client.list_artifacts(c.info.run_id, "model")] == ["model/model.pt"]
    for plane in PLANES:
        assert f"{plane}/threshold" in parent.data.metrics
        assert len(client.get_metric_history(parent.info.run_id, f"{plane}/val_mse")) == 3
        assert f"{plane}/test_auroc" in parent.data.metrics
    assert "test_auroc_mean" in parent.data.metrics
    assert parent.data.tags["dataset_hash"] and parent.data.tags["git_commit"]
    assert parent.data.params["model.name"] == "conv_ae"
    top = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"config.yaml", "thresholds.json"} <= top
    # the saved plane model carries its threshold and loads without unpickling code
    module, blob = load_plane_model(tmp_path / "run" / "trans_thalamic" / "model.pt")
    assert float(module.threshold) == pytest.approx(blob["threshold"]["value"])
    tt = next(c for c in children if c.data.tags["plane"] == "trans_thalamic")
    assert blob["threshold"]["value"] == pytest.approx(tt.data.metrics["threshold"], rel=1e-6)


def test_resume_after_interrupt_matches_uninterrupted(tmp_path):
    reference = tiny(["planes=[trans_thalamic]", "logger.experiment=ref"])
    run_training(reference, tmp_path / "ref")

    interrupted = tiny(["planes=[trans_thalamic]", "logger.experiment=resume",
                        "+callbacks.stop={_target_: helpers.InterruptAfter, epochs: 2}"])
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises((KeyboardInterrupt, SystemExit)):
            run_training(interrupted, tmp_path / "res")
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores further Ctrl-C while it shuts down
    client = _client(interrupted)
    parents, children = _runs(interrupted, client)
    assert [p.info.status for p in parents] == ["KILLED"]
    assert len(client.get_metric_history(children[0].info.run_id, "val_mse")) == 2

    resumed = tiny(["planes=[trans_thalamic]", "logger.experiment=resume"])
    run_training(resumed, tmp_path / "res")
    parents2, children2 = _runs(resumed, client)
    assert [p.info.run_id for p in parents2] == [parents[0].info.run_id]  # the same runs, continued
    assert [p.info.status for p in parents2] == ["FINISHED"]
    assert len(children2) == 1
    history = [m.value for m in client.get_metric_history(children2[0].info.run_id, "val_mse")]
    ref_child = _runs(reference, client)[1][0]
    ref_history = [m.value for m in client.get_metric_history(ref_child.info.run_id, "val_mse")]
    assert np.allclose(history, ref_history, rtol=1e-5)
    a = torch.load(tmp_path / "ref" / "trans_thalamic" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "res" / "trans_thalamic" / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)


def test_failed_run_is_marked_failed(tmp_path):
    cfg = tiny(["planes=[trans_thalamic]", "logger.experiment=fails", "model.loss=no_such_loss"])
    with pytest.raises(Exception, match="no_such_loss"):
        run_training(cfg, tmp_path / "run")
    parents, children = _runs(cfg, _client(cfg))
    assert [p.info.status for p in parents] == ["FAILED"]
    assert [c.info.status for c in children] == ["FAILED"]
    assert "no_such_loss" in parents[0].data.tags["fbad.error"]


def test_pca_baseline_and_seed_rule(tmp_path):
    cfg = tiny(["model=pca", "model.n_components=4", "planes=[trans_cerebellum]", "logger.experiment=pca"],
               small_model=False)
    assert run_training(cfg, tmp_path / "pca")["best_val_mse_mean"] > 0
    seed = tiny(["experiment=seed_reproduction", "preprocess.image_size=32", "trainer.max_epochs=1",
                 "planes=[all]", "logger.experiment=seed", "model.widths=[8,16,16]"], small_model=False)
    assert seed.threshold.value == 0.15 and seed.score.method == "mean_intensity"
    run_training(seed, tmp_path / "seed")
    parents, children = _runs(seed, _client(seed))
    assert children[0].data.metrics["threshold"] == pytest.approx(0.15)
    # the rule's decisions on known intensities: abnormal when the reconstruction's mean is BELOW 0.15
    from fbad.anomaly.scoring import mean_intensity
    from fbad.anomaly.thresholds import apply_threshold

    module, blob = load_plane_model(tmp_path / "seed" / "all" / "model.pt")
    levels = [0.10, 0.149, 0.151, 0.20, 0.90]
    recon = torch.stack([torch.full((1, 8, 8), v) for v in levels])
    scores = mean_intensity(recon, torch.ones_like(recon)).numpy()
    np.testing.assert_allclose(scores, levels, rtol=1e-6)
    decided = apply_threshold(scores, float(blob["threshold"]["value"]), module.spec.direction)
    assert module.spec.direction == "below" and decided.tolist() == [True, True, False, False, False]


def test_map_models_train_calibrate_and_reload(tmp_path):
    """PatchCore (closed form) and the synthetic-anomaly U-Net (Lightning, its own loss) through `fbad train`:
    their maps are scored as maps, their curves logged, and the saved model gives the same scores again."""
    for name, extra in (("patchcore", ["model.widths=[8,16,32]", "model.blocks=[0,1]"]),
                        ("nsa", ["model.widths=[8,16]"])):
        cfg = tiny([f"model={name}", *extra, "planes=[all]", f"logger.experiment={name}"], small_model=False)
        summary = run_training(cfg, tmp_path / name)
        assert np.isfinite(summary["test_auroc_mean"])
        parents, children = _runs(cfg, _client(cfg))
        curve = {"patchcore": "val_score", "nsa": "val_loss"}[name]
        history = MlflowClient().get_metric_history(children[0].info.run_id, curve)
        assert len(history) == (1 if name == "patchcore" else 3)
        module, blob = load_plane_model(tmp_path / name / "all" / "model.pt")
        assert module.spec.method == "map" and blob["threshold"]["value"] == pytest.approx(
            children[0].data.metrics["threshold"])
        x = torch.rand(3, 1, 32, 32)
        with torch.no_grad():
            out = module(x)
        assert out.shape == x.shape and torch.isfinite(out).all()
        if name == "nsa":
            assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0  # a probability map
        onnx = export_onnx(module, tmp_path / f"{name}.onnx", 32)  # what backend=onnx and serving run
        assert onnx_max_abs_diff(module, onnx, torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(1))
                                 .numpy()) <= 1e-4
    with pytest.raises(ValueError, match="unknown model.synthesis keys \\['sizes'\\]"):
        run_training(tiny(["model=nsa", "model.widths=[8,16]", "+model.synthesis.sizes=[0.1,0.2]",
                           "logger.experiment=nsa_bad"], small_model=False), tmp_path / "bad")


def test_a_bundled_plane_classifier_travels_with_the_model(tmp_path):
    """`classifier=` copies a plane classifier into the run: the run folder, as a model, then routes by itself."""
    from fbad.inference.bundle import load_bundle
    from fbad.planes.classifier import make_weights
    from fbad.planes.net import PlaneNet
    from fbad.tracking.artifacts import save_weights_file

    classes = ["trans_thalamic", "trans_cerebellum", "trans_ventricular", "unsupported"]
    clf = save_weights_file(tmp_path / "clf" / "plane_classifier.pt",
                            make_weights(PlaneNet(4, (4, 8)), classes, 32, "fov", 0.0))
    cfg = tiny([f"classifier={clf}", "planes=[trans_thalamic]", "trainer.max_epochs=1", "logger.experiment=clf"])
    run_training(cfg, tmp_path / "run")
    bundle = load_bundle(tmp_path / "run")
    assert bundle.classifier_path == tmp_path / "run" / "plane_classifier.pt"
    assert bundle.classifier_path.read_bytes() == clf.read_bytes()
    parents, _ = _runs(cfg, _client(cfg))
    logged = {a.path for a in MlflowClient().list_artifacts(parents[0].info.run_id, "model")}
    assert "model/plane_classifier.pt" in logged
    bad = tmp_path / "not_a_classifier.pt"
    torch.save({"format": "something/1"}, bad)
    with pytest.raises(FileNotFoundError, match="not an fbad plane_classifier.pt file"):  # before any training
        run_training(tiny([f"classifier={bad}", "logger.experiment=clf2"]), tmp_path / "run2")
    assert not (tmp_path / "run2" / "state.json").exists()


def test_unlabelled_images_are_trained_and_flagged_but_never_measured(tmp_path, small_phantom):
    """FETAL_PLANES_DB has no anomaly labels: its images must not count as normal in test metrics."""
    import csv

    from fbad.data.readers import read_dataset

    records = read_dataset({"name": "phantom", "root": str(small_phantom)}).records
    with open(tmp_path / "index.csv", "w", newline="") as fh:  # path, plane, split: no label column
        w = csv.writer(fh)
        w.writerow(["path", "plane", "split", "patient"])
        patients = sorted({r.patient_id for r in records})
        for r in records:  # a quarter of the patients are test patients
            w.writerow([r.path, r.plane, "test" if patients.index(r.patient_id) % 4 == 0 else "train", r.patient_id])
    cfg = compose("train", ["dataset=folder", f"dataset.root={tmp_path}", "dataset.csv=index.csv",
                            "segmentation=none", "align=none", "planes=[trans_thalamic]", "model.widths=[8,16]",
                            "model.latent_dim=16", "preprocess.image_size=32", "trainer.max_epochs=2",
                            "progress=false", "++threshold.min_count=2", "data.batch_size=8",
                            "data.preprocess_workers=1", "early_stopping.patience=0"])
    summary = run_training(cfg, tmp_path / "run")
    assert not any(k.startswith(("test_", "val_auroc", "val_f1")) for k in summary), summary
    client = _client(cfg)
    _, children = _runs(cfg, client)
    parent_metrics = client.get_run(children[0].data.tags["mlflow.parentRunId"]).data.metrics
    assert np.isfinite(parent_metrics["trans_thalamic/threshold"])  # calibrated on the unlabelled (presumed normal)
    n_test = sum(1 for r in records if r.plane.value == "trans_thalamic" and patients.index(r.patient_id) % 4 == 0)
    assert n_test and parent_metrics["trans_thalamic/test_n_unlabelled"] == n_test
    assert not any(k.endswith(("test_f1", "test_specificity", "test_auroc")) for k in parent_metrics)


def test_resume_continues_with_the_runs_own_config(tmp_path):
    from omegaconf import OmegaConf

    from fbad.errors import UserError
    from fbad.training.resume import resumed_config

    started = compose("train", ["dataset=hc18", "dataset.root=/data/hc18", "trainer.max_epochs=100"])
    (tmp_path / ".hydra").mkdir()
    OmegaConf.save({k: v for k, v in started.items() if k != "hydra"}, tmp_path / ".hydra" / "config.yaml")
    now = compose("train", ["resume=true"])  # today's defaults: phantom, 30 epochs
    cfg = resumed_config(now, tmp_path, ["resume=true"])
    assert cfg.dataset.name == "hc18" and cfg.trainer.max_epochs == 100 and cfg.resume is True
    same = compose("train", ["resume=true", "trainer.max_epochs=100"])
    assert resumed_config(same, tmp_path, ["resume=true", "trainer.max_epochs=100"]).dataset.name == "hc18"
    other = compose("train", ["resume=true", "trainer.max_epochs=5"])
    with pytest.raises(UserError, match=r"trainer.max_epochs=5 \(the run has 100\)"):
        resumed_config(other, tmp_path, ["resume=true", "trainer.max_epochs=5"])


def test_threshold_is_the_configured_percentile_of_the_validation_normal_scores(tmp_path):
    """Scores recomputed here from the saved model on each split: the stored threshold is the q-th percentile
    of the VALIDATION normal scores, and not that of the training or test normals (calibrating on the wrong
    split, or with another q, fails this)."""
    from fbad.anomaly.datamodule import PlaneDataModule, prepare_data
    from fbad.data.records import Plane

    cfg = tiny(["planes=[trans_thalamic]", "logger.experiment=thr", "threshold.q=90", "dataset.n_per_plane=60",
                "dataset.anomaly_fraction=0.2"])
    run_training(cfg, tmp_path / "run")
    module, blob = load_plane_model(tmp_path / "run" / "trans_thalamic" / "model.pt")
    module.eval()
    prepared = prepare_data(cfg.dataset, cfg.preprocess, cfg.paths.cache_dir, val_fraction=cfg.data.val_fraction,
                            seed=cfg.seed, workers=1, progress=False)
    dm = PlaneDataModule(prepared, Plane.TRANS_THALAMIC, batch_size=8, num_workers=0, augment=None, seed=cfg.seed)

    def normal_scores(split: str) -> np.ndarray:
        ds = dm.datasets[split]
        loader = torch.utils.data.DataLoader(ds, batch_size=8, shuffle=False)
        with torch.no_grad():
            scores = np.concatenate([module.score_batch(b)[0].numpy() for b in loader])
        return scores[ds.labels != 1]

    val = normal_scores("val")
    assert len(val) >= 2
    assert blob["threshold"]["value"] == pytest.approx(float(np.percentile(val, 90)), rel=1e-5)
    assert blob["threshold"]["value"] != pytest.approx(float(np.percentile(val, 99)), rel=1e-5)
    for other in ("train", "test"):
        assert blob["threshold"]["value"] != pytest.approx(float(np.percentile(normal_scores(other), 90)), rel=1e-5)


def test_two_runs_with_the_same_seed_give_the_same_figures(tmp_path):
    """The README's promise on one machine and thread count: same config and seed, bit-identical thresholds and
    test metrics (a different seed gives other figures, so the comparison can fail)."""
    figures = []
    for i, seed in enumerate((0, 0, 1)):
        cfg = tiny(["planes=[trans_thalamic]", f"logger.experiment=repro{i}", f"seed={seed}"])
        summary = run_training(cfg, tmp_path / f"run{i}")
        _, blob = load_plane_model(tmp_path / f"run{i}" / "trans_thalamic" / "model.pt")
        figures.append((blob["threshold"]["value"], summary["test_auroc_mean"],
                        {k: v.clone() for k, v in blob["state_dict"].items()}))
    (t0, a0, w0), (t1, a1, w1), (t2, _, w2) = figures
    assert t0 == t1 and a0 == a1  # exactly, not approximately
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    assert t2 != t0 and not all(torch.equal(w0[k], w2[k]) for k in w0)


@pytest.mark.parametrize("preset", ["gpu", "ddp"])
def test_gpu_and_ddp_trainer_configs_compose_and_instantiate(preset, tmp_path):
    """trainer=gpu / trainer=ddp through the real config and `build_trainer`: with a GPU they instantiate as
    configured; without one, the same settings on the CPU accelerator do (strategy, devices, precision), and
    the GPU preset itself is refused with a one-line error that says what to use instead."""
    from fbad.errors import UserError
    from fbad.training.fit import build_trainer

    cfg = tiny([f"trainer={preset}"])
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == "bf16-mixed"
    if torch.cuda.is_available():
        trainer = build_trainer(cfg, [], tmp_path)
        assert trainer.accelerator.__class__.__name__ == "CUDAAccelerator"
        return
    with pytest.raises(UserError, match=f"trainer={preset} asks for a CUDA GPU.*use trainer=cpu"):
        build_trainer(cfg, [], tmp_path)
    on_cpu = tiny([f"trainer={preset}", "trainer.accelerator=cpu", *(["trainer.devices=2"] if preset == "ddp" else [])])
    trainer = build_trainer(on_cpu, [], tmp_path)
    assert trainer.precision == "bf16-mixed" and trainer.max_epochs == cfg.trainer.max_epochs
    if preset == "ddp":
        assert trainer.strategy.__class__.__name__ == "DDPStrategy" and trainer.num_devices == 2
        assert trainer.strategy._start_method == "spawn"  # ddp_spawn: workers stay in this Hydra run folder


def test_bad_files_are_skipped_listed_and_counted_by_fbad_train(tmp_path, small_phantom):
    """A truncated PNG and a text file named .png inside the dataset: the run finishes, both are in
    skipped.csv with a reason, `images_skipped` says 2, and every other image is trained or evaluated."""
    import shutil

    import pandas as pd

    root = tmp_path / "phantom"
    shutil.copytree(small_phantom, root)
    images = sorted((root / "Images").glob("*.png"))
    images[0].write_bytes(images[0].read_bytes()[:60])
    images[1].write_text("not an image")
    cfg = compose("train", ["dataset=phantom", f"dataset.root={root}", "dataset.n_per_plane=12", "dataset.size=64",
                            "dataset.seed=3", "planes=[all]", "model.widths=[8,16]", "model.latent_dim=8",
                            "preprocess.image_size=32", "trainer.max_epochs=1", "progress=false",
                            "++threshold.min_count=2", "data.batch_size=8", "data.preprocess_workers=1",
                            "logger.experiment=badfiles"])
    summary = run_training(cfg, tmp_path / "run")
    skipped = pd.read_csv(tmp_path / "run" / "skipped.csv").set_index("path")
    reason = {p.split("/")[-1]: r for p, r in skipped.reason.items()}
    assert "truncated" in reason[images[0].name] or "cannot decode" in reason[images[0].name], reason
    assert "not an image" in reason[images[1].name], reason
    assert all(len(r) > 0 for r in reason.values())
    parents, _ = _runs(cfg, _client(cfg))
    assert parents[0].info.status == "FINISHED" and parents[0].data.metrics["images_skipped"] == len(skipped)
    assert summary["test_auroc_mean"] == summary["test_auroc_mean"]  # evaluated despite the bad files
