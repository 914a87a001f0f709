"""fbad's configurable convolutional autoencoder.

Depth is len(widths): each encoder stage halves H and W, each decoder stage doubles them. The bottleneck
is what makes an autoencoder an anomaly detector: a `dense` one (flatten -> latent vector -> back) can
only encode a global, normal-looking shape, so local anomalies are not reproduced; a `spatial` one
(1x1 conv to `latent_dim` channels) keeps position and is smaller, but lets more detail through.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

Downsample = Literal["stride", "pool"]
Norm = Literal["batch", "group", "none"]
Bottleneck = Literal["dense", "spatial"]
OutputActivation = Literal["sigmoid", "none"]


def _norm(kind: Norm, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(math.gcd(8, channels), channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; expected batch, group or none")


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=True)


def _down(cin: int, cout: int, downsample: Downsample, norm: Norm) -> nn.Sequential:
    bias = norm == "none"
    if downsample == "stride":
        conv = nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=bias)
        return nn.Sequential(conv, _norm(norm, cout), _act())
    if downsample == "pool":
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=bias), _norm(norm, cout), _act(), nn.MaxPool2d(2)
        )
    raise ValueError(f"unknown downsample {downsample!r}; expected stride or pool")


def _up(cin: int, cout: int, downsample: Downsample, norm: Norm) -> nn.Sequential:
    bias = norm == "none"
    if downsample == "stride":
        # kernel 4, stride 2, padding 1 doubles the size exactly.
        return nn.Sequential(
            nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=bias), _norm(norm, cout), _act()
        )
    return nn.Sequential(
        nn.Upsample(scale_factor=2), nn.Conv2d(cin, cout, 3, padding=1, bias=bias), _norm(norm, cout), _act()
    )


class ConvAE(nn.Module):
    def __init__(
        self,
        in_channels: int = 1,
        widths: Sequence[int] = (32, 64, 128, 256),
        downsample: Downsample = "stride",
        norm: Norm = "batch",
        latent_dim: int = 128,
        bottleneck: Bottleneck = "dense",
        dropout: float = 0.0,
        output_activation: OutputActivation = "sigmoid",
        input_size: int | Sequence[int] = 128,
    ) -> None:
        super().__init__()
        self.widths = tuple(int(w) for w in widths)
        if not self.widths:
            raise ValueError("widths must name at least one stage")
        self.in_channels = in_channels
        self.bottleneck = bottleneck
        self.latent_dim = latent_dim
        h, w = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
        self.input_size = (int(h), int(w))
        f = self.downsample_factor
        if bottleneck == "dense" and (h % f or w % f):
            raise ValueError(f"input_size {self.input_size} must be divisible by 2**depth = {f}")

        stages = [in_channels, *self.widths]
        self.encoder = nn.Sequential(*[_down(a, b, downsample, norm) for a, b in itertools.pairwise(stages)])
        ups = [*reversed(self.widths), self.widths[0]]
        self.decoder = nn.Sequential(*[_up(a, b, downsample, norm) for a, b in itertools.pairwise(ups)])
        self.head = nn.Conv2d(self.widths[0], in_channels, 3, padding=1)
        self.out_act: nn.Module = _output_activation(output_activation)

        c = self.widths[-1]
        if bottleneck == "dense":
            self._grid = (h // f, w // f)
            flat = c * self._grid[0] * self._grid[1]
            self.to_latent: nn.Module = nn.Sequential(nn.Flatten(), nn.Linear(flat, latent_dim))
            expand = nn.Linear(latent_dim, flat)
            self.from_latent: nn.Module = nn.Sequential(nn.Dropout(dropout), expand, _act())
        elif bottleneck == "spatial":
            self.to_latent = nn.Conv2d(c, latent_dim, 1)
            self.from_latent = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(latent_dim, c, 1), _act())
        else:
            raise ValueError(f"unknown bottleneck {bottleneck!r}; expected dense or spatial")

    @property
    def downsample_factor(self) -> int:
        return 2 ** len(self.widths)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_latent(self.encoder(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = self.from_latent(z)
        if self.bottleneck == "dense":
            h = h.view(h.shape[0], self.widths[-1], *self._grid)
        return self.out_act(self.head(self.decoder(h)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        return self.decode(self.encode(x))

    def _check_input(self, x: torch.Tensor) -> None:
        f = self.downsample_factor
        size = tuple(x.shape[-2:])
        if self.bottleneck == "dense" and size != self.input_size:
            raise ValueError(f"dense bottleneck built for input_size {self.input_size}, got {size}")
        if size[0] % f or size[1] % f:
            raise ValueError(f"ConvAE with depth {len(self.widths)} needs H, W divisible by {f}, got {size}")


def _output_activation(kind: OutputActivation) -> nn.Module:
    if kind == "sigmoid":
        return nn.Sigmoid()
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown output_activation {kind!r}; expected sigmoid or none")
