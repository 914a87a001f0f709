"""The plane classifier network: a small plain CNN (no Lightning), fast enough to train on a laptop CPU."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fbad.models.backbone import DEFAULT_WIDTHS, conv_blocks


class PlaneNet(nn.Module):
    """Conv-BN-ReLU blocks, each halving the resolution, then global average pooling and a linear head.

    Two convolutions per block (`convs_per_block`) widen the receptive field cheaply: the deepest block
    of a 96 px input sees the whole head, which the plane depends on (thalami vs. cerebellum vs. atria).
    """

    def __init__(self, n_classes: int, widths: Sequence[int] = DEFAULT_WIDTHS, convs_per_block: int = 2,
                 dropout: float = 0.2, in_channels: int = 1):
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {n_classes}")
        self.n_classes, self.widths = int(n_classes), [int(w) for w in widths]
        self.convs_per_block, self.dropout = int(convs_per_block), float(dropout)
        self.features = conv_blocks(self.widths, self.convs_per_block, in_channels)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(self.dropout),
                                  nn.Linear(self.widths[-1], self.n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, n_classes) of (N, 1, S, S) inputs in [0, 1]."""
        return self.head(self.features(x))

    def spec(self) -> dict[str, object]:
        """The constructor arguments, as builtins (stored in the weights file)."""
        return {"n_classes": self.n_classes, "widths": list(self.widths), "convs_per_block": self.convs_per_block,
                "dropout": self.dropout}
