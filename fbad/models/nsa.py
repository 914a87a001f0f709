"""The self-supervised synthetic-anomaly model: a U-Net that maps an image to the probability, per pixel,
that it does not belong to normal anatomy, trained on normal frames with pieces of other normal frames
Poisson-blended in (`fbad.anomaly.synthetic`; Schlüter et al., "Natural Synthetic Anomalies for
Self-supervised Anomaly Detection and Localization", ECCV 2022).

Its output is the anomaly map itself (`output_kind = "map"`); `logits` is what the loss trains.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fbad.segmentation.learned.net import UNet


class SyntheticAnomalyNet(nn.Module):
    output_kind = "map"

    def __init__(self, widths: Sequence[int] = (16, 32, 64, 128), in_channels: int = 1) -> None:
        super().__init__()
        self.unet = UNet(widths, in_channels=in_channels, out_channels=1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.unet(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Anomaly probability map (B, 1, H, W) in [0, 1]."""
        return torch.sigmoid(self.unet(x))
