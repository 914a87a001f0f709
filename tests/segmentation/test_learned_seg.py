"""The `learned` head segmenter: U-Net shapes, `fbad train-seg` through the real config into a real sqlite
MLflow store, loading weights by path and by MLflow URI, failure on images without a head, and an overfit
sanity check on synthetic ellipses."""

from __future__ import annotations

import shutil
import sys
from contextlib import contextmanager
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from fbad.config import compose
from fbad.data.records import HeadEllipse
from fbad.data.splits import split_by_patient
from fbad.segmentation.geometry import fit_head_ellipse
from fbad.segmentation.learned.data import letterbox, unletterbox
from fbad.segmentation.learned.module import SegModule
from fbad.segmentation.learned.net import UNet
from fbad.segmentation.learned.segmenter import learned_from_params
from fbad.segmentation.learned.weights import load_weights, save_weights
from fbad.segmentation.metrics import dice
from fbad.training.segmenter import run_train_seg


@contextmanager
def single_thread():
    """Tiny tensors: one thread (a second one only waits on the shared CPU)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("shape", [(64, 96), (61, 93), (160, 240), (33, 47)])
def test_unet_keeps_spatial_size(shape):
    net = UNet((4, 8, 16, 32)).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 1, *shape))
    assert out.shape == (2, 1, *shape)


def test_letterbox_round_trip_keeps_aspect():
    img = np.zeros((540, 800), np.float32)
    cv2.circle(img, (400, 270), 200, 1.0, -1)
    work = letterbox(img, (160, 240))
    assert work.shape == (160, 240)
    assert work[:, 238:].max() == 0.0  # 800x540 scales to 237x160: the right edge is padding
    ys, xs = np.nonzero(work > 0.5)
    assert abs((xs.max() - xs.min()) - (ys.max() - ys.min())) <= 1  # still a circle
    back = unletterbox(work, img.shape) > 0.5
    assert dice(back, img > 0.5) > 0.98


def test_ellipse_fit_ignores_a_leak():
    """A tenth of the border bulging 15 % outwards (a leak into neighbouring tissue) hardly moves the fit."""
    true = HeadEllipse(200, 150, 120, 80, 30)
    t = np.linspace(0, 2 * np.pi, 1200, endpoint=False)
    k = 1 + 0.15 * (t < 0.2 * np.pi)
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    x = true.cx + true.a * k * np.cos(t) * c - true.b * k * np.sin(t) * s
    y = true.cy + true.a * k * np.cos(t) * s + true.b * k * np.sin(t) * c
    pts = np.stack([x, y], 1) + np.random.default_rng(0).normal(0, 0.5, (len(t), 2))
    e = fit_head_ellipse(pts)
    assert abs(e.circumference_px() - true.circumference_px()) < 0.003 * true.circumference_px()
    assert abs(e.cx - true.cx) < 1 and abs(e.cy - true.cy) < 1


def test_split_is_seeded_disjoint_and_grouped(hc18_root):
    from fbad.data.readers.hc18 import read_hc18

    recs = read_hc18(hc18_root).records
    a = split_by_patient(recs, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=0)
    b = split_by_patient(recs, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=0)
    names = {k: {r.path.name for r in v} for k, v in a.items()}
    assert names == {k: {r.path.name for r in v} for k, v in b.items()}
    assert sum(map(len, names.values())) == len(recs)
    assert not (names["train"] & names["test"]) and not (names["val"] & names["test"])
    assert abs(len(names["test"]) - 0.2 * len(recs)) <= 2
    c = split_by_patient(recs, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=1)
    assert {r.path.name for r in c["test"]} != names["test"]


def tiny_cfg(hc18_root, extra=()):
    return compose("train_seg", [
        f"datasets.0.root={hc18_root}", "limit=7", "work_size=[48,72]", "model.widths=[4,8,16]",
        "trainer.max_epochs=2", "data.batch_size=4", "progress=false", "early_stopping.patience=0", "threads=1",
        *extra,
    ])


@pytest.fixture(scope="module")
def trained(hc18_root, tmp_path_factory):
    """One tiny train-seg run (module-scoped: the slow part): its MLflow store URI, summary and run folder."""
    out = tmp_path_factory.mktemp("seg")
    mp = pytest.MonkeyPatch()
    mp.setenv("FBAD_OUTPUTS", str(out / "outputs"))
    try:
        cfg = tiny_cfg(hc18_root, ["register_as=head_seg"])
        uri = cfg.paths.mlflow_uri  # follows FBAD_OUTPUTS, so read it while that is set
        summary = run_train_seg(cfg, out / "run")
    finally:
        mp.undo()
    return SimpleNamespace(uri=uri, summary=summary, run_dir=out / "run", outputs=out / "outputs")


def test_train_seg_writes_weights_and_mlflow_run(trained):
    summary, run_dir = trained.summary, trained.run_dir
    assert trained.uri == f"sqlite:///{trained.outputs}/mlflow.db" and (trained.outputs / "mlflow.db").is_file()
    bundle = load_weights(run_dir / "segmenter.pt")
    assert bundle["work_size"] == [48, 72]
    assert all(isinstance(v, torch.Tensor) for v in bundle["state_dict"].values())
    assert bundle["trained_on"] and all(n.endswith("_HC.png") for n in bundle["trained_on"])
    assert set(bundle["calibration"]) == {"mask_offset_work_px", "hc_offset_work_px", "n_images"}
    client = MlflowClient(trained.uri)
    run = client.get_run(summary["run_id"])
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "train-seg"
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 2
    assert len(client.get_metric_history(run.info.run_id, "val_dice")) == 2
    for k in ("dice_mean", "failure_rate", "n_images"):
        assert k in run.data.metrics
    assert [a.path for a in client.list_artifacts(run.info.run_id, "model")] == ["model/segmenter.pt"]
    # the held-out images were never trained on
    held = {p.split("/")[-1] for p in __import__("pandas").read_csv(run_dir / "held_out.csv")["path"]}
    assert held and not (held & set(bundle["trained_on"]))


def test_weights_load_by_path_run_uri_and_registry(trained, hc18_root):
    summary, run_dir, uri = trained.summary, trained.run_dir, trained.uri
    img = cv2.imread(str(hc18_root / "images" / "003_HC.png"), cv2.IMREAD_GRAYSCALE)
    by_path = learned_from_params(str(run_dir / "segmenter.pt"))
    by_run = learned_from_params(f"runs:/{summary['run_id']}/model/segmenter.pt", tracking_uri=uri)
    by_version = learned_from_params("models:/head_seg/1", tracking_uri=uri)
    assert by_path.trained_on == by_run.trained_on == by_version.trained_on
    a, b = by_path.probability(img), by_run.probability(img)
    np.testing.assert_array_equal(a, b)
    res = by_version(img)
    assert res.head_mask.shape == img.shape


@pytest.mark.parametrize("bad", ["runs:/0123456789abcdef/model/segmenter.pt", "models:/no_such_model/3",
                                 "/no/such/segmenter.pt"])
def test_bad_weights_source_is_a_clear_error(trained, bad):
    with pytest.raises(FileNotFoundError, match="segmentation weights"):
        learned_from_params(bad, tracking_uri=trained.uri)


def test_segmenter_fails_cleanly_without_a_head(trained):
    seg = learned_from_params(str(trained.run_dir / "segmenter.pt"))
    for img in (np.zeros((540, 800), np.uint8), np.zeros((3, 3), np.uint8)):
        res = seg(img)
        assert res.failed and res.reason and res.ellipse is None
        assert res.head_mask.shape == img.shape and not res.head_mask.any()


def test_train_seg_command_runs(hc18_root, tmp_path, monkeypatch, capsys):
    """The `fbad train-seg` Hydra app end to end, as the command line calls it: run folder, printed summary."""
    from fbad.commands import train_seg

    monkeypatch.setattr(sys, "argv", ["fbad train-seg", f"datasets.0.root={hc18_root}", "limit=5",
                                      "work_size=[32,48]", "model.widths=[4,8]", "trainer.max_epochs=1",
                                      "progress=false", "threads=1"])
    train_seg.main()
    weights = list((tmp_path / "outputs" / "train_seg").glob("*/segmenter.pt"))
    assert len(weights) == 1
    assert "runs:/" in capsys.readouterr().out


def test_train_seg_with_the_same_seed_gives_the_same_weights_and_figures(hc18_root, tmp_path):
    """The README's reproducibility promise for the segmenter, tiny: same machine, config, seed and thread
    count -> bit-identical weights, border calibration and held-out figures; another seed -> other weights."""
    import mlflow
    import torch
    from helpers import fbad

    def run(seed: int, name: str) -> tuple[dict, dict]:
        fbad("train-seg", f"datasets.0.root={hc18_root}", "limit=10", "work_size=[32,48]", "model.widths=[4,8]",
             "trainer.max_epochs=2", "progress=false", "threads=1", f"seed={seed}", f"run_name={name}",
             cwd=tmp_path)
        mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
        found = mlflow.search_runs(experiment_names=["train-seg"], filter_string=f"attributes.run_name = '{name}'")
        metrics = {k: v for k, v in found.iloc[0].items() if k.startswith("metrics.") and k != "metrics.train_seconds"}
        weights = torch.load(f"{found.iloc[0]['tags.run_dir']}/segmenter.pt", weights_only=True)
        return weights, metrics

    (w_a, m_a), (w_b, m_b), (w_c, _) = run(0, "a"), run(0, "b"), run(1, "c")
    assert "metrics.dice_mean" in m_a and m_a == m_b
    assert w_a["calibration"] == w_b["calibration"]
    assert all(torch.equal(w_a["state_dict"][k], w_b["state_dict"][k]) for k in w_a["state_dict"])
    assert any(not torch.equal(w_a["state_dict"][k], w_c["state_dict"][k]) for k in w_a["state_dict"])


def test_train_seg_bad_root_is_a_clear_error(tmp_path, monkeypatch):
    from fbad.commands import train_seg

    monkeypatch.setattr(sys, "argv", ["fbad train-seg", f"datasets.0.root={tmp_path / 'nowhere'}"])
    with pytest.raises(SystemExit, match="fbad: error: .*nowhere"):
        train_seg.main()


def test_unet_overfits_synthetic_ellipses():
    """A few synthetic heads (bright ring on speckle): after 120 steps the predicted masks match (Dice > 0.9)."""
    rng = np.random.default_rng(0)
    h, w = 48, 64
    xs, ys = [], []
    for i in range(4):
        img = (rng.random((h, w)) * 60).astype(np.float32)
        mask = np.zeros((h, w), np.uint8)
        centre, axes, ang = (int(rng.integers(26, 38)), int(rng.integers(20, 28))), (int(rng.integers(12, 18)),
                                                                                      int(rng.integers(9, 12))), 40 * i
        cv2.ellipse(mask, (centre, axes, ang), 1, -1)
        cv2.ellipse(img, (centre, axes, ang), 200, 2)
        xs.append(img / 255.0)
        ys.append(mask.astype(np.float32))
    x = torch.from_numpy(np.stack(xs))[:, None]
    y = torch.from_numpy(np.stack(ys))[:, None]
    torch.manual_seed(0)
    module = SegModule(widths=(8, 16, 32), schedule="constant")
    opt = torch.optim.Adam(module.parameters(), lr=1e-2)
    module.train()
    with single_thread():
        for _ in range(120):
            loss = module.loss(module(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    module.eval()
    with torch.no_grad():
        pred = torch.sigmoid(module(x)).numpy()[:, 0] > 0.5
    assert min(dice(p, t > 0.5) for p, t in zip(pred, y.numpy()[:, 0], strict=True)) > 0.9


def test_save_weights_round_trip(tmp_path):
    net = UNet((4, 8))
    path = save_weights(tmp_path / "w" / "segmenter.pt", net, (32, 48), ["b.png", "a.png", "a.png"])
    bundle = torch.load(path, weights_only=True)
    assert bundle["trained_on"] == ["a.png", "b.png"]
    seg = learned_from_params(str(path))
    assert seg.trained_on == {"a.png", "b.png"} and seg.work_hw == (32, 48)


def test_cache_key_follows_the_weights_not_their_name(trained, tmp_path):
    """Retraining into the same path, or moving an alias, must give a new preprocessing-cache key."""
    from fbad.anomaly.preprocessor import Preprocessor
    from fbad.engine.cache import config_hash
    from fbad.segmentation.learned.weights import weights_digest

    def key(weights: str) -> str:
        seg = {"name": "learned", "weights": weights, "tracking_uri": trained.uri}
        return config_hash(Preprocessor({"image_size": 32, "segmentation": seg}).config_for_hash())

    path = tmp_path / "segmenter.pt"
    shutil.copy(trained.run_dir / "segmenter.pt", path)
    first = key(str(path))
    assert key(str(path)) == first
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'elsewhere.db'}")  # models:/ must resolve in trained.uri
    assert weights_digest(str(path)) == weights_digest("models:/head_seg/1", trained.uri)  # same file, two names
    save_weights(path, UNet((4, 8)), (32, 48), ["a.png"])  # retrained into the same file
    assert key(str(path)) != first


def test_eval_seg_limit_counts_images_the_segmenter_never_saw(trained, hc18_root, tmp_path):
    from helpers import fbad

    proc = fbad("eval-seg", "dataset=hc18", f"dataset.root={hc18_root}", "segmentation=learned",
                f"segmentation.weights={trained.run_dir / 'segmenter.pt'}", "limit=3", "workers=1", "progress=false",
                cwd=tmp_path)
    # its first images are the ones it trained on: they are left out first, then 3 others judged
    assert "(3 images, 0 skipped)" in proc.stdout


def test_split_keeps_every_patients_images_together():
    """Patients with several images (HC18's NNN_HC / NNN_2HC / NNN_3HC are one subject): grouping is what the
    split promises, so it is checked where it can fail, not on one image per patient."""
    from pathlib import Path

    from fbad.data.records import Record

    recs = [Record(path=Path(f"/x/{p:03d}_{k}HC.png"), patient_id=f"hc18_{p:03d}") for p in range(12)
            for k in ("", "2", "3")[: 1 + p % 3]]
    for seed in range(5):
        parts = split_by_patient(recs, {"train": 0.6, "val": 0.2, "test": 0.2}, seed=seed)
        where = {r.patient_id: name for name, rs in parts.items() for r in rs}
        for name, rs in parts.items():
            assert all(where[r.patient_id] == name for r in rs)
        assert all(len({where[r.patient_id] for r in recs if r.patient_id == p}) == 1 for p in where)
        assert sorted(r.path for rs in parts.values() for r in rs) == sorted(r.path for r in recs)
        assert all(parts[n] for n in ("train", "val", "test"))
