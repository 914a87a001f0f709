"""Disk cache of model-ready arrays, keyed by the input files' identity AND the preprocessing config.

A changed file (size or mtime), a changed record set or a changed config gives a new key (a miss);
an unchanged one loads memory-mapped arrays with no recompute. Like MONAI's PersistentDataset, but
the key covers the transform so the cache cannot go stale.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fbad.data.imageio import SkipLog
from fbad.data.records import Record
from fbad.engine.parallel import WorkerPool, safe_map

log = logging.getLogger(__name__)
CACHE_FORMAT = 1
PACKAGE_DIR = Path(__file__).resolve().parents[1]
ARRAY_DTYPES = {"image": np.float16, "mask": np.bool_, "anomaly": np.bool_}


@dataclass
class CachedArrays:
    """Arrays for the records that preprocessed cleanly; `row_of[i]` is record i's row or -1."""

    directory: Path
    key: str
    arrays: dict[str, np.ndarray]
    row_of: np.ndarray
    skipped: SkipLog
    hit: bool

    @property
    def dataset_hash(self) -> str:
        return self.key.split("-")[0]

    @property
    def config_hash(self) -> str:
        return self.key.split("-")[1]

    def __len__(self) -> int:
        return int((self.row_of >= 0).sum())


def file_identity(path: Path) -> str:
    try:
        st = path.stat()
    except OSError:
        return f"{path}|missing"
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def dataset_hash(records: Sequence[Record]) -> str:
    """Identity of every input file (image and ground-truth masks) and of the records' geometry."""
    h = hashlib.sha256()
    for r in records:
        for p in (r.path, r.anomaly_mask_path, r.brain_mask_path):
            h.update(b"\0" + (file_identity(p) if p is not None else "-").encode())
        h.update(json.dumps([r.ellipse and list(vars(r.ellipse).values())], default=str).encode())
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=8)
def source_digest(patterns: tuple[str, ...], package: Path = PACKAGE_DIR) -> str:
    """Digest of the fbad source files (globs relative to the package) that turn an input file into a cached
    array: put in a cache key, editing that code (or pulling a change) never serves arrays the old code made.
    Computed once per process (the source does not change under a running job)."""
    h = hashlib.sha256()
    for path in sorted({p for pattern in patterns for p in package.glob(pattern)}):
        h.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def config_hash(config: Any) -> str:
    blob = json.dumps({"format": CACHE_FORMAT, "config": config}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cache_key(records: Sequence[Record], config: Any) -> str:
    """The cache entry of (input files, preprocessing config): a change in either is a miss."""
    return f"{dataset_hash(records)}-{config_hash(config)}"


def cached_preprocess(
    records: Sequence[Record],
    fn: Callable[[Record], dict[str, np.ndarray]],
    config: Any,
    cache_dir: Path | str,
    workers: int | None = None,
    progress: bool = True,
    pool: WorkerPool | None = None,
) -> CachedArrays:
    """Arrays of `fn(record)` for every record, computed once per (files, config) and then loaded.

    A miss computes on `workers` processes started for this call, or on a running `pool` (which saves the
    start-up when several datasets or planes are preprocessed one after the other).
    """
    cache_dir = Path(cache_dir)
    key = cache_key(records, config)
    target = cache_dir / key
    if (target / "meta.json").is_file():
        log.info("preprocessing cache hit: %s", target)
        return _load(target, key, hit=True)

    t0 = time.perf_counter()
    results = safe_map(fn, records, workers=workers, progress=progress, desc="preprocess", pool=pool)
    log.info("preprocessed %d images in %.1fs", len(records), time.perf_counter() - t0)

    tmp = cache_dir / f"{key}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    ok = [res for res, _ in results if res is not None]
    row_of = np.full(len(records), -1, dtype=np.int64)
    row_of[[i for i, (res, _) in enumerate(results) if res is not None]] = np.arange(len(ok))
    if ok:
        for name in ok[0]:
            arr = np.lib.format.open_memmap(tmp / f"{name}.npy", mode="w+",
                                            dtype=ARRAY_DTYPES.get(name, ok[0][name].dtype),
                                            shape=(len(ok), *ok[0][name].shape))
            for i, res in enumerate(ok):
                arr[i] = res[name]
            arr.flush()
            del arr
    pd.DataFrame({
        "path": [str(r.path) for r in records],
        "row": row_of,
        "reason": [reason for _, reason in results],
    }).to_csv(tmp / "index.csv", index=False)
    (tmp / "meta.json").write_text(json.dumps({"key": key, "config": config, "n": len(records),
                                               "n_ok": len(ok)}, indent=2, default=str))
    if target.exists():  # another process finished the same key first
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.rename(target)
    return _load(target, key, hit=False)


def _load(target: Path, key: str, hit: bool) -> CachedArrays:
    index = pd.read_csv(target / "index.csv", keep_default_na=False)
    arrays = {p.stem: np.load(p, mmap_mode="r") for p in sorted(target.glob("*.npy"))}
    skipped = SkipLog()
    for path, row, reason in zip(index["path"], index["row"], index["reason"], strict=True):
        if row < 0:
            skipped.add(path, reason)
    return CachedArrays(directory=target, key=key, arrays=arrays, row_of=index["row"].to_numpy(np.int64),
                        skipped=skipped, hit=hit)
