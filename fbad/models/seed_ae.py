"""The original study's Keras autoencoder, layer for layer, as the reproduction baseline.

Keras: Conv2D(32/64/128, 3, 'same', relu) + MaxPooling2D(2) three times; then Conv2D(128/64/32, 3,
'same', relu) + UpSampling2D(2) three times; then a linear Conv2D(channels, 3, 'same'). No batch norm,
no output activation: the reconstruction is unbounded, which the study's mean-intensity rule relied on.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class SeedAE(nn.Module):
    def __init__(self, in_channels: int = 1, widths: Sequence[int] = (32, 64, 128)) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.widths = tuple(int(w) for w in widths)
        enc: list[nn.Module] = []
        cin = in_channels
        for w in self.widths:
            enc += [nn.Conv2d(cin, w, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            cin = w
        dec: list[nn.Module] = []
        for w in reversed(self.widths):
            # Keras 'UpSampling2D' default is nearest-neighbour.
            dec += [nn.Conv2d(cin, w, 3, padding=1), nn.ReLU(inplace=True), nn.Upsample(scale_factor=2)]
            cin = w
        dec.append(nn.Conv2d(cin, in_channels, 3, padding=1))
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)

    @property
    def downsample_factor(self) -> int:
        return 2 ** len(self.widths)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.downsample_factor
        if x.shape[-1] % f or x.shape[-2] % f:
            raise ValueError(f"SeedAE needs H and W divisible by {f}, got {tuple(x.shape[-2:])}")
        return self.decoder(self.encoder(x))
