"""A run as a SLURM job: Lightning's cluster environment where the run is a SLURM job step (and quiet where it
is not), the CPUs SLURM allocated, what became of a job that SLURM signalled, and a check that a scheduler
answers before a sweep is submitted to it.

Who requeues. Three parties could: Lightning (SLURMEnvironment's `auto_requeue`: on SIGUSR1 it saves
`hpc_ckpt_<n>.ckpt` from inside the signal handler, mid-step, requeues, and loads it at the next start when
`ckpt_path` is unset), submitit (on SIGUSR2 it pickles the job again, requeues it and exits from inside the
signal handler, mid-step) and this project (`callbacks.LastCheckpoint` saves `last.ckpt` at the next point
where model, optimizer, loops and RNG agree). The project does: Lightning's requeue is off, submitit's signal
handlers only act outside the job's task function (`stop_signals` replaces them there), and `runs.sweep`
asks `outcome()` what SLURM is doing with the job: a job that SLURM requeued (`scontrol requeue`, preemption
in REQUEUE mode, node failure) or that requeues itself (SIGUSR2 ahead of the time limit) ends without a
result, so submitit keeps waiting for it, and its next run continues its own folder's `last.ckpt`.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import FrameType
from typing import Any

from hydra.experimental.callback import Callback
from lightning.fabric.plugins.environments import ClusterEnvironment, SLURMEnvironment, TorchElasticEnvironment
from omegaconf import DictConfig

from vae_lightning.core.errors import Signalled, UserError

SLURM_LAUNCHER = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
# The signals that stop a SLURM job outside training: SLURM's SIGTERM (scancel, requeue, preemption, time
# limit) and submitit's notice ahead of the time limit (SIGUSR2 unless SUBMITIT_PREEMPT_SIGNAL says otherwise)
STOP_SIGNALS = (signal.SIGTERM, signal.Signals[f"SIG{os.environ.get('SUBMITIT_PREEMPT_SIGNAL', 'USR2')}"])
SRUN_WARNING = "The `srun` command is available on your system but is not used"
TIMEOUT_S = 30  # for one scontrol/sbatch call


def in_job() -> bool:
    """This process runs inside a SLURM allocation."""
    return "SLURM_JOB_ID" in os.environ


def job_id() -> str:
    """The job's id as `scontrol` names it (`<array job>_<task>` for a job of an array, as submitit submits
    a sweep)."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ["SLURM_JOB_ID"]


def restart_count() -> int:
    """How many times SLURM has restarted this job (0 on its first run)."""
    return int(os.environ.get("SLURM_RESTART_COUNT", "0"))


def cpus_per_task() -> int | None:
    """The CPUs SLURM allocated to each task of this job (`--cpus-per-task`), None outside a job or unset."""
    value = os.environ.get("SLURM_CPUS_PER_TASK")
    return int(value) if value and value.isdigit() else None


def cluster_plugins() -> list[ClusterEnvironment]:
    """The Trainer's cluster environment: SLURM's inside a job step (`srun`, as submitit starts its tasks;
    ranks and addresses from SLURM's variables), with Lightning's own requeue off (this module owns it);
    torchrun inside a job keeps its own, as Lightning would choose.

    Elsewhere Lightning detects its environment itself. On a machine that merely has SLURM installed
    (a login node, a workstation with slurm-wlm) and is not in an allocation, its warning that `srun` is
    not used is silenced: it is meant for a process inside an allocation that forgot `srun`.
    """
    if in_job() and SLURMEnvironment.detect() and not TorchElasticEnvironment.detect():
        return [SLURMEnvironment(auto_requeue=False)]
    if not in_job():
        warnings.filterwarnings("ignore", message=f"{SRUN_WARNING}.*")
    return []


@contextmanager
def stop_signals() -> Iterator[None]:
    """Inside a SLURM job: SIGTERM and the time-limit notice stop the job at once (`Signalled`) while the
    block runs, instead of submitit's handlers (which ignore SIGTERM, and requeue on SIGUSR2 from anywhere).
    `LastCheckpoint` takes them over during training, where a stop first saves. Outside a job: nothing."""
    if not in_job():
        yield
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        raise Signalled(signum)

    previous = {signum: signal.signal(signum, stop) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)


def job_state() -> dict[str, str]:
    """This job's record in the controller (`scontrol show job`: JobState, Reason, Restarts, ...); empty
    when the controller does not answer."""
    try:
        result = _run("scontrol", "show", "job", "--oneliner", job_id())
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return dict(field.split("=", 1) for field in result.stdout.split() if "=" in field)


