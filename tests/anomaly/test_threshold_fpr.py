"""threshold=fpr: a threshold from the normal validation scores only, with an exact interval for its rate."""

from __future__ import annotations

import io
import json
import warnings

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from scipy.stats import beta

from fbad.anomaly import STRATEGIES, CalibrationWarning, ThresholdResult, apply_threshold, calibrate_threshold
from fbad.anomaly.thresholds import calibrate_from_config
from fbad.config import compose


def clopper_pearson(k: int, n: int, level: float = 0.95) -> list[float]:
    """The textbook exact interval, written out from the beta quantiles."""
    a = (1 - level) / 2
    low = 0.0 if k == 0 else beta.ppf(a, k, n - k + 1)
    high = 1.0 if k == n else beta.ppf(1 - a, k + 1, n - k)
    return [float(low), float(high)]


def quiet(*args, **kwargs) -> ThresholdResult:
    with warnings.catch_warnings():
        warnings.simplefilter("error", CalibrationWarning)
        return calibrate_threshold(*args, **kwargs)


def test_one_to_hundred_flags_exactly_five() -> None:
    scores = np.arange(1.0, 101.0)
    r = quiet(scores, "fpr", target=0.05)
    assert r.strategy == "fpr" and "fpr" in STRATEGIES
    assert int(apply_threshold(scores, r).sum()) == 5
    assert 95.0 <= r.value < 96.0
    assert r.params["fpr"] == 0.05 and r.params["n"] == 100 and r.params["flagged"] == 5
    assert r.params["target"] == 0.05
    assert r.params["fpr_ci95"] == pytest.approx(clopper_pearson(5, 100), rel=1e-9)
    lo, hi = r.params["fpr_ci95"]
    assert lo < 0.05 < hi and hi > 0.1  # 100 validation images leave the true rate uncertain


@pytest.mark.parametrize("target", [0.01, 0.05, 0.1, 0.29, 0.5])
@pytest.mark.parametrize("n", [100, 137, 1000])
def test_reaches_the_largest_achievable_rate_without_exceeding_it(target: float, n: int) -> None:
    scores = np.random.default_rng(n).normal(size=n)
    r = quiet(scores, "fpr", target=target)
    k = int(apply_threshold(scores, r).sum())
    assert k == int(np.floor(n * target + 1e-9))  # distinct scores: every k/n is reachable (0.29*100 -> 29)
    assert r.params["fpr"] == k / n and r.params["fpr_ci95"] == pytest.approx(clopper_pearson(k, n), rel=1e-9)


def test_ties_never_exceed_the_target() -> None:
    # 90 low scores, then 10 equal top scores: flagging any of the ties flags all ten (10 % > 5 %)
    scores = np.r_[np.arange(90.0), np.full(10, 500.0)]
    r = quiet(np.random.default_rng(0).permutation(scores), "fpr", target=0.05)
    assert int(apply_threshold(scores, r).sum()) == 0 and r.params["fpr"] == 0.0
    assert r.params["fpr_ci95"] == pytest.approx(clopper_pearson(0, 100), rel=1e-9)
    # 3 distinct top scores above a tie block: those three are the most that can be flagged
    scores = np.r_[np.arange(80.0), np.full(17, 100.0), [200.0, 300.0, 400.0]]
    r = quiet(scores, "fpr", target=0.05)
    assert int(apply_threshold(scores, r).sum()) == 3 and r.params["flagged"] == 3
    # ties everywhere, on a grid of few values
    rng = np.random.default_rng(1)
    for _ in range(20):
        scores = rng.integers(0, 6, size=200).astype(float)
        target = float(rng.uniform(0.02, 0.4))
        r = calibrate_threshold(scores, "fpr", target=target)
        k = int(apply_threshold(scores, r).sum())
        best = max(int((scores > v).sum()) for v in [-1.0, *np.unique(scores)] if (scores > v).sum() <= 200 * target)
        assert k <= 200 * target and k == best and r.params["flagged"] == k


