"""The launcher interface: what the project knows about one Hydra launcher (threads per job, checks before a
sweep is submitted) and about the scheduler a job may run under (stop signals, what became of a stopped job)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

from vae_lightning.core.errors import Interrupted, Signalled


@dataclass(frozen=True)
class Stop:
    """What became of a job that its scheduler stopped: `status` (requeued, cancelled or failed) and why."""

    status: str
    why: str


class Launcher:
    """A Hydra launcher, by its `_target_` (`targets`); this base class is also the launcher of a single run
    and of any launcher the project has no module for: torch's default threads, nothing checked, no
    scheduler."""

    targets: ClassVar[tuple[str, ...]] = ()

    def threads(self, settings: Mapping[str, Any], cores: int, allocated: int | None) -> int | None:
        """Torch threads for one job under `threads=auto`: `settings` is `hydra.launcher`, `cores` this
        machine's, `allocated` the CPUs a scheduler allocated to this job (None outside one). None leaves
        torch's default (one per core)."""
        return allocated

    def check(self, settings: Mapping[str, Any], name: str) -> None:
        """Raise a one-line UserError before a sweep is submitted (`name`: the hydra/launcher choice)."""

    # --- a job on a scheduler (the scheduler a process runs under, whichever launcher started it)

    def in_job(self) -> bool:
        """This process is a job of this launcher's scheduler."""
        return False

    @contextmanager
    def stop_signals(self) -> Iterator[None]:
        """While a job runs: the scheduler's stop signals end it at once (`Signalled`)."""
        yield

    def job_record(self) -> dict[str, Any]:
        """What a job's status.json records about the job on its scheduler."""
        return {}

    def allocated_cpus(self) -> int | None:
        """The CPUs the scheduler allocated to this job's task; None outside a job or unset."""
        return None

    def job_note(self) -> str:
        """The job on its scheduler in a few words, for the log; empty outside a job."""
        return ""

    def stopped(self, err: Interrupted | Signalled, max_restarts: int) -> Stop:
        """What became of a job that a signal stopped (only asked inside a job)."""
        return Stop("failed", "stopped by a signal")
