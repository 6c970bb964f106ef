"""A sweep's jobs: each records its outcome in its folder (`status.json`). (A job's threads and
processes: runs/threads.py; its hyperparameters in TensorBoard: runs/tracking.py.)

A multirun job never ends the sweep. Hydra's launchers catch an exception raised by a job, but the
basic sweeper re-raises the first one after its batch, and a `SystemExit` (our one-line bad-input
exit) stops the sweep at once. So in a multirun every exception is caught here instead: the job's
folder gets `status.json` with the one-line error (the traceback of an unexpected error goes to the
job's log), the job returns NaN (Optuna records a failed trial), and the next job starts. After the
sweep, `SweepSummary` lists the failed jobs and exits with status 1.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from lightning.fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig

from vae_lightning.core.errors import UserError
from vae_lightning.core.files import write_atomically

log = logging.getLogger(__name__)

STATUS_FILE = "status.json"


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def error_line(err: BaseException) -> str:
    """The error as one line: a UserError's message as is, anything else prefixed by its type."""
    lines = str(err).strip().splitlines()
    text = lines[0] if lines else ""
    if isinstance(err, UserError):
        return text
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def write_status(job_dir: Path, status: dict[str, Any]) -> None:
    """`<job>/status.json`, replaced atomically so that a reader never sees half a file."""
    text = json.dumps(status, indent=2, allow_nan=True) + "\n"
    write_atomically(job_dir / STATUS_FILE, lambda f: f.write(text.encode()))


def read_status(job_dir: Path) -> dict[str, Any] | None:
    """A job's recorded outcome; None while it runs, or when it was killed before it could write one."""
    path = job_dir / STATUS_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def job_dirs(sweep_dir: Path) -> list[Path]:
    """The job folders of a multirun folder (those with a Hydra config), in job-number order."""
    jobs = [p for p in sweep_dir.iterdir() if (p / ".hydra" / "config.yaml").is_file()]
    return sorted(jobs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))


def run_job(job: Callable[[], dict[str, float]]) -> dict[str, float] | None:
    """Run one multirun job; record its outcome in its folder. Returns its metrics, or None when it failed."""
    job_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        metrics = job()
    except Exception as err:  # any failure of one job is recorded and the sweep goes on
        line = error_line(err)
        if isinstance(err, UserError):
            log.error("error: %s", line)
        else:
            log.exception("job failed: %s", line)
        if rank_zero_only.rank == 0:
            write_status(job_dir, {"status": "failed", "error": line})
        return None
    if rank_zero_only.rank == 0:
        write_status(job_dir, {"status": "completed", "metrics": metrics, "threads": torch.get_num_threads()})
    return metrics


def optimized_value(metrics: dict[str, float] | None, name: str | None) -> float | None:
    """What `main` returns for Hydra's sweepers: the `optimized_metric`, NaN for a failed job."""
    if not name:
        return None
    if metrics is None:
        return math.nan
    if name not in metrics:
        log.warning("optimized_metric=%s is not a metric of this run (it has: %s)", name, ", ".join(sorted(metrics)))
        return math.nan
    return metrics[name]


class SweepSummary(Callback):
    """Hydra callback: after a multirun, one line per failed job, and exit status 1 if any failed."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        jobs = job_dirs(sweep_dir) if sweep_dir.is_dir() else []
        statuses = {job.name: read_status(job) for job in jobs}
        failed = {name: s for name, s in statuses.items() if s is not None and s["status"] == "failed"}
        from vae_lightning.runs.console import say

        say("sweep done: %d jobs, %d failed; its report: python -m vae_lightning.report %s", len(jobs), len(failed),
            sweep_dir)
        if failed:
            for name, status in failed.items():
                print(f"error: job {name} failed: {status['error']}", file=sys.stderr)
            raise SystemExit(1)
