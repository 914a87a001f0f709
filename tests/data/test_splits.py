"""fbad's split: 4:1, patient-grouped, plane-stratified, deterministic, abnormal kept out of training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fbad.data.records import BRAIN_PLANES, Label, Record, Split
from fbad.data.splits import split_records


def _records(n_patients=100, seed=0):
    rng = np.random.default_rng(seed)
    recs = []
    for p in range(n_patients):
        for k in range(rng.integers(1, 5)):
            recs.append(Record(path=Path(f"/x/{p}_{k}.png"), patient_id=f"p{p}",
                               plane=BRAIN_PLANES[rng.integers(3)],
                               label=Label.ABNORMAL if rng.random() < 0.3 else Label.NORMAL,
                               split=Split.TEST if p % 10 == 0 else Split.TRAIN))
    return recs


def test_grouped_stratified_and_deterministic():
    recs = _records()
    s = split_records(recs, val_fraction=0.2, seed=1)
    assert sorted(map(id, s.train + s.val + s.test + s.excluded)) == sorted(map(id, recs))
    assert all(r.split == Split.TEST for r in s.test) and len(s.test) == sum(r.split == Split.TEST for r in recs)
    pats = {k: {r.patient_id for r in getattr(s, k)} for k in ("train", "val", "test")}
    assert not (pats["train"] & pats["val"]) and not (pats["train"] & pats["test"])
    assert not ({r.patient_id for r in s.excluded} & pats["val"])
    pool = len(s.train) + len(s.val) + len(s.excluded)
    assert 0.12 < len(s.val) / pool < 0.28
    for plane in BRAIN_PLANES:  # every plane is represented on both sides
        assert any(r.plane == plane for r in s.val) and any(r.plane == plane for r in s.train)
    again = split_records(recs, val_fraction=0.2, seed=1)
    assert [r.path for r in again.val] == [r.path for r in s.val]
    other = split_records(recs, val_fraction=0.2, seed=2)
    assert [r.path for r in other.val] != [r.path for r in s.val]


def test_abnormal_never_in_training():
    s = split_records(_records())
    assert all(r.label != Label.ABNORMAL for r in s.train)
    assert s.excluded and all(r.label == Label.ABNORMAL for r in s.excluded)
    assert any(r.label == Label.ABNORMAL for r in s.val)


def test_few_patients_and_bad_fraction():
    recs = _records(n_patients=3)
    s = split_records([r for r in recs if r.split != Split.TEST], val_fraction=0.2)
    assert not ({r.patient_id for r in s.train} & {r.patient_id for r in s.val})
    with pytest.raises(ValueError, match="val_fraction"):
        split_records(recs, val_fraction=1.5)


def test_a_test_patient_is_never_trained_or_validated_on(caplog):
    """An official test image's patient (or a pre-augmented copy of it) sitting in the training folders."""
    recs = _records()
    copies = [Record(path=Path(f"/x/aug_{r.path.stem}.png"), patient_id=r.patient_id, plane=r.plane, label=r.label,
                     split=Split.TRAIN) for r in recs if r.split == Split.TEST]
    s = split_records(recs + copies, val_fraction=0.2, seed=0)
    test_patients = {r.patient_id for r in s.test}
    assert not test_patients & {r.patient_id for r in s.train + s.val}
    assert all(c in s.excluded for c in copies)
    assert f"{len(copies)} images belong to patients of the test split" in caplog.text


def test_too_rare_planes_still_split_by_patient():
    recs = [Record(path=Path(f"/x/{i}.png"), patient_id=f"p{i % 7}", plane=BRAIN_PLANES[i % 3], label=Label.NORMAL,
                   split=Split.TRAIN) for i in range(9)]  # 7 patients, 3 images per plane: fewer than 5 folds
    s = split_records(recs, val_fraction=0.2, seed=0)
    assert s.val and s.train and not {r.patient_id for r in s.val} & {r.patient_id for r in s.train}
