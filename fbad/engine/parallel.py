"""Map a function over items on all cores with a progress bar; one failure never stops the batch.

`safe_map` starts worker processes for one map and stops them after it; `WorkerPool` keeps them for several
maps (start-up, about half a second per worker, is then paid once). Workers run one thread each (OpenCV,
BLAS, torch if loaded) since one process per core already fills the machine, and they keep freed memory
instead of handing it back to the OS after every image (see `_keep_freed_memory`).
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

from fbad.engine.progress import progress_bar  # a bar on a terminal, log lines elsewhere
from fbad.errors import BadImageError

T = TypeVar("T")
R = TypeVar("R")
_FN: Callable[[Any], Any] | None = None


def _single_thread() -> None:
    """One thread per process for every numeric library already loaded (and torch, if imported later)."""
    import cv2

    cv2.setNumThreads(1)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")  # read by libraries loaded after this point (torch, lazily)
    if "torch" in sys.modules:  # never imported here just for this: it costs seconds per worker
        sys.modules["torch"].set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        pass


def _keep_freed_memory() -> None:
    """glibc returns large freed blocks (a decoded frame, its float copy) to the OS at once, so the next image
    page-faults the same memory in again: about a millisecond per full-resolution float array. A worker process
    keeps them instead (raised mmap and trim thresholds). No-op where glibc's mallopt is missing."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        libc.mallopt(m_mmap_threshold, 32 * 1024 * 1024)
        libc.mallopt(m_trim_threshold, 256 * 1024 * 1024)
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass


def _init_worker(fn: Callable[[Any], Any] | None = None) -> None:
    global _FN
    _single_thread()
    _keep_freed_memory()
    _FN = fn


def _call(item: Any) -> tuple[Any, str]:
    assert _FN is not None
    return _call_fn(_FN, item)


def _call_fn(fn: Callable[[Any], Any], item: Any) -> tuple[Any, str]:
    try:
        return fn(item), ""
    except BadImageError as exc:
        return None, exc.reason
    except Exception as exc:  # reported against the item, never raised
        return None, f"{type(exc).__name__}: {exc}"


def _call_chunk(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[tuple[Any, str]]:
    return [_call_fn(fn, it) for it in items]


def _ready(_: int) -> int:
    return os.getpid()


def _chunksize(n: int, workers: int) -> int:
    return max(1, min(64, n // (workers * 8)))


class WorkerPool:
    """Spawned worker processes kept for several `map` calls; use as a context manager (or call `close`).

    The function travels with each chunk of items, so one pool serves any picklable function.
    """

    def __init__(self, workers: int | None = None):
        self.workers = max(1, workers or os.cpu_count() or 1)
        self._pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"), initializer=_init_worker)

    def warm_up(self) -> None:
        """Start every worker now (imports included), so that the next map measures work, not start-up."""
        list(self._pool.map(_ready, range(4 * self.workers)))

    def map(self, fn: Callable[[T], R], items: Sequence[T], progress: bool = False, desc: str = "",
            chunksize: int | None = None) -> list[tuple[R | None, str]]:
        """[(result, "") or (None, reason)] in input order."""
        items = list(items)
        size = chunksize or _chunksize(len(items), self.workers)
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        out: list[tuple[R | None, str]] = []
        with progress_bar(total=len(items), desc=desc, unit="img", disable=not progress, mininterval=0.5) as bar:
            for done in self._pool.map(_call_chunk, [fn] * len(chunks), chunks):
                out.extend(done)
                bar.update(len(done))
        return out

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def _in_this_process() -> Iterator[None]:
    """One OpenCV / torch thread while mapping here, as in a worker; the caller's settings come back after."""
    import cv2

    cv_threads = cv2.getNumThreads()
    torch = sys.modules.get("torch")
    torch_threads = torch.get_num_threads() if torch is not None else None
    cv2.setNumThreads(1)
    if torch is not None:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(cv_threads)
        if torch is not None and torch_threads is not None:
            torch.set_num_threads(torch_threads)


def safe_map(fn: Callable[[T], R], items: Sequence[T], workers: int | None = None, progress: bool = True,
             desc: str = "", min_parallel: int = 64, pool: WorkerPool | None = None) -> list[tuple[R | None, str]]:
    """[(result, "") or (None, reason)] in input order. `fn` must pickle (it is sent to spawned workers).

    With `pool`, its running workers are used; otherwise workers are started for this call (when there are at
    least `min_parallel` items and more than one worker) and stopped after it.
    """
    if pool is not None:
        return pool.map(fn, items, progress=progress, desc=desc)
    workers = workers or os.cpu_count() or 1
    if workers <= 1 or len(items) < min_parallel:
        with _in_this_process():
            bar = dict(total=len(items), desc=desc, unit="img", disable=not progress, mininterval=0.5)
            return [_call_fn(fn, it) for it in progress_bar(items, **bar)]
    chunk = _chunksize(len(items), workers)
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                             initargs=(fn,)) as ex:
        bar = dict(total=len(items), desc=desc, unit="img", disable=not progress, mininterval=0.5)
        return list(progress_bar(ex.map(_call, items, chunksize=chunk), **bar))
