"""Anomaly scoring, per-plane thresholds and evaluation metrics (library code, no Lightning/Hydra).

The names below load their module on first use (PEP 562), so that `fbad predict`, which needs scoring and
thresholds, does not pay for scikit-learn's metrics (about 0.7 s of start-up).
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "detection_rate_by": "metrics", "evaluate": "metrics", "pixel_auroc": "metrics", "pr_curve_data": "metrics",
    "roc_curve_data": "metrics",
    "ScoreSpec": "scoring", "anomaly_map": "scoring", "image_scores": "scoring", "mean_intensity": "scoring",
    "score_images": "scoring",
    "STRATEGIES": "thresholds", "CalibrationWarning": "thresholds", "ThresholdResult": "thresholds",
    "apply_threshold": "thresholds", "calibrate_from_config": "thresholds", "calibrate_threshold": "thresholds",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"fbad.anomaly.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'fbad.anomaly' has no attribute {name!r}")
