"""A sweep's jobs: each records its outcome in its folder (`status.json`). (A job's threads and
processes: runs/threads.py; its hyperparameters in TensorBoard: tracking/; a job on a scheduler such as SLURM:
launchers/.)

A multirun job never ends the sweep. Hydra's launchers catch an exception raised by a job, but the
basic sweeper re-raises the first one after its batch, and a `SystemExit` (our one-line bad-input
exit) stops the sweep at once. So in a multirun every exception is caught here instead: the job's
folder gets `status.json` with the one-line error (the traceback of an unexpected error goes to the
job's log), the job returns NaN (Optuna records a failed trial), and the next job starts. After the
sweep, `SweepSummary` lists the failed and cancelled jobs and exits with status 1.

A job stopped by its scheduler (a signal during training saves `last.ckpt` first; `launchers.job_scheduler`
says what became of it) is `requeued` when SLURM runs it again, or requeues it itself on the notice ahead of
its time limit; then the process ends without a
result, submitit waits for the next run, and that run continues the job's own `last.ckpt`, in the same
folder with the same config. Otherwise it is `cancelled` (scancel), or `failed` (its time limit without
a notice ahead). A job whose folder already holds a checkpoint (a requeued job; a sweep run again into
its folder, `hydra.sweep.dir=<multirun folder>`) continues it, and one that completed is not run again.
"""

from __future__ import annotations

import json
import logging
import math
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from lightning.fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, open_dict

from vae_lightning.core.errors import Interrupted, Requeued, Signalled, UserError
from vae_lightning.core.files import write_text_atomically
from vae_lightning.launchers import Launcher, job_scheduler

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
    write_text_atomically(job_dir / STATUS_FILE, text)


def read_status(job_dir: Path) -> dict[str, Any] | None:
    """A job's recorded outcome; None while it runs, or when it was killed before it could write one."""
    path = job_dir / STATUS_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def _number_order(path: Path) -> tuple[bool, int, str]:
    digits = path.name.removeprefix("seed_")
    return not digits.isdigit(), int(digits) if digits.isdigit() else 0, path.name


def member_dirs(run: Path) -> list[Path]:
    """The member folders `<run>/seed_<s>/` of a K-member run (runs/members.py), by seed; [] for any other folder."""
    return sorted((p for p in run.glob("seed_*") if (p / ".hydra" / "config.yaml").is_file()), key=_number_order)


def job_dirs(sweep_dir: Path) -> list[Path]:
    """The job folders of a multirun folder (those with a Hydra config), in job-number order; a job that trained
    K members stands for its member folders, each a run of its own."""
    jobs = sorted((p for p in sweep_dir.iterdir() if (p / ".hydra" / "config.yaml").is_file()), key=_number_order)
    return [run for job in jobs for run in (member_dirs(job) or [job])]


def job_dir() -> Path:
    return Path(HydraConfig.get().runtime.output_dir)


def continue_own_checkpoint(cfg: DictConfig) -> DictConfig:
    """`cfg` resuming the job's own `checkpoints/last.ckpt` when its folder has one (an earlier run of
    this job: SLURM requeued it, or the sweep runs again into its folder), else `cfg` as it is."""
    last = job_dir() / "checkpoints" / "last.ckpt"
    if not last.is_file():
        return cfg
    note = job_scheduler().job_note()
    log.info("Continuing this job's own %s%s", last, f" ({note})" if note else "")
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.ckpt_path = str(last)
    return cfg


