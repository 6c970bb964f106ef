"""Errors that are the user's to fix: shown as one line, without a traceback.

Anything else is a bug and keeps its full traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class UserError(Exception):
    """Bad input (config value, file, path). The message says what is wrong and how to fix it."""


class ParameterError(UserError, ValueError):
    """A constructor argument out of range; `key` is the argument's name in its config group."""

    def __init__(self, key: str, value: Any, accepted: str) -> None:
        self.key, self.value, self.accepted = key, value, accepted
        super().__init__(f"{key}={value!r} is invalid: must be {accepted}")

    def under(self, group: str) -> ParameterError:
        """The same error with the key prefixed by its config group (`alpha` -> `prior.alpha`)."""
        return ParameterError(f"{group}.{self.key}", self.value, self.accepted)


def require(ok: bool, key: str, value: Any, accepted: str) -> None:
    """Raise ParameterError(key, value, accepted) unless `ok`."""
    if not ok:
        raise ParameterError(key, value, accepted)


@contextmanager
def exit_on_user_error(cleanup: Callable[[], None] | None = None) -> Iterator[None]:
    """For entry points: a UserError becomes one line `error: ...` on stderr and exit status 2, after
    `cleanup()`; with HYDRA_FULL_ERROR=1 it keeps its traceback."""
    try:
        yield
    except UserError as err:
        if cleanup is not None:
            cleanup()
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
