"""Where the Hydra config tree lives, and composing it outside a Hydra app (tests, sweeps, notebooks)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig


def conf_dir() -> Path:
    """`conf/` beside the package in a checkout, or the copy shipped inside the package."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "conf", here / "conf"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"fbad config tree not found next to {here}")


CONF_DIR = str(conf_dir())


def compose(config_name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """The same config a command would see, e.g. compose("train", ["dataset.n_per_plane=8"])."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)


def alias_overrides(argv: Sequence[str], aliases: dict[str, str]) -> list[str]:
    """Rename `key=value` arguments whose key is also a config group (`model`, `experiment`).

    Hydra reads `model=…` as a choice in the `model` group; commands whose documented argument shares
    a group's name (`fbad predict model=runs:/…`) take it under another key.
    """
    out = []
    for arg in argv:
        key, eq, value = arg.partition("=")
        out.append(f"{aliases[key]}={value}" if eq and key in aliases else arg)
    return out
