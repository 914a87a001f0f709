"""One plane's anomaly model for inference as a plain `nn.Module`: the network, its score rule and its threshold.

Predict, serving and the ONNX export need only this, so they load no Lightning (about 2 s of start-up on
2 cores); `AutoencoderModule` is the same scoring with Lightning's training loop around it. Both have the
same state-dict keys (`net.*`, `threshold`, `threshold_below`): a `model.pt` loads into either.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from fbad.anomaly.scoring import ScoreSpec, pixel_map, score_images
from fbad.models import build_model


class Scoring(nn.Module):
    """What scoring needs: the network, the score rule, the threshold buffers (they travel inside checkpoints
    and exports). A base of `PlaneScorer` and, before Lightning's, of `AutoencoderModule`."""

    net: nn.Module
    spec: ScoreSpec
    threshold: torch.Tensor
    threshold_below: torch.Tensor

    def _init_scoring(self, model: Mapping[str, Any], score: Mapping[str, Any] | None) -> None:
        self.net = build_model(model)
        self.spec = ScoreSpec.from_config(score)
        if getattr(self.net, "output_kind", "reconstruction") == "map":  # its output is the map: score it as one
            self.spec = dataclasses.replace(self.spec, method="map")
        self.register_buffer("threshold", torch.tensor(math.nan))
        self.register_buffer("threshold_below", torch.tensor(self.spec.direction == "below"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @torch.no_grad()
    def score_batch(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(image scores, per-pixel anomaly maps masked to the brain, raw outputs: reconstructions or maps)."""
        device = self.threshold.device
        x, mask = batch["image"].to(device), batch["mask"].to(device)
        recon = self.net(x)
        scores = score_images(recon, x, mask, self.spec)
        return scores, pixel_map(recon, x, self.spec) * mask, recon


class PlaneScorer(Scoring):
    """A trained plane model for inference (see the module docstring)."""

    def __init__(self, model: Mapping[str, Any], score: Mapping[str, Any] | None = None, plane: str = "all"):
        super().__init__()
        self.plane = plane
        self._init_scoring(model, score)
