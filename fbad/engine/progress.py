"""Progress of batch work: tqdm's bar on a terminal, plain log lines anywhere else (a log file, a pipe, a
batch system's output), where a redrawn bar becomes thousands of carriage returns."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger("fbad.progress")


class LogProgress:
    """tqdm's `update` / iteration / context-manager surface, writing a line at every 10 % (and at least every
    `every` seconds), with elapsed time and ETA."""

    def __init__(self, iterable: Iterable[Any] | None = None, total: int | None = None, desc: str = "",
                 unit: str = "img", every: float = 30.0, disable: bool = False, **_: Any):
        self.iterable, self.desc, self.unit = iterable, desc or "progress", unit
        self.every, self.disable = every, disable
        self.total = int(total) if total is not None else (len(iterable) if hasattr(iterable, "__len__") else 0)  # type: ignore[arg-type]
        self.n, self.t0, self.last_t, self.last_step = 0, time.perf_counter(), time.perf_counter(), -1

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.disable:
            return
        now = time.perf_counter()
        step = int(10 * self.n / self.total) if self.total else 0
        if step > self.last_step or now - self.last_t >= self.every or self.n == self.total:
            self.last_step, self.last_t = step, now
            elapsed = now - self.t0
            eta = elapsed / self.n * (self.total - self.n) if self.n and self.total else float("nan")
            pct = f" ({100 * self.n / self.total:.0f} %)" if self.total else ""
            log.info("%s: %d/%d %s%s, elapsed %.0f s, ETA %s", self.desc, self.n, self.total, self.unit, pct, elapsed,
                     "?" if eta != eta else f"{eta:.0f} s")

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable or ():
            yield item
            self.update(1)

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def progress_bar(iterable: Iterable[T] | None = None, **kwargs: Any) -> Any:
    """`tqdm(iterable, **kwargs)` on a terminal, `LogProgress` otherwise (same arguments: total, desc, unit,
    disable, mininterval)."""
    if sys.stderr.isatty():
        from tqdm.auto import tqdm

        return tqdm(iterable, **kwargs)
    return LogProgress(iterable, **kwargs)
