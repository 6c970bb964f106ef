"""What a run records for sweeps: its outcome, its hyperparameters, and its share of the CPU.

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
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.strategies.launchers import _SubprocessScriptLauncher
from omegaconf import DictConfig, OmegaConf
from torch.utils.tensorboard.summary import hparams

from vae_lightning.annealing import Schedule
from vae_lightning.errors import UserError, require
from vae_lightning.module import VAEModule
from vae_lightning.reliability import write_atomically

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
        log.info("Sweep done: %d jobs, %d failed. Table: python -m vae_lightning.report %s",
                 len(jobs), len(failed), sweep_dir)
        if failed:
            for name, status in failed.items():
                print(f"error: job {name} failed: {status['error']}", file=sys.stderr)
            raise SystemExit(1)


def cpu_count() -> int:
    """Cores this process may run on (a SLURM allocation or `taskset` can be fewer than the machine's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def threads_for_job(setting: Any, launcher: Mapping[str, Any] | None, cores: int) -> int | None:
    """Torch threads for one job; None leaves torch's default (one per core).

    `setting` is the config's `threads`: an integer, null, or `auto`. `auto` shares the cores between
    jobs that run at once: joblib's `n_jobs` of them (negative as joblib counts: -1 = one per core)
    on this machine; submitit's `cpus_per_task` when set (each job's own allocation); otherwise
    torch's default.
    """
    if setting != "auto":
        require(setting is None or (isinstance(setting, int) and setting >= 1), "threads", setting,
                "auto, null or an integer >= 1")
        return setting
    if launcher is None:
        return None
    if launcher.get("n_jobs") is not None:
        n_jobs = int(launcher["n_jobs"])
        parallel = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)
        return max(1, cores // parallel)
    if launcher.get("cpus_per_task"):
        return int(launcher["cpus_per_task"])
    return None


def set_threads(setting: Any) -> None:
    """Apply the config's `threads` (see `threads_for_job`); launchers only matter in a multirun."""
    launcher = HydraConfig.get().launcher if in_multirun() else None
    threads = threads_for_job(setting, launcher, cpu_count())
    if threads is not None:
        torch.set_num_threads(threads)
        log.info("torch threads: %d (threads=%s)", threads, setting)


def check_strategy(trainer: L.Trainer) -> None:
    """Refuse Lightning's script-relaunching DDP inside a local multirun.

    Lightning's `ddp` starts the other processes of a node by running the command line again; in a
    multirun that command line is the whole sweep, so every job would start the sweep anew. On
    SLURM the processes are started by `srun` instead, which is fine.
    """
    launcher = trainer.strategy.launcher
    if (in_multirun() and isinstance(launcher, _SubprocessScriptLauncher) and launcher.num_processes > 1
            and not launcher.cluster_environment.creates_processes_externally):
        raise UserError("trainer.strategy=ddp cannot run inside a local multirun (Lightning restarts the command "
                        "line in each process, which would restart the sweep); use trainer.strategy=ddp_spawn "
                        "for a sweep, or ddp in a single run or under hydra/launcher=slurm")


def hyperparameters(cfg: DictConfig, module: VAEModule, schedule: Schedule) -> dict[str, Any]:
    """The run's hyperparameters for TensorBoard's HPARAMS tab: the prior and the KL schedule with their
    parameters, the networks (kind, sizes, activation), the likelihood, latent size, learning rate, seed.

    The same seven names for every run: TensorBoard takes the table's columns from the first run it
    reads, so a per-family name such as `prior.alpha` would be missing whenever a normal-prior run
    came first. The prior is its label (`Beta(4, 3)`), the schedule its repr with every parameter, the
    model its networks' labels (`mlp 784-400-200-2 leaky_relu / mlp 2-200-400-784 leaky_relu`).
    """
    return {"prior": module.prior.label, "model": module.architecture, "likelihood": module.likelihood.name,
            "annealing": repr(schedule), "latent_dim": cfg.model.latent_dim,
            "lr": OmegaConf.select(cfg, "model.optimizer.lr"), "seed": cfg.seed}


def log_hyperparameters(loggers: list[Logger], params: dict[str, Any], metrics: dict[str, float],
                        step: int) -> None:
    """Record `params` with the run's final validation and test metrics.

    TensorBoard's HPARAMS tab reads the hyperparameters from the session summary written here and
    each metric's value from the last point of the scalar with the same tag (`val/elbo`, ...),
    which training already logged: no scalar point is written here (a repeated point would give a
    resumed run's curves extra values). Called after training, so the logger's writer is closed
    again afterwards.
    """
    final = {k: v for k, v in metrics.items() if k.startswith(("val/", "test/"))}
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            writer = logger.experiment._get_file_writer()  # the run's own events file, no subfolder
            for summary in hparams(params, final):
                writer.add_summary(summary, step)
        else:
            logger.log_hyperparams(params)
        logger.finalize("success")
