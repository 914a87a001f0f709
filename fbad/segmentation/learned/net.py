"""A small U-Net for binary masks (the `learned` head segmenter).

Sized for CPU training on a few hundred images: four resolution levels of 16-32-64-128 channels by default,
batch norm, bilinear upsampling (no checkerboard artefacts, fewer weights than transposed convolutions).
Any input size works: skip connections are padded to the decoder's size when a side is not divisible by
2^(levels-1).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """U-Net: (N, in_channels, H, W) -> (N, out_channels, H, W) logits."""

    def __init__(self, widths: Sequence[int] = (16, 32, 64, 128), in_channels: int = 1, out_channels: int = 1):
        super().__init__()
        widths = [int(w) for w in widths]
        if len(widths) < 2:
            raise ValueError(f"UNet needs at least 2 levels, got widths={widths}")
        self.widths = tuple(widths)
        self.enc = nn.ModuleList()
        cin = in_channels
        for w in widths:
            self.enc.append(_double_conv(cin, w))
            cin = w
        self.dec = nn.ModuleList(_double_conv(widths[i + 1] + widths[i], widths[i]) for i in range(len(widths) - 1))
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.enc):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for block in reversed(self.dec):
            skip = skips.pop()
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            dh, dw = skip.shape[-2] - x.shape[-2], skip.shape[-1] - x.shape[-1]
            if dh or dw:  # odd sizes: pooling floored, so the upsampled map is up to one pixel short
                x = F.pad(x, (0, dw, 0, dh), mode="replicate")
            x = block(torch.cat([skip, x], dim=1))
        return self.head(x)
