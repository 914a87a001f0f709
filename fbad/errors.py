"""Errors a user can act on are reported as one clear line, not a traceback."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class UserError(ValueError):
    """Bad input a user can fix (an unknown experiment, a run missing artifacts): one line, no traceback."""


def user_error_types() -> tuple[type[BaseException], ...]:
    from fbad.data.fetch import FetchError
    from fbad.data.imageio import BadImageError
    from fbad.data.readers import DatasetError

    return (UserError, DatasetError, BadImageError, FetchError, FileNotFoundError)


def report_user_errors(fn: F) -> F:
    """Turn the errors that describe bad input into `SystemExit("fbad: ...")` (exit status 1)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except user_error_types() as exc:
            raise SystemExit(f"fbad: error: {exc}") from None

    return wrapper  # type: ignore[return-value]
