"""The small plain CNN trunk shared by the plane classifier and the feature-embedding anomaly models.

One definition, so that the weights a plane classifier learns on real frames (`fbad train-planes`) load
into PatchCore's backbone unchanged: same layer layout, same state-dict keys (`features.<i>.*`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

DEFAULT_WIDTHS = (8, 16, 32, 64, 128)


def conv_blocks(widths: Sequence[int], convs_per_block: int = 2, in_channels: int = 1) -> nn.Sequential:
    """Conv-BN-ReLU blocks (`convs_per_block` convolutions each), each block ending in a 2x2 max pool."""
    if not widths:
        raise ValueError("widths must name at least one block")
    layers: list[nn.Module] = []
    c = in_channels
    for w in widths:
        for _ in range(convs_per_block):
            layers += [nn.Conv2d(c, int(w), 3, padding=1, bias=False), nn.BatchNorm2d(int(w)), nn.ReLU(inplace=True)]
            c = int(w)
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


def block_outputs(features: nn.Sequential, x: torch.Tensor, blocks: Sequence[int]) -> list[torch.Tensor]:
    """The outputs of the given blocks (0 = the first, after its pool) of a `conv_blocks` trunk; runs only
    as deep as the deepest block asked for."""
    wanted, out = sorted(set(int(b) for b in blocks)), {}
    block = 0
    for layer in features:
        x = layer(x)
        if isinstance(layer, nn.MaxPool2d):
            if block in wanted:
                out[block] = x
            if block == wanted[-1]:
                break
            block += 1
    missing = [b for b in wanted if b not in out]
    if missing:
        raise ValueError(f"blocks {missing} do not exist: the trunk has {block + 1} blocks")
    return [out[int(b)] for b in blocks]
