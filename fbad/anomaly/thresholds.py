"""Per-plane decision thresholds calibrated on validation scores.

Calibration never degenerates silently: a set that is too small, has no spread, or lacks the anomalies
a strategy needs produces a `CalibrationWarning` (also kept in `ThresholdResult.warnings`, so it can be
logged next to the threshold). Strategies are written for 'above' (abnormal = score > threshold); a
'below' score is calibrated on its negation, so every strategy works in both directions.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from fbad.anomaly.scoring import DIRECTIONS, Direction

STRATEGIES = ("percentile", "mean_std", "max_f1", "fpr", "fixed")
DEFAULT_MIN_COUNT = 20


class CalibrationWarning(UserWarning):
    """A threshold was calibrated on data that cannot support it well."""


@dataclass(frozen=True)
class ThresholdResult:
    value: float
    strategy: str
    warnings: list[str] = field(default_factory=list)
    direction: Direction = "above"
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def apply_threshold(
    scores: Sequence[float] | np.ndarray, result: ThresholdResult | float, direction: Direction = "above"
) -> np.ndarray:
    """Boolean array, True = abnormal: score > value ('above') or score < value ('below').

    A ThresholdResult brings its own direction; `direction` is used only with a bare float.
    """
    s = as_scores(scores)
    value, direction = resolve_threshold(result, direction)
    return s > value if direction == "above" else s < value


def calibrate_threshold(
    normal_scores: Sequence[float] | np.ndarray,
    strategy: str,
    abnormal_scores: Sequence[float] | np.ndarray | None = None,
    direction: Direction = "above",
    min_count: int = DEFAULT_MIN_COUNT,
    **params: Any,
) -> ThresholdResult:
    """Threshold from validation scores.

    percentile: q (default 99) percentile of normal scores (the (100 - q)th for 'below').
    mean_std:   mean + k * std of normal scores (k default 3; mean - k * std for 'below').
    max_f1:     the threshold maximising F1 over normal + abnormal scores, placed halfway between the
                two scores it separates; without abnormal scores it falls back to percentile (q).
    fpr:        the threshold flagging at most `target` (default 0.05) of the normal scores, as close to it as
                ties and the k/n steps allow; abnormal scores are ignored (a false-positive rate is a property
                of normals only). `params` gets the achieved rate `fpr`, `n`, `flagged` and `fpr_ci95`, the
                exact (Clopper-Pearson) 95 % interval of the true rate, so a small validation set shows.
    fixed:      value, as given.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown threshold strategy {strategy!r}; expected one of {STRATEGIES}")
    notes: list[str] = []
    if strategy == "fixed":
        if "value" not in params or params["value"] is None:
            raise ValueError("the fixed strategy needs a value")
        _reject_unknown(strategy, params, {"value"})
        return ThresholdResult(float(params["value"]), "fixed", notes, direction, dict(params))

    sign = 1.0 if direction == "above" else -1.0
    normal = sign * _finite(normal_scores, "normal", notes)
    if normal.size == 0:
        raise ValueError("cannot calibrate a threshold: no finite normal scores")
    _check_calibration_set(normal, min_count, notes)

    if strategy == "fpr":
        _reject_unknown(strategy, params, {"target"})
        value, stats = _fpr_threshold(normal, float(params.get("target", 0.05)), notes)
        return ThresholdResult(sign * value, "fpr", notes, direction, stats)

    if strategy == "max_f1":
        _reject_unknown(strategy, params, {"q"})
        abnormal = None if abnormal_scores is None else sign * _finite(abnormal_scores, "abnormal", notes)
        if abnormal is None or abnormal.size == 0:
            q = float(params.get("q", 99.0))
            _warn(
                notes,
                f"max_f1 needs labelled anomalies in the calibration set and got none; "
                f"falling back to percentile q={q}",
            )
            strategy, params = "percentile", {"q": q}
        else:
            value = _max_f1(normal, abnormal)
            return ThresholdResult(sign * value, "max_f1", notes, direction, dict(params))

    if strategy == "percentile":
        _reject_unknown(strategy, params, {"q"})
        q = float(params.get("q", 99.0))
        if not 0.0 <= q <= 100.0:
            raise ValueError(f"percentile q must lie in [0, 100], got {q}")
        value = float(np.percentile(normal, q))
    else:  # mean_std
        _reject_unknown(strategy, params, {"k"})
        k = float(params.get("k", 3.0))
        value = float(normal.mean() + k * normal.std())
    return ThresholdResult(sign * value, strategy, notes, direction, dict(params))


