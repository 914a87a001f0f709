"""Where the Hydra config tree lives, and composing it outside a Hydra app (tests, sweeps, notebooks)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from fbad.data.phantom.config import FORMAT_VERSION, PhantomConfig


def conf_dir() -> Path:
    """`conf/` beside the package in a checkout, or the copy shipped inside the package."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "conf", here / "conf"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"fbad config tree not found next to {here}")


CONF_DIR = str(conf_dir())
PHANTOM_NAME_KEYS = ("size", "n_per_plane", "seed")  # in the folder name itself
NOT_PHANTOM_SETTINGS = ("name", "root", "out", "workers", "generate", "overwrite", "paths", "hydra")


def phantom_dir(*, _parent_: DictConfig) -> str:
    """Folder name of a generated phantom (`${phantom_dir:}` in conf/): size, count and seed, plus a digest of
    every other generation setting that differs from the generator's defaults, so that `dataset.noise=2`
    generates its own phantom instead of reading the one made with the default noise."""
    import hashlib
    import json


    size, n, seed = (_parent_[k] for k in PHANTOM_NAME_KEYS)
    settings = {k: _parent_[k] for k in _parent_ if k not in (*PHANTOM_NAME_KEYS, *NOT_PHANTOM_SETTINGS)}
    settings = json.loads(json.dumps(OmegaConf.to_container(OmegaConf.create(settings), resolve=True)))
    defaults = PhantomConfig().to_dict()
    changed = {k: v for k, v in sorted(settings.items()) if defaults.get(k, object()) != v}
    name = f"phantom_s{size}_n{n}_seed{seed}"
    if changed or FORMAT_VERSION != 1:  # version 1 keeps the names phantoms were first written under
        blob = json.dumps({"format": FORMAT_VERSION, **changed}, sort_keys=True)
        name += "_" + hashlib.sha256(blob.encode()).hexdigest()[:8]
    return name


OmegaConf.register_new_resolver("phantom_dir", phantom_dir, replace=True)


def new_dir(path: str) -> str:
    """`path`, created now, or `path_2`, `path_3`, ... when a call started in the same second already took it:
    two `fbad train` of a job array must not write into one run folder (`${new_dir:...}` in conf/hydra)."""
    import os

    base, k = path, 1
    while True:
        try:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            os.mkdir(path)  # atomic: exactly one process creates a given folder
            return path
        except FileExistsError:
            k += 1
            path = f"{base}_{k}"


OmegaConf.register_new_resolver("new_dir", new_dir, replace=True, use_cache=True)


def compose(config_name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """The same config a command would see, e.g. compose("train", ["dataset.n_per_plane=8"])."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)


def plain_config(cfg: DictConfig) -> dict[str, Any]:
    """The config as builtins, resolved, without Hydra's own node (what a run logs and a model file keeps)."""
    keys = cast(list[str], [k for k in cfg if k != "hydra"])  # a DictConfig's keys are str
    return cast(dict[str, Any], OmegaConf.to_container(OmegaConf.masked_copy(cfg, keys), resolve=True))


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
