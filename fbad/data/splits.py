"""fbad's train/validation/test assignment: patient-grouped, plane-stratified, deterministic."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from fbad.data.records import Label, Record, Split

log = logging.getLogger(__name__)


@dataclass
class Splits:
    train: list[Record]
    val: list[Record]
    test: list[Record]
    # abnormal images of training-side patients: kept out of a normal-only model's training set
    excluded: list[Record] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        return {k: len(getattr(self, k)) for k in ("train", "val", "test", "excluded")}


def split_records(records: list[Record], val_fraction: float = 0.2, seed: int = 0,
                  normal_only_train: bool = True) -> Splits:
    """Official test images stay test; the rest splits about (1-f):f by patient, stratified by plane (images of a
    test patient are left out: `excluded`).

    No patient is on both sides of train/val. With `normal_only_train`, abnormal images of
    training-side patients go to `excluded` rather than into training (and not into validation,
    which would break patient-disjointness).
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    test = [r for r in records if r.split == Split.TEST]
    pool = [r for r in records if r.split != Split.TEST]
    # a patient of the official test split (or an augmented copy of a test image, which shares its patient id)
    # must not be trained or validated on: those images are set aside
    test_patients = {r.patient_id for r in test}
    leaked = [r for r in pool if r.patient_id in test_patients]
    if leaked:
        log.warning("%d images belong to patients of the test split; left out of training and validation",
                    len(leaked))
        pool = [r for r in pool if r.patient_id not in test_patients]
    if not pool:
        return Splits(train=[], val=[], test=test, excluded=leaked)
    val_mask = _grouped_val_mask(pool, val_fraction, seed)
    train = [r for r, v in zip(pool, val_mask, strict=True) if not v]
    val = [r for r, v in zip(pool, val_mask, strict=True) if v]
    excluded: list[Record] = list(leaked)
    if normal_only_train:
        excluded += [r for r in train if r.label == Label.ABNORMAL]
        train = [r for r in train if r.label != Label.ABNORMAL]
    return Splits(train=train, val=val, test=test, excluded=excluded)


def hold_out_patients(records: Sequence[Record], fraction: float, seed: int,
                      stratum: Callable[[Record], str] | None = None) -> list[Record]:
    """Copies of the records where about `fraction` of the patients (stratified by `stratum`, default plane and
    label) are the test split and all others training-side: for datasets whose own test split is too small
    to measure on, or absent. The official split is ignored. The seed also picks which of the 1/fraction
    patient folds is held out (scikit-learn's StratifiedGroupKFold shuffles only groups of equal class mix, so
    with patients of several planes its first fold hardly moves with the seed): seeds 0 .. 1/fraction - 1 hold
    out disjoint patients, a cross-validation over seeds."""
    if not 0 < fraction < 1:
        raise ValueError(f"test fraction must be in (0, 1), got {fraction}")
    test = _grouped_val_mask(list(records), fraction, seed, stratum or _stratum, rotate_fold=True)
    return [replace(r, split=Split.TEST if t else Split.TRAIN) for r, t in zip(records, test, strict=True)]


def _grouped_val_mask(pool: list[Record], val_fraction: float, seed: int,
                      stratum: Callable[[Record], str] | None = None, rotate_fold: bool = False) -> np.ndarray:
    stratum = stratum or _stratum
    groups = np.array([r.patient_id for r in pool])
    n_groups = len(set(groups.tolist()))
    n_splits = max(2, round(1 / val_fraction))
    if n_groups < n_splits:  # too few patients to fold
        return _shuffled_groups_mask(groups, val_fraction, seed)
    if abs(1 / n_splits - val_fraction) > 0.01:  # patient folds come in whole fractions 1/k
        log.warning("val_fraction=%g: validation gets about 1/%d = %.2f of the patients", val_fraction, n_splits,
                    1 / n_splits)
    y = np.array([stratum(r) for r in pool])
    counts = Counter(y.tolist())
    if min(counts.values()) < n_splits:  # rare strata break stratification; fall back to plane only
        y = np.array([str(r.plane) for r in pool])
        if min(Counter(y.tolist()).values()) < n_splits:  # still too rare: no stratification at all
            return _shuffled_groups_mask(groups, val_fraction, seed)
    # with rotate_fold, seeds k * n_splits .. k * n_splits + n_splits - 1 take the folds of one partition
    sgkf = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed // n_splits if rotate_fold else seed)
    folds = sgkf.split(np.zeros(len(pool)), y, groups)
    _, val_idx = list(folds)[seed % n_splits] if rotate_fold else next(folds)
    mask = np.zeros(len(pool), dtype=bool)
    mask[val_idx] = True
    return mask


def _shuffled_groups_mask(groups: np.ndarray, val_fraction: float, seed: int) -> np.ndarray:
    """Whole patients set aside for validation by a seeded shuffle (no stratification)."""
    rng = np.random.default_rng(seed)
    uniq = np.array(sorted(set(groups.tolist())))
    rng.shuffle(uniq)
    n_val = max(1, round(val_fraction * len(uniq))) if len(uniq) > 1 else 0
    return np.isin(groups, uniq[:n_val])


def _stratum(r: Record) -> str:
    return f"{r.plane}|{r.label}"


def split_by_patient(records: Sequence[Record], fractions: Mapping[str, float], seed: int) -> dict[str, list[Record]]:
    """Seeded train/val/test split of images, grouped by patient (a patient's images share one split).

    Each split with a positive fraction gets at least one patient when there are enough patients.
    """
    names = ("train", "val", "test")
    frac = np.array([float(fractions.get(n, 0.0)) for n in names])
    if frac.sum() <= 0:
        raise ValueError(f"split fractions must sum to > 0, got {dict(fractions)}")
    frac = frac / frac.sum()
    patients = sorted({r.patient_id for r in records})
    order = np.random.default_rng(seed).permutation(len(patients))
    n = len(patients)
    counts = np.floor(frac * n).astype(int)
    for i in np.argsort(-(frac * n - counts))[: n - counts.sum()]:  # largest remainders
        counts[i] += 1
    for i in range(3):  # a requested split never ends up empty while another has patients to spare
        if frac[i] > 0 and counts[i] == 0:
            donor = int(np.argmax(counts))
            if counts[donor] > 1:
                counts[donor] -= 1
                counts[i] += 1
    bounds = np.concatenate([[0], np.cumsum(counts)])
    which = {patients[j]: names[k] for k in range(3) for j in order[bounds[k]: bounds[k + 1]]}
    out: dict[str, list[Record]] = {n_: [] for n_ in names}
    for r in records:
        out[which[r.patient_id]].append(r)
    return out
