"""Errors that are the user's to fix: shown as one line, without a traceback.

Anything else is a bug and keeps its full traceback.
"""

from __future__ import annotations

from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig


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


def build(node: DictConfig, group: str, **kwargs: Any) -> Any:
    """`instantiate(node)`, turning a parameter error raised inside into one naming `group.key`."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        cause: BaseException | None = err
        while cause is not None and not isinstance(cause, UserError):
            cause = cause.__cause__
        if isinstance(cause, ParameterError):
            raise cause.under(group) from err
        if cause is not None:
            raise cause from err
        raise
