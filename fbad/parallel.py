"""Map a function over items on all cores with a progress bar; one failure never stops the batch."""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

from tqdm.auto import tqdm

from fbad.data.imageio import BadImageError

T = TypeVar("T")
R = TypeVar("R")
_FN: Callable[[Any], Any] | None = None


def _init(fn: Callable[[Any], Any]) -> None:
    global _FN
    import cv2
    import torch

    # one process per core: threads inside a worker only fight the other workers
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    _FN = fn


def _call(item: Any) -> tuple[Any, str]:
    assert _FN is not None
    try:
        return _FN(item), ""
    except BadImageError as exc:
        return None, exc.reason
    except Exception as exc:  # reported against the item, never raised
        return None, f"{type(exc).__name__}: {exc}"


def safe_map(fn: Callable[[T], R], items: Sequence[T], workers: int | None = None, progress: bool = True,
             desc: str = "", min_parallel: int = 64) -> list[tuple[R | None, str]]:
    """[(result, "") or (None, reason)] in input order. `fn` must pickle (it is sent to spawned workers)."""
    workers = workers or os.cpu_count() or 1
    bar = dict(total=len(items), desc=desc, unit="img", disable=not progress, mininterval=0.5)
    if workers <= 1 or len(items) < min_parallel:
        _init(fn)
        return [_call(it) for it in tqdm(items, **bar)]
    chunk = max(1, min(64, len(items) // (workers * 8)))
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init,
                             initargs=(fn,)) as pool:
        return list(tqdm(pool.map(_call, items, chunksize=chunk), **bar))
