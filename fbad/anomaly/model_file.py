"""A trained plane model as one self-contained file (`model.pt`): weights, model and score config,
preprocessing config and calibrated threshold, loadable with `torch.load(weights_only=True)`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from fbad.anomaly.scorer import PlaneScorer, Scoring
from fbad.anomaly.thresholds import ThresholdResult
from fbad.tracking.artifacts import load_weights_file, save_weights_file

FORMAT = "fbad.plane_model/1"
NAME = "model.pt"


def save_plane_model(module: Scoring, cfg: DictConfig, thr: ThresholdResult, path: Path,
                     plane: str) -> Path:
    """Write the plane model; with `segmentation=learned` it records the segmenter's weights digest, since a
    path or alias may later point to other weights than the model was trained on."""
    preprocess = OmegaConf.to_container(cfg.preprocess, resolve=True)
    blob: dict[str, Any] = {
        "format": FORMAT,
        "plane": plane,
        "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "score": OmegaConf.to_container(cfg.score, resolve=True),
        "preprocess": preprocess,
        "threshold": thr.to_dict(),
    }
    seg = preprocess.get("segmentation") or {}  # type: ignore[union-attr]
    if seg.get("name") == "learned":
        from fbad.segmentation.learned.weights import weights_digest

        blob["segmenter_sha256"] = weights_digest(seg["weights"], seg.get("tracking_uri"))
    return save_weights_file(path, blob)


def load_plane_model(path: Path | str) -> tuple[PlaneScorer, dict[str, Any]]:
    """Inverse of `save_plane_model`, for inference (no Lightning); never unpickles code."""
    blob = load_weights_file(path, NAME, "plane model", FORMAT)
    module = PlaneScorer(blob["model"], blob["score"], plane=blob["plane"])
    module.load_state_dict(blob["state_dict"])
    module.eval()
    return module, blob