def outcome(signum: int) -> str:
    """What SLURM is doing with this job after it sent `signum`:

    - `requeued`: SLURM has requeued it (its restart count went up: `scontrol requeue`, a preemption in
      REQUEUE mode, a node failure); it will run again;
    - `signalled`: it keeps running (the notice ahead of the time limit, `scancel --signal`, a preemption's
      grace period): the job may requeue itself (`requeue`);
    - `timeout`: it reached its time limit;
    - `cancelled`: it ends for another reason (`scancel`, a preemption in CANCEL mode);
    - `unknown`: the controller did not answer.
    """
    state = job_state()
    if not state:
        return "unknown"
    if int(state.get("Restarts", "0")) > restart_count():
        return "requeued"
    if state.get("JobState") == "RUNNING":
        return "signalled"
    if state.get("Reason") == "TimeLimit" or state.get("JobState") == "TIMEOUT":
        return "timeout"
    return "cancelled"


def requeue() -> str | None:
    """`scontrol requeue` this job; None when SLURM accepted, else its refusal as one line."""
    try:
        result = _run("scontrol", "requeue", job_id())
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"scontrol requeue {job_id()}: {err}"
    return None if result.returncode == 0 else _first_line(result.stderr or result.stdout)


def _first_line(text: str, last: bool = False) -> str:
    """The first (or last) line of a SLURM command's message, without the command's name."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return "(no message)"
    line = lines[-1 if last else 0]
    for prefix in ("sbatch: error: ", "scontrol: error: ", "scontrol: fatal: "):
        line = line.removeprefix(prefix)
    return line


# --- before a sweep is submitted ---------------------------------------------------------------------


def sbatch_flags(launcher: Mapping[str, Any]) -> list[str]:
    """The resource flags that submitit's sbatch file will carry for these launcher settings."""
    flags = {"partition": launcher.get("partition"), "time": launcher.get("timeout_min"),
             "nodes": launcher.get("nodes"), "ntasks-per-node": launcher.get("tasks_per_node"),
             "cpus-per-task": launcher.get("cpus_per_task"),
             "mem": f"{launcher['mem_gb']}G" if launcher.get("mem_gb") is not None else None,
             "gpus-per-node": launcher.get("gpus_per_node")}
    for key in ("account", "qos", "constraint", "gres", "exclude", "cpus_per_gpu", "gpus_per_task", "mem_per_gpu",
                "mem_per_cpu"):
        flags[key.replace("_", "-")] = launcher.get(key)
    for key, value in (launcher.get("additional_parameters") or {}).items():
        flags[str(key).replace("_", "-")] = value
    return [f"--{k}" if v is True else f"--{k}={v}" for k, v in flags.items() if v is not None and v is not False]


def check_scheduler(launcher: Mapping[str, Any], name: str) -> None:
    """Raise a one-line UserError unless SLURM's controller answers and would accept these jobs
    (`sbatch --test-only`: partition, time limit, CPUs, memory, GPUs, account, ...)."""
    missing = [p for p in ("sbatch", "scontrol") if shutil.which(p) is None]
    if missing:
        raise UserError(f"hydra/launcher={name} cannot submit the sweep: {' and '.join(missing)} not found on PATH "
                        "(no SLURM here); run it on a node of the cluster, or choose another hydra/launcher "
                        "(basic, joblib, submitit_local)")
    ping = _run("scontrol", "ping")
    if ping.returncode != 0:  # "... is DOWN" on stdout, or why it has no configuration at the end of stderr
        answer = _first_line(ping.stdout) if "DOWN" in ping.stdout else _first_line(ping.stderr, last=True)
        raise UserError(f"hydra/launcher={name} cannot submit the sweep: no SLURM controller answers "
                        f"(scontrol ping: {answer})")
    flags = sbatch_flags(launcher)
    test = _run("sbatch", "--test-only", *flags, "--wrap=true")
    if test.returncode != 0:
        raise UserError(f"hydra/launcher={name}: SLURM refuses the sweep's jobs ({shlex.join(flags)}): "
                        f"{_first_line(test.stderr or test.stdout)}; see sinfo for the partitions and their limits")


class SchedulerCheck(Callback):
    """Hydra callback: before a multirun under submitit's SLURM launcher is submitted (before its folder
    exists), a missing or silent scheduler, or a request SLURM refuses (a partition that does not exist) is one line
    `error: ...` and exit status 2 (`check_scheduler`). (Hydra turns an exception of a callback into a
    warning and goes on, so the callback ends the command itself, as the command layer would.)"""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        launcher = config.hydra.launcher
        if launcher.get("_target_") != SLURM_LAUNCHER:
            return
        name = config.hydra.runtime.choices.get("hydra/launcher", "submitit_slurm")
        try:
            check_scheduler({key: launcher[key] for key in launcher}, name)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
