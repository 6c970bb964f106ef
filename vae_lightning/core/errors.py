"""The exception classes, and nothing else: errors that are the user's to fix, and early stops of a
run. The command layer (`vae_lightning.cli`) shows them as one line without a traceback; any other
exception is a bug and keeps its full traceback.
"""

from __future__ import annotations

import signal
from pathlib import Path
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


class RunStopped(Exception):
    """Training stopped before its end with its checkpoints intact. The entry point prints the
    message as one line (no traceback) and exits with `exit_code`."""

    exit_code = 1


class Interrupted(RunStopped):
    """A stop signal (SIGINT, SIGTERM, or SIGUSR2: SLURM's notice ahead of a time limit) during training: the
    current state was saved to `ckpt_path`; exit 128 + the signal number (130, 143, 140), as a shell reports a
    process ended by that signal."""

    def __init__(self, signum: int, epoch: int, step: int, ckpt_path: str) -> None:
        name = signal.Signals(signum).name
        super().__init__(f"interrupted by {name} at epoch {epoch}, step {step}; saved {ckpt_path}")
        self.exit_code = 128 + signum
        self.signum, self.step, self.ckpt_path = signum, step, ckpt_path


class Signalled(RunStopped):
    """A stop signal of a SLURM job outside training (setup, sanity check, test): nothing new to save,
    so the job stops at once, before the scheduler's SIGKILL."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name} outside training")
        self.exit_code = 128 + signum
        self.signum = signum


class Requeued(SystemExit):
    """The SLURM job was requeued and will run again: the process ends without a result. A SystemExit, so
    that neither Hydra's job runner nor submitit records an outcome (submitit waits for the next run)."""


class NonFiniteError(RunStopped):
    """A NaN or inf in the loss or in weights about to be saved: training stops, nothing more is written."""



class ResourcesExhausted(RunStopped):
    """The machine refused what a command needed (no space left, a quota, a read-only folder, memory): the command
    stops with one line naming what and where; what it had written completely stays, nothing half-written is left."""


class WriteFailed(ResourcesExhausted):
    """A file could not be written for want of space, quota or permission (`reason`, in words): `written` bytes had
    reached its temporary file (since removed) of about `size` in all, when known."""

    def __init__(self, path: Path, reason: str, written: int | None = None, size: int | None = None) -> None:
        self.path, self.reason, self.written, self.size = path, reason, written, size
        sizes = [f"about {amount(size)}" if size else "", f"{amount(written)} of it written" if written else ""]
        shown = ", ".join(s for s in sizes if s)
        super().__init__(f"{reason} in {path.parent}: writing {path.name}" + (f" ({shown})" if shown else "")
                         + " failed")


def amount(size: int | None) -> str:
    """A number of bytes in words: 812 bytes, 93.1 kB, 9.5 MB, 1.2 GB."""
    size = size or 0
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"
