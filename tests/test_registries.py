"""Driven by the registries and the config tree: every `conf/<group>/*.yaml` composes and builds, and every
model, segmentation method and dataset reader in a registry runs on a tiny real input. A new entry in a
registry or a new yaml is tested here without writing a test for it."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import HC18, REPO, SHARED
from omegaconf import OmegaConf

from fbad.config import compose

CONF = REPO / "conf"
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name not in ("hydra", "paths"))
# the primary config each group belongs to
PRIMARY = {"sweep": "sweep", "sampler": "sweep", "pruner": "sweep"}


def _options() -> list[tuple[str, str]]:
    return [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]


def test_every_group_is_covered():
    assert {"dataset", "enhancement", "segmentation", "align", "model", "threshold", "trainer"} <= set(GROUPS)
    assert len(_options()) >= 35


@pytest.mark.parametrize(("group", "option"), _options(), ids=lambda x: str(x))
def test_every_yaml_composes_and_builds(group, option, tmp_path):
    from hydra.utils import instantiate

    primary = PRIMARY.get(group, "train")
    if group == "experiment" and "override /sweep" in (CONF / group / f"{option}.yaml").read_text():
        primary = "sweep"  # a sweep preset
    overrides = [f"{group}={option}", f"paths.root={tmp_path}"]
    if (group, option) == ("threshold", "fixed"):
        overrides.append("threshold.value=0.5")
    cfg = compose(primary, overrides)
    node = cfg.get(group)
    if group == "experiment":
        assert cfg.hydra.runtime.choices.get("experiment") == option
    elif group == "dataset":
        from fbad.data.readers import get_reader

        assert callable(get_reader(node.name))
    elif group == "enhancement":
        from fbad.preprocess.enhance import build_chain

        out = build_chain(OmegaConf.to_container(node.ops, resolve=True))(np.full((24, 32), 0.4, np.float32))
        assert out.shape == (24, 32) and np.isfinite(out).all()
    elif group == "segmentation":
        from fbad.segmentation.registry import METHODS

        assert node.name in METHODS
    elif group == "align":
        from fbad.segmentation.align import align

        out, masks, _ = align(np.random.default_rng(0).random((60, 80)).astype(np.float32), 16, None,
                              {"brain": np.ones((60, 80), bool)}, OmegaConf.to_container(node, resolve=True))
        assert out.shape == (16, 16) and masks["brain"].shape == (16, 16)
    elif group == "model":
        from fbad.models import build_model

        net = build_model(OmegaConf.to_container(node, resolve=True))
        assert isinstance(net, torch.nn.Module)
    elif group == "threshold":
        from fbad.anomaly.thresholds import calibrate_from_config

        normal, abnormal = np.linspace(0.0, 1.0, 101), np.linspace(0.8, 2.0, 30)  # max_f1 needs anomalies
        thr = calibrate_from_config(normal, OmegaConf.to_container(node, resolve=True), abnormal_scores=abnormal)
        assert 0.0 <= thr.value <= 2.0 and thr.strategy == node.name and not thr.warnings
    elif group == "trainer":
        from fbad.training.fit import build_trainer

        kwargs = OmegaConf.to_container(node, resolve=True)
        assert kwargs["max_epochs"] >= 1
        if kwargs.get("accelerator", "cpu") == "cpu" or torch.cuda.is_available():
            trainer = build_trainer(cfg, [], tmp_path, enable_checkpointing=False)
            assert trainer.max_epochs == kwargs["max_epochs"]
        else:  # no GPU here: the config names one, and Lightning refuses it with a clear error
            assert kwargs["accelerator"] == "gpu"
    elif group in ("sampler", "pruner"):
        built = instantiate(node, **({"seed": 0} if group == "sampler" else {}))
        assert type(built).__module__.startswith("optuna")
    elif group == "sweep":
        from fbad.sweep.space import parse_space

        assert parse_space(node.params)
    elif group == "logger":
        assert cfg.logger.experiment


# ------------------------------------------------------------------------------------------------ models


@pytest.mark.parametrize("name", sorted(__import__("fbad.models", fromlist=["MODELS"]).MODELS))
def test_every_model_runs_a_tiny_batch(name):
    from fbad.models import build_model

    size = 32 if name != "seed_ae" else 224
    cfg = compose("train", [f"model={name}", f"preprocess.image_size={size}"]).model
    net = build_model(OmegaConf.to_container(cfg, resolve=True)).eval()
    x = torch.rand(4, 1, size, size)
    if hasattr(net, "fit"):  # PCA and PatchCore are fitted in closed form
        net.fit(x)
    with torch.no_grad():
        y = net(x)
    assert y.shape == x.shape and torch.isfinite(y).all()


# ------------------------------------------------------------------------------------------- segmentation


def _hc18_image() -> tuple[np.ndarray, Path]:
    path = HC18 / "images" / "003_HC.png"
    if not path.is_file():
        pytest.skip(f"reference data not found at {path}")
    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), path


@pytest.mark.parametrize("name", ["none", "seed", "ellipse", "learned", "ground_truth"])
def test_every_segmentation_method_runs_on_a_real_frame(name, tmp_path):
    from fbad.data.records import Label, Plane, Record
    from fbad.segmentation.geometry import ellipse_from_mask
    from fbad.segmentation.learned.net import UNet
    from fbad.segmentation.learned.weights import save_weights
    from fbad.segmentation.metrics import dice
    from fbad.segmentation.registry import METHODS, get_segmenter
    from fbad.segmentation.truth import true_head_mask

    assert name in METHODS
    img, path = _hc18_image()
    cfg: dict = {"name": name}
    if name == "learned":  # an untrained network: the method must still answer (a head, or a clear failure)
        torch.manual_seed(0)
        cfg["weights"] = str(save_weights(tmp_path / "segmenter.pt", UNet((4, 8)), (64, 96), []))
    annotated = Record(path=path, patient_id="p", plane=Plane.TRANS_THALAMIC, label=Label.NORMAL,
                       head_mask_path=path.with_name(path.stem + "_Annotation.png"))
    head = true_head_mask(annotated, img.shape)
    truth = ellipse_from_mask(head)
    record = Record(path=path, patient_id="p", plane=Plane.TRANS_THALAMIC, label=Label.NORMAL, ellipse=truth)
    res = get_segmenter(cfg)(img, record)
    assert res.head_mask.shape == img.shape and res.brain_mask.shape == img.shape
    assert res.failed == bool(res.reason)
    if name == "ellipse":
        assert dice(res.head_mask, head) > 0.9
    if name == "seed":
        assert not res.failed and dice(res.head_mask, head) > 0.3
    if name == "ground_truth":
        assert res.ellipse == truth and res.head_mask.any()
    if name == "none":
        assert res.brain_mask.mean() > 0.5


def test_unknown_segmentation_method_and_key_are_named():
    from fbad.segmentation.registry import get_segmenter

    with pytest.raises(ValueError, match="unknown segmentation method 'nope'"):
        get_segmenter({"name": "nope"})
    with pytest.raises(ValueError, match="unknown parameter"):
        get_segmenter({"name": "ellipse", "bogus": 1})


# ------------------------------------------------------------------------------------------------ readers


def _tiny_folder(root: Path) -> Path:
    for sub in ("normal", "abnormal"):
        (root / sub).mkdir(parents=True)
        for i in range(2):
            cv2.imwrite(str(root / sub / f"{sub}{i}.png"), np.full((40, 40), 60 + 40 * i, np.uint8))
    return root


def _reader_root(name: str, tmp_path: Path) -> dict:
    if name == "phantom":
        return {"root": str(tmp_path / "ph"), "n_per_plane": 2, "size": 64, "seed": 0, "workers": 1}
    if name == "folder":
        return {"root": str(_tiny_folder(tmp_path / "folder"))}
    if name == "union":
        return {"datasets": [{"name": "folder", "root": str(_tiny_folder(tmp_path / "a"))},
                             {"name": "folder", "root": str(_tiny_folder(tmp_path / "b")), "split": "train"}]}
    if name == "lesions":  # two real HC18 frames with their outlines, one lesioned copy
        from fbad.data.readers.hc18 import read_hc18
        from fbad.lesions import write_lesion_dataset

        if not HC18.is_dir():
            pytest.skip(f"reference data not found at {HC18}")
        sources = read_hc18(HC18).records[:2]
        return {"root": str(write_lesion_dataset(sources, tmp_path / "lesions", fraction_abnormal=0.5, seed=0))}
    paths = {"hc18": SHARED / "hc18", "roboflow_abnormalities": SHARED / "roboflow_abnormalities",
             "fetal_planes_db": SHARED / "fetal_planes_db"}
    if not paths[name].exists():
        pytest.skip(f"reference data not found at {paths[name]}")
    return {"root": str(paths[name])}


@pytest.mark.parametrize("name", sorted(__import__("fbad.data.readers", fromlist=["_READERS"])._READERS))
def test_every_reader_reads_through_its_config(name, tmp_path):
    from fbad.data.readers import read_dataset
    cfg = compose("train", [f"dataset={name}"]).dataset
    ds = {**OmegaConf.to_container(cfg, resolve=False), **_reader_root(name, tmp_path)}
    read = read_dataset(OmegaConf.create(ds))
    if name == "fetal_planes_db":  # only the index is on this machine: every image is listed as missing
        assert not read.records and len(read.skipped) > 2000
    else:
        assert read.records and all(Path(r.path).is_file() for r in read.records)
