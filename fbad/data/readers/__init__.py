"""Dataset readers: each turns a dataset as its users hold it on disk into a list of `Record`s.

A reader never dies on one bad entry: entries whose files are missing go to the `SkipLog` with the
reason. Structural problems (no index file, wrong columns) raise `DatasetError` naming the file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from fbad.data.imageio import SkipLog
from fbad.data.records import Record
from fbad.errors import DatasetError


@dataclass
class ReadResult:
    records: list[Record]
    skipped: SkipLog = field(default_factory=SkipLog)


Reader = Callable[..., ReadResult]
_READERS: dict[str, str] = {
    "phantom": "fbad.data.readers.phantom:read_phantom",
    "fetal_planes_db": "fbad.data.readers.fetal_planes_db:read_fetal_planes_db",
    "hc18": "fbad.data.readers.hc18:read_hc18",
    "roboflow_abnormalities": "fbad.data.readers.roboflow:read_roboflow_abnormalities",
    "folder": "fbad.data.readers.folder:read_folder",
    "lesions": "fbad.data.readers.lesions:read_lesions",
    "union": "fbad.data.readers.union:read_union",
}


def get_reader(name: str) -> Reader:
    """The reader function registered under `name` (imported lazily)."""
    import importlib

    if name not in _READERS:
        raise DatasetError(f"unknown dataset {name!r}; available: {sorted(_READERS)}")
    module, func = _READERS[name].split(":")
    return getattr(importlib.import_module(module), func)


def read_dataset(cfg: Any) -> ReadResult:
    """Read the dataset described by a `dataset` config group (a mapping with `name` and `root`)."""
    from omegaconf import OmegaConf

    opts = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True)) if OmegaConf.is_config(cfg) else dict(cfg)
    name = opts.pop("name")
    return get_reader(name)(**opts)
