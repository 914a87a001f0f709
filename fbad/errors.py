"""Every user-facing exception of fbad, and the decorator that reports them as one line, not a traceback.

This module imports nothing from fbad, so every stage can raise these without importing a later one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class UserError(ValueError):
    """Bad input a user can fix (an unknown experiment, a run missing artifacts): one line, no traceback."""


class DatasetError(ValueError):
    """A dataset that cannot be read at all (missing index, wrong columns, empty)."""


class BadImageError(ValueError):
    """An input image that cannot be used; `reason` is short enough for a skipped.csv row."""

    def __init__(self, path: Path | str, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class FetchError(RuntimeError):
    """A dataset could not be downloaded, verified or unpacked; the message says what to do."""


USER_ERRORS: tuple[type[BaseException], ...] = (UserError, DatasetError, BadImageError, FetchError, FileNotFoundError)


def report_user_errors(fn: F) -> F:
    """Turn the errors that describe bad input into `SystemExit("fbad: ...")` (exit status 1)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as exc:
            raise SystemExit(f"fbad: error: {exc}") from None

    return wrapper  # type: ignore[return-value]
