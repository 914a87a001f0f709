"""The learned segmenter's weights file: one self-contained `segmenter.pt` (a dict of plain tensors, the network
and working-size configuration, the border calibration and the names of the images trained/validated on, so
evaluation can exclude them), read with `torch.load(weights_only=True)` only."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from fbad.segmentation.learned.net import UNet
from fbad.tracking.artifacts import file_digest, load_weights_file, save_weights_file

WEIGHTS_FORMAT = "fbad-learned-seg/1"
WEIGHTS_NAME = "segmenter.pt"


def make_weights(net: UNet, work_hw: tuple[int, int], trained_on: Sequence[str],
                config: Mapping[str, Any] | None = None, calibration: Mapping[str, float] | None = None) -> dict:
    """Everything inference needs, as plain tensors and builtins (loadable with weights_only=True)."""
    return {
        "format": WEIGHTS_FORMAT,
        "state_dict": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
        "model": {"widths": [int(w) for w in net.widths]},
        "work_size": [int(work_hw[0]), int(work_hw[1])],
        "trained_on": sorted(set(trained_on)),
        "calibration": {k: float(v) for k, v in (calibration or {}).items()},
        "config": dict(config or {}),
    }


def save_weights(path: str | Path, net_or_bundle: UNet | Mapping[str, Any],
                 work_hw: tuple[int, int] | None = None, trained_on: Sequence[str] = (),
                 config: Mapping[str, Any] | None = None) -> Path:
    """Write the self-contained weights file (a bundle from `make_weights`, or a network to bundle first)."""
    # a network comes with its working size
    bundle = net_or_bundle if isinstance(net_or_bundle, Mapping) else make_weights(
        net_or_bundle, cast(tuple[int, int], work_hw), trained_on, config)
    return save_weights_file(path, bundle)


def load_weights(source: str | Path, tracking_uri: str | None = None) -> dict[str, Any]:
    """The weights bundle (see `save_weights`), checked for the expected format."""

    return load_weights_file(source, WEIGHTS_NAME, "segmentation weights", WEIGHTS_FORMAT, tracking_uri)


def weights_digest(source: str | Path, tracking_uri: str | None = None) -> str:
    """What the weights behind `source` are, whatever it is called (see `file_digest`)."""

    return file_digest(source, WEIGHTS_NAME, "segmentation weights", tracking_uri)


def net_from_bundle(bundle: Mapping[str, Any]) -> UNet:
    net = UNet(bundle["model"]["widths"])
    net.load_state_dict(bundle["state_dict"])
    return net.eval()
