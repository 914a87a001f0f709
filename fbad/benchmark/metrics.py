"""Detection figures of one method on one suite's test frames, from per-image scores and decisions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from fbad.anomaly.thresholds import ThresholdResult, apply_threshold
from fbad.data.records import Label, Record


def sensitivity_at_specificity(scores: np.ndarray, labels: np.ndarray, specificity: float) -> float:
    """The largest share of abnormal frames flagged by a threshold that keeps at least `specificity` of the
    normal frames (higher score = more abnormal)."""
    if labels.min() == labels.max():
        return float("nan")
    fpr, tpr, _ = roc_curve(labels, scores)
    ok = fpr <= 1.0 - specificity + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0


def detection_figures(scores: np.ndarray, labels: np.ndarray, flagged: np.ndarray,
                      classes: Sequence[str | None]) -> dict[str, float]:
    """AUROC, AUPRC, sensitivity at specificity 0.90 / 0.95, and at the calibrated threshold (`flagged`)
    sensitivity, specificity and F1; AUROC of each abnormal class against all normal frames (`auroc/<class>`).
    `labels`: 1 abnormal, 0 normal; scores oriented so that higher is more abnormal."""
    scores, labels, flagged = np.asarray(scores, float), np.asarray(labels, int), np.asarray(flagged, bool)
    both = 0 < labels.sum() < len(labels)
    tp = int((flagged & (labels == 1)).sum())
    fp = int((flagged & (labels == 0)).sum())
    fn = int((~flagged & (labels == 1)).sum())
    tn = int((~flagged & (labels == 0)).sum())
    out = {
        "auroc": float(roc_auc_score(labels, scores)) if both else float("nan"),
        "auprc": float(average_precision_score(labels, scores)) if both else float("nan"),
        "sens_at_spec90": sensitivity_at_specificity(scores, labels, 0.90) if both else float("nan"),
        "sens_at_spec95": sensitivity_at_specificity(scores, labels, 0.95) if both else float("nan"),
        "sensitivity": tp / (tp + fn) if tp + fn else float("nan"),
        "specificity": tn / (tn + fp) if tn + fp else float("nan"),
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan"),
        "n_normal": float((labels == 0).sum()),
        "n_abnormal": float((labels == 1).sum()),
    }
    normal = labels == 0
    names = np.array([str(c) if c else "unknown" for c in classes], dtype=object)
    for c in sorted(set(names[labels == 1])):
        sel = normal | ((labels == 1) & (names == c))
        if normal.any():
            out[f"auroc/{c}"] = float(roc_auc_score(labels[sel], scores[sel]))
    return out


@dataclass
class PairResult:
    """One method on one suite: its figures and every test frame's score and decision."""

    suite: str
    method: str
    figures: dict[str, float]
    scores: pd.DataFrame  # path, label (1/0), class, score (higher = more abnormal), flagged, failed, reason
    run_id: str
    seconds: float
    extra: dict[str, float] = field(default_factory=dict)


def record_labels(records: Sequence[Record]) -> np.ndarray:
    """1 abnormal, 0 normal, -1 unknown (measured nowhere), per record."""
    return np.array([1 if r.label == Label.ABNORMAL else 0 if r.label == Label.NORMAL else -1 for r in records])


def scores_table(test: Sequence[Record], scores: np.ndarray, thr: ThresholdResult, reasons: dict[str, str],
                 run_id: str) -> pd.DataFrame:
    """The per-frame table of a reference row (NaN score: the frame failed, with its reason), its threshold
    logged to the pair's run."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    client.log_param(run_id, "threshold.name", thr.strategy)
    client.log_metric(run_id, "threshold", thr.value)
    failed = ~np.isfinite(scores)
    return pd.DataFrame({
        "path": [str(r.path) for r in test], "label": record_labels(test), "class": [r.anomaly_type for r in test],
        "score": scores, "flagged": np.where(failed, False, apply_threshold(np.nan_to_num(scores), thr)),
        "failed": failed, "reason": [reasons.get(str(r.path), "") for r in test]})
