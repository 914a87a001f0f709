"""Anomaly scoring, per-plane thresholds and evaluation metrics (library code, no Lightning/Hydra)."""

from fbad.anomaly.metrics import detection_rate_by, evaluate, pixel_auroc, pr_curve_data, roc_curve_data
from fbad.anomaly.scoring import ScoreSpec, anomaly_map, image_scores, mean_intensity, score_images
from fbad.anomaly.thresholds import (
    STRATEGIES,
    CalibrationWarning,
    ThresholdResult,
    apply_threshold,
    calibrate_from_config,
    calibrate_threshold,
)

__all__ = [
    "STRATEGIES",
    "CalibrationWarning",
    "ScoreSpec",
    "ThresholdResult",
    "anomaly_map",
    "apply_threshold",
    "calibrate_from_config",
    "calibrate_threshold",
    "detection_rate_by",
    "evaluate",
    "image_scores",
    "mean_intensity",
    "pixel_auroc",
    "pr_curve_data",
    "roc_curve_data",
    "score_images",
]