def run_job(job: Callable[[], dict[str, float]]) -> dict[str, float] | None:
    """Run one multirun job; record its outcome in its folder. Returns its metrics, or None when it failed
    or was cancelled; raises `Requeued` when SLURM will run it again. A job that completed in an earlier run
    of the sweep is not run again (its recorded metrics)."""
    folder, overrides = job_dir(), list(HydraConfig.get().overrides.task)
    previous = read_status(folder)
    if previous is not None and previous.get("overrides", overrides) != overrides:
        log.error("error: %s holds the job %s, not this one; continue a sweep with its own command line, or give "
                  "a new hydra.sweep.dir", folder, " ".join(previous["overrides"]))
        return None
    if previous is not None and previous["status"] == "completed":
        log.info("This job completed in an earlier run of the sweep (%s): not run again", folder / STATUS_FILE)
        return previous["metrics"]
    scheduler = job_scheduler()
    try:
        with scheduler.stop_signals():
            metrics = job()
    except (Interrupted, Signalled) as err:
        if not scheduler.in_job():
            return _failed(folder, err)
        return _stopped_by_scheduler(folder, err, scheduler)
    except Exception as err:  # any failure of one job is recorded and the sweep goes on
        return _failed(folder, err)
    status: dict[str, Any] = {"status": "completed", "metrics": metrics, "threads": torch.get_num_threads(),
                              **scheduler.job_record()}
    _record(folder, status)
    return metrics


def _record(folder: Path, status: dict[str, Any]) -> None:
    """The job's outcome with its overrides (a sweep run again into the folder checks that it is the same job)."""
    if rank_zero_only.rank == 0:
        write_status(folder, {**status, "overrides": list(HydraConfig.get().overrides.task)})


def _failed(folder: Path, err: Exception) -> None:
    line = error_line(err)
    if isinstance(err, UserError):
        log.error("error: %s", line)
    else:
        log.exception("job failed: %s", line)
    _record(folder, {"status": "failed", "error": line})


def _stopped_by_scheduler(folder: Path, err: Interrupted | Signalled, scheduler: Launcher) -> None:
    """A job stopped by a signal of its scheduler: requeued (raises `Requeued`), cancelled or failed, as the
    scheduler says (`Launcher.stopped`; `hydra.launcher.max_num_timeout` bounds the restarts of a job
    signalled before it trained)."""
    limit = int(HydraConfig.get().launcher.get("max_num_timeout") or 0)
    stop = scheduler.stopped(err, limit)
    line = f"{err}; {stop.why}"
    record: dict[str, Any] = {"status": stop.status, "error": line, **scheduler.job_record()}
    log.warning("%s: %s", scheduler.job_note(), line)
    if isinstance(err, Interrupted):
        record.update(step=err.step, ckpt_path=err.ckpt_path)
    _record(folder, record)
    if stop.status == "requeued":
        raise Requeued(err.exit_code)


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


def resume_command(config: DictConfig) -> str:
    """The command that runs a multirun again into its own folder: each job continues its checkpoint, the
    completed ones are kept."""
    sweep_dir = f"hydra.sweep.dir={config.hydra.sweep.dir}"
    hydra_overrides = [o for o in config.hydra.overrides.hydra if not o.startswith("hydra.sweep.dir=")]
    words = ["python", "-m", f"vae_lightning.{config.hydra.job.name}", "-m", *hydra_overrides,
             *config.hydra.overrides.task, sweep_dir]
    return shlex.join(words)


class SweepSummary(Callback):
    """Hydra callback: after a multirun, one line per failed or cancelled job, and exit status 1 if any
    (with the command that continues the sweep)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        jobs = job_dirs(sweep_dir) if sweep_dir.is_dir() else []
        statuses = {job.name: read_status(job) for job in jobs}
        stopped = {name: s for name, s in statuses.items() if s is not None and s["status"] in ("failed", "cancelled")}
        cancelled = sum(s["status"] == "cancelled" for s in stopped.values())
        from vae_lightning.core.console import say

        say("sweep done: %d jobs, %d failed%s; its report: python -m vae_lightning.report %s; its runs side by "
            "side: tensorboard --logdir %s; its latent spaces: python -m vae_lightning.explore sweep=%s", len(jobs),
            len(stopped) - cancelled, f", {cancelled} cancelled" if cancelled else "", sweep_dir, sweep_dir, sweep_dir)
        if stopped:
            for name, status in stopped.items():
                print(f"error: job {name} {status['status']}: {status['error']}", file=sys.stderr)
            if cancelled:
                print(f"continue the sweep with: {resume_command(config)}", file=sys.stderr)
            raise SystemExit(1)
