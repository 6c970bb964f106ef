"""How a run uses the machine: torch threads per job (as its launcher says: launchers/), DDP's processes
(Lightning's script-relaunching `ddp` refused inside a local multirun),
and torch's cached CUDA check for CPU runs."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.strategies.launchers import _SubprocessScriptLauncher

from vae_lightning.core.checks import Check, is_integer
from vae_lightning.core.errors import UserError
from vae_lightning.launchers import job_scheduler, launcher_for
from vae_lightning.runs import sweep

log = logging.getLogger(__name__)

THREADS = Check(lambda v: v == "auto" or v is None or (is_integer(v) and v >= 1), "auto, null or an integer >= 1")


def cpu_count() -> int:
    """Cores this process may run on (a SLURM allocation or `taskset` can be fewer than the machine's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def threads_for_job(setting: Any, launcher: Mapping[str, Any] | None, cores: int,
                    allocated: int | None = None) -> int | None:
    """Torch threads for one job; None leaves torch's default (one per core).

    `setting` is the config's `threads`: an integer, null, or `auto`. `auto` asks the launcher of the
    `hydra.launcher` settings `launcher` (None: a single run), given this machine's `cores` and the CPUs a
    scheduler `allocated` to the job (`Launcher.threads`).
    """
    if setting != "auto":
        THREADS.check("threads", setting)
        return setting
    return launcher_for(launcher).threads(launcher or {}, cores, allocated)


def set_threads(setting: Any) -> None:
    """Apply the config's `threads` (see `threads_for_job`); launchers only matter in a multirun."""
    launcher = HydraConfig.get().launcher if sweep.in_multirun() else None
    threads = threads_for_job(setting, launcher, cpu_count(), job_scheduler().allocated_cpus())
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
    if (sweep.in_multirun() and isinstance(launcher, _SubprocessScriptLauncher) and launcher.num_processes > 1
            and not launcher.cluster_environment.creates_processes_externally):
        raise UserError("trainer.strategy=ddp cannot run inside a local multirun (Lightning restarts the command "
                        "line in each process, which would restart the sweep); use trainer.strategy=ddp_spawn "
                        "for a sweep, or ddp in a single run or under hydra/launcher=slurm")


@contextmanager
def cached_cuda_check(active: bool = True) -> Iterator[None]:
    """With `active`: torch's own, cached answer to `torch.cuda.is_available()` for the block.

    Importing Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1, so that probing for GPUs does not
    initialise CUDA in a process that may fork. torch's Adam asks `torch.cuda.is_available()` at
    every step (its graph-capture check), and with that variable each answer loads the NVML
    library through ctypes again: about 2.5% of a training step of the study's model on this
    CPU (measured with py-spy; docs: Speed). A CPU run never uses CUDA, so `train` unsets the variable
    during its fit and test; it is put back afterwards.
    """
    name = "PYTORCH_NVML_BASED_CUDA_CHECK"
    saved = os.environ.get(name)
    if active:
        os.environ.pop(name, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[name] = saved
