"""Per-plane anomaly models as plain nn.Modules (no Lightning), built from the `model` config group.

A model's output is a reconstruction of its input (the default) or, where the class says
`output_kind = "map"`, the per-pixel anomaly map itself (PatchCore, the synthetic-anomaly U-Net `nsa`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from fbad.models.conv_ae import ConvAE
from fbad.models.losses import LOSSES, reconstruction_loss, ssim_map
from fbad.models.nsa import SyntheticAnomalyNet
from fbad.models.patchcore import PatchCore
from fbad.models.pca import PCABaseline
from fbad.models.seed_ae import SeedAE

MODELS: dict[str, type[nn.Module]] = {"seed_ae": SeedAE, "conv_ae": ConvAE, "pca": PCABaseline,
                                     "patchcore": PatchCore, "nsa": SyntheticAnomalyNet}
# Models fitted in closed form by `net.fit(images, masks)` on the normal training images, not by gradient steps.
CLOSED_FORM = frozenset({"pca", "patchcore"})

# Keys of a model yaml that configure its training, not its constructor.
TRAINING_KEYS = frozenset({"lr", "loss", "weight_decay", "ssim_weight", "optimizer", "scheduler", "epochs",
                           "synthesis"})


def split_model_config(cfg: Mapping[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(name, constructor kwargs, training kwargs) from a `model` config node (dict or DictConfig)."""
    cfg = _to_dict(cfg)
    if "name" not in cfg:
        raise ValueError(f"model config needs a 'name' (one of {sorted(MODELS)}), got keys {sorted(cfg)}")
    name = cfg.pop("name")
    train = {k: cfg.pop(k) for k in list(cfg) if k in TRAINING_KEYS}
    return name, cfg, train


def build_model(cfg: Mapping[str, Any]) -> nn.Module:
    """The model a `model` config names (`name: conv_ae` + constructor params + training keys)."""
    name, kwargs, _ = split_model_config(cfg)
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODELS)}")
    try:
        return MODELS[name](**kwargs)
    except TypeError as err:
        raise ValueError(f"bad parameters for model {name!r}: {err}") from err


def _to_dict(cfg: Mapping[str, Any]) -> dict[str, Any]:
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(cfg, DictConfig):
            return dict(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    return dict(cfg)


__all__ = [
    "LOSSES",
    "MODELS",
    "TRAINING_KEYS",
    "ConvAE",
    "CLOSED_FORM",
    "PCABaseline",
    "PatchCore",
    "SeedAE",
    "SyntheticAnomalyNet",
    "build_model",
    "reconstruction_loss",
    "split_model_config",
    "ssim_map",
]
