"""`dataset=union`: several real datasets read as one, a source's split overridable."""

from __future__ import annotations

import pytest
from conftest import SHARED
from omegaconf import OmegaConf

from fbad.config import compose
from fbad.data.readers import read_dataset
from fbad.data.records import Label, Split
from fbad.data.splits import split_records
from fbad.errors import DatasetError


def test_union_of_real_sets_keeps_every_record_and_overrides_a_split():
    rf, hc = SHARED / "roboflow_abnormalities", SHARED / "hc18"
    if not rf.is_dir() or not hc.is_dir():
        pytest.skip(f"reference data not found at {SHARED}")
    alone_rf = read_dataset({"name": "roboflow_abnormalities", "root": str(rf)})
    alone_hc = read_dataset({"name": "hc18", "root": str(hc / "test_set"), "image_dir": "."})
    assert {r.split for r in alone_hc.records} == {Split.TEST}
    cfg = compose("train", ["dataset=union"]).dataset
    cfg = OmegaConf.merge(cfg, {"datasets": [{"name": "roboflow_abnormalities", "root": str(rf)},
                                             {"name": "hc18", "root": str(hc / "test_set"), "image_dir": ".",
                                              "split": "train"}]})
    read = read_dataset(cfg)
    assert len(read.records) == len(alone_rf.records) + len(alone_hc.records)
    hc_records = [r for r in read.records if r.patient_id.startswith("hc18test_")]
    assert len(hc_records) == len(alone_hc.records) and {r.split for r in hc_records} == {Split.TRAIN}
    # the Roboflow test frames stay the test split; the HC18 frames are normal training-side material only
    splits = split_records(read.records, val_fraction=0.2, seed=0)
    test_paths = {r.path for r in splits.test}
    assert test_paths == {r.path for r in alone_rf.records if r.split == Split.TEST}
    assert all(r.label == Label.NORMAL for r in hc_records)
    assert {r.patient_id for r in splits.train} & {r.patient_id for r in splits.val} == set()


def test_union_needs_sources_with_names():
    with pytest.raises(DatasetError, match="needs dataset.datasets"):
        read_dataset({"name": "union", "datasets": []})
    with pytest.raises(DatasetError, match="no name"):
        read_dataset({"name": "union", "datasets": [{"root": "x"}]})