def test_below_direction_is_mirrored() -> None:
    scores = np.arange(1.0, 101.0)
    r = quiet(scores, "fpr", direction="below", target=0.05)
    flagged = apply_threshold(scores, r)
    assert r.direction == "below" and flagged.sum() == 5 and scores[flagged].tolist() == [1, 2, 3, 4, 5]
    up = quiet(-scores, "fpr", target=0.05)
    assert r.value == -up.value and r.params == up.params


def test_abnormal_scores_are_ignored_and_non_finite_dropped() -> None:
    normal = np.arange(1.0, 101.0)
    plain = quiet(normal, "fpr", target=0.05)
    assert quiet(normal, "fpr", abnormal_scores=np.arange(50.0, 500.0), target=0.05) == plain
    with pytest.warns(CalibrationWarning, match="non-finite"):
        r = calibrate_threshold(np.r_[normal, np.nan, np.inf], "fpr", target=0.05)
    assert (r.value, r.params["n"], r.params["flagged"]) == (plain.value, 100, 5)


def test_small_sets_warn() -> None:
    with pytest.warns(CalibrationWarning, match="only 15 normal"):
        r = calibrate_threshold(np.arange(15.0), "fpr", target=0.1)  # achievable (1 of 15) but below min_count
    assert r.params["flagged"] == 1 and len(r.warnings) == 1
    with pytest.warns(CalibrationWarning, match="not achievable with 19 normal scores"):
        r = calibrate_threshold(np.arange(19.0), "fpr", target=0.05, min_count=5)
    assert r.params["flagged"] == 0 and r.value == 18.0 and r.params["fpr_ci95"][1] == pytest.approx(
        clopper_pearson(0, 19)[1], rel=1e-9)
    quiet(np.arange(20.0), "fpr", target=0.05)  # 1 of 20 is exactly 5 %: fine


def test_bad_parameters() -> None:
    for target in (0.0, 1.0, -0.1, 2.0):
        with pytest.raises(ValueError, match="fpr target"):
            calibrate_threshold(np.arange(100.0), "fpr", target=target)
    with pytest.raises(ValueError, match="unknown parameters"):
        calibrate_threshold(np.arange(100.0), "fpr", q=99)


def test_train_config_and_saved_forms() -> None:
    cfg = compose("train", ["threshold=fpr"])
    assert cfg.threshold.name == "fpr" and cfg.threshold.target == 0.05
    normal = np.random.default_rng(0).gamma(2.0, size=400)
    # exactly how fbad.training builds the plane's threshold from cfg.threshold
    with warnings.catch_warnings():
        warnings.simplefilter("error", CalibrationWarning)
        thr = calibrate_from_config(normal, OmegaConf.to_container(cfg.threshold, resolve=True),
                                    abnormal_scores=normal + 5, direction="above")
    assert thr.strategy == "fpr" and int(apply_threshold(normal, thr).sum()) == 20
    d = thr.to_dict()
    assert ThresholdResult(**json.loads(json.dumps(d))) == thr  # thresholds.json / resume state
    buf = io.BytesIO()
    torch.save({"threshold": d}, buf)  # the saved plane model is loaded with weights_only=True
    buf.seek(0)
    assert torch.load(buf, weights_only=True)["threshold"] == d
    other = compose("train", ["threshold=fpr", "threshold.target=0.1"])
    assert calibrate_from_config(normal, OmegaConf.to_container(other.threshold)).params["flagged"] == 40


def test_full_sweep_space_offers_fpr() -> None:
    from fbad.sweep.objective import check_threshold_objective
    from fbad.sweep.space import parse_space

    space = parse_space(compose("sweep", ["sweep=full"]).sweep.params)
    assert any(p.name == "threshold" and "fpr" in str(p.spec) for p in space)
    check_threshold_objective(["val_f1_mean"], space, [])  # fits on normals only: fine beside val_f1
