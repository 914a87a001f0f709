"""DataModule over the cached phantom: tensors, per-plane selection, train-only augmentation, seeding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fbad.anomaly.datamodule import EpochShuffleSampler, PlaneDataModule, prepare_data
from fbad.config import compose
from fbad.data.records import Label, Plane
from fbad.errors import DatasetError


@pytest.fixture(scope="module")
def prepared(small_phantom, tmp_path_factory):
    cfg = compose("train", [f"dataset.root={small_phantom}", "preprocess.image_size=32"])
    return prepare_data(cfg.dataset, cfg.preprocess, tmp_path_factory.mktemp("cache"), seed=0, workers=1,
                        progress=False), cfg


def test_per_plane_loaders(prepared):
    data, cfg = prepared
    dm = PlaneDataModule(data, Plane.TRANS_CEREBELLUM, batch_size=4, augment=cfg.data.augment)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 1, 32, 32) and batch["image"].dtype == torch.float32
    assert float(batch["image"].min()) >= 0.0 and float(batch["image"].max()) <= 1.0
    assert all(r.plane == Plane.TRANS_CEREBELLUM for split in dm.datasets.values() for r in split.records)
    assert all(r.label == Label.NORMAL for r in dm.datasets["train"].records)
    # counts against the split itself (and the preprocessing skips), not against rows()
    failed = {r.path for r in data.records if data.cache.row_of[data.records.index(r)] < 0}
    for split in ("train", "val", "test"):
        for plane in ("trans_thalamic", "trans_cerebellum", "trans_ventricular"):
            expected = sum(1 for r in getattr(data.splits, split) if str(r.plane) == plane and r.path not in failed)
            assert data.counts()[plane][split] == expected
    assert len(dm.datasets["train"]) == data.counts()["trans_cerebellum"]["train"]


def test_augmentation_only_on_train(prepared):
    data, cfg = prepared
    strong = [{"_target_": "albumentations.HorizontalFlip", "p": 1.0}]
    dm = PlaneDataModule(data, Plane.TRANS_THALAMIC, batch_size=64, augment=strong)
    for split, flipped in (("train", True), ("val", False)):
        ds = dm.datasets[split]
        if not len(ds):
            continue
        item = ds[0]
        raw = np.asarray(data.cache.arrays["image"][ds.rows[0]], dtype=np.float32)
        expect = raw[:, ::-1] if flipped else raw
        assert np.allclose(item["image"][0].numpy(), expect, atol=1e-6)


def test_sampler_depends_only_on_seed_and_epoch():
    a, b = EpochShuffleSampler(50, seed=3), EpochShuffleSampler(50, seed=3)
    a.set_epoch(4)
    b.set_epoch(4)
    assert list(a) == list(b) and sorted(a) == list(range(50))
    b.set_epoch(5)
    assert list(a) != list(b)


def test_a_fixed_epoch_length_walks_whole_permutations():
    s = EpochShuffleSampler(50, seed=3, length=120)
    idx = list(s)
    assert len(s) == len(idx) == 120
    assert sorted(idx[:50]) == sorted(idx[50:100]) == list(range(50))  # every image before any repeats
    assert len(set(idx[100:])) == 20
    assert idx == list(EpochShuffleSampler(50, seed=3, length=120))
    assert len(EpochShuffleSampler(50, seed=3, length=None)) == 50


def test_empty_plane_is_a_clear_error(prepared):
    data, _ = prepared
    with pytest.raises(DatasetError, match="plane other: no normal training images"):
        PlaneDataModule(data, Plane.OTHER)