def calibrate_from_config(
    normal_scores: Sequence[float] | np.ndarray,
    cfg: Mapping[str, Any],
    abnormal_scores: Sequence[float] | np.ndarray | None = None,
    direction: Direction = "above",
) -> ThresholdResult:
    """calibrate_threshold with a `threshold` config node (`name: percentile`, `q: 99`, ...)."""
    params = dict(cfg)
    strategy = params.pop("name")
    return calibrate_threshold(normal_scores, strategy, abnormal_scores, direction, **params)


def _max_f1(normal: np.ndarray, abnormal: np.ndarray) -> float:
    scores = np.concatenate([normal, abnormal])
    labels = np.concatenate([np.zeros(normal.size), np.ones(abnormal.size)])
    from sklearn.metrics import precision_recall_curve  # here: applying a threshold needs no scikit-learn

    precision, recall, thr = precision_recall_curve(labels, scores)
    p, r = precision[:-1], recall[:-1]  # the last point has no threshold
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(p + r > 0, 2 * p * r / (p + r), 0.0)
    best = thr[int(np.argmax(f1))]  # precision_recall_curve predicts abnormal when score >= best
    # Move it halfway down to the next lower score so 'score > value' gives the same predictions.
    lower = scores[scores < best]
    if lower.size:
        return float((best + lower.max()) / 2)
    return float(best - max(1e-12, abs(best) * 1e-9))


def _fpr_threshold(normal: np.ndarray, target: float, notes: list[str]) -> tuple[float, dict[str, Any]]:
    """Largest k <= floor(target * n) that some threshold flags exactly (ties move together), the threshold
    halfway between the highest unflagged score and the lowest flagged one, and the achieved rate k/n with
    its exact binomial 95 % interval."""
    from scipy.stats import binomtest

    if not 0.0 < target < 1.0:
        raise ValueError(f"fpr target must lie in (0, 1), got {target}")
    n = normal.size
    k_max = int(np.floor(n * target + 1e-9))  # 0.29 * 100 is 28.999999999999996
    if k_max == 0:
        _warn(notes, f"fpr target {target:g} is not achievable with {n} normal scores (the smallest non-zero "
                     f"rate is 1/{n} = {1 / n:.3g}): nothing on validation is flagged")
    s = np.sort(normal)
    values = np.unique(s)
    above = n - np.searchsorted(s, values, side="right")  # scores flagged by a threshold at each value
    i = int(np.argmax(above <= k_max))  # the lowest such threshold flags the most
    value = float((values[i] + values[i + 1]) / 2) if i + 1 < values.size else float(values[i])
    k = int((normal > value).sum())  # counted again: a midpoint of adjacent floats may round onto a score
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    return value, {"target": target, "fpr": k / n, "n": int(n), "flagged": k,
                   "fpr_ci95": [float(ci.low), float(ci.high)]}


def _check_calibration_set(normal: np.ndarray, min_count: int, notes: list[str]) -> None:
    if normal.size < min_count:
        _warn(
            notes,
            f"only {normal.size} normal calibration scores (< {min_count}); the threshold is unreliable",
        )
    spread = float(normal.std())
    if spread <= 1e-12 * max(1.0, float(np.abs(normal).max())):
        _warn(
            notes,
            f"normal calibration scores have no spread (all ~{float(normal[0]):.6g}); the "
            f"threshold is degenerate",
        )


def _finite(scores: Sequence[float] | np.ndarray, what: str, notes: list[str]) -> np.ndarray:
    s = as_scores(scores)
    ok = np.isfinite(s)
    if not ok.all():
        _warn(notes, f"dropped {int((~ok).sum())} non-finite {what} scores before calibration")
    return s[ok]


def as_scores(scores: Any) -> np.ndarray:
    if hasattr(scores, "detach"):
        scores = scores.detach().cpu().numpy()
    return np.asarray(scores, dtype=np.float64).reshape(-1)


def resolve_threshold(result: ThresholdResult | float, direction: Direction) -> tuple[float, Direction]:
    if isinstance(result, ThresholdResult):
        return result.value, result.direction
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    return float(result), direction


def _reject_unknown(strategy: str, params: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = set(params) - allowed
    if unknown:
        raise ValueError(f"unknown parameters {sorted(unknown)} for threshold strategy {strategy!r}")


def _warn(notes: list[str], message: str) -> None:
    notes.append(message)
    warnings.warn(message, CalibrationWarning, stacklevel=3)
