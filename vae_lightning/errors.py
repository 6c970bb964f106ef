"""Errors that are the user's to fix, and early stops of a run: shown as one line, without a traceback.

Anything else is a bug and keeps its full traceback.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from hydra.errors import HydraException, InstantiationException, MissingConfigException
from hydra.utils import instantiate
from omegaconf import DictConfig

# HYDRA_FULL_ERROR=1 as the user set it when the process started (`run_hydra_main` sets it for
# Hydra's sake): full tracebacks instead of one-line errors.
FULL_ERROR = os.environ.get("HYDRA_FULL_ERROR") == "1"


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


class RunStopped(Exception):
    """Training stopped before its end with its checkpoints intact. The entry point prints the
    message as one line (no traceback) and exits with `exit_code`."""

    exit_code = 1


class Interrupted(RunStopped):
    """SIGINT or SIGTERM: the current state was saved to `ckpt_path`; exit 128 + the signal number
    (130, 143), as a shell reports a process ended by that signal."""

    def __init__(self, signum: int, epoch: int, step: int, ckpt_path: str) -> None:
        name = signal.Signals(signum).name
        super().__init__(f"interrupted by {name} at epoch {epoch}, step {step}; saved {ckpt_path}")
        self.exit_code = 128 + signum
        self.ckpt_path = ckpt_path


class NonFiniteError(RunStopped):
    """A NaN or inf in the loss or in weights about to be saved: training stops, nothing more is written."""


def hydra_error_line(err: Exception) -> str:
    """One line for an error Hydra raises before the run starts."""
    if isinstance(err, MissingConfigException) and err.options and "/" in (err.missing_cfg_file or ""):
        group, _, option = err.missing_cfg_file.rpartition("/")
        return f"{group}={option} is not an option of {group}: choose one of {', '.join(err.options)}"
    if isinstance(err, OSError) and err.filename:
        return (f"cannot create the run folder {err.filename} ({err.strerror}); set paths.log_dir (or VAE_LOG_DIR) "
                "to a folder you can write to")
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    cause = str(err.__cause__).strip().splitlines() if err.__cause__ is not None else []
    return f"{text} ({cause[0]})" if cause else text


def run_hydra_main(main: Callable[[], Any]) -> None:
    """Call a `@hydra.main` entry point, printing Hydra's own errors as one line `error: ...` with
    exit status 2 too: an unknown config option, a bad override, a run folder that cannot be created.

    Hydra prints those over several lines and exits 1; with HYDRA_FULL_ERROR set it raises them
    instead, so it is set here and they are formatted by `hydra_error_line` (unless the user set
    it: then the traceback). An error raised inside the task function is a bug and keeps its traceback.
    """
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        main()
    except (HydraException, OSError) as err:
        task = main.__wrapped__.__code__  # the function under @hydra.main
        if FULL_ERROR or any(frame.f_code is task for frame, _ in traceback.walk_tb(err.__traceback__)):
            raise
        print(f"error: {hydra_error_line(err)}", file=sys.stderr)
        raise SystemExit(2) from None


@contextmanager
def exit_on_user_error(cleanup: Callable[[], None] | None = None) -> Iterator[None]:
    """For entry points: a UserError becomes one line `error: ...` on stderr and exit status 2, after
    `cleanup()`; with HYDRA_FULL_ERROR=1 it keeps its traceback."""
    try:
        yield
    except UserError as err:
        if cleanup is not None:
            cleanup()
        if FULL_ERROR:
            raise
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
