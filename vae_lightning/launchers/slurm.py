"""SLURM through submitit's launcher (`hydra/launcher=slurm`, conf/hydra/launcher/slurm.yaml), and a run as a
SLURM job: Lightning's cluster environment where the run is a SLURM job step (and quiet where it is not), the
CPUs SLURM allocated, what became of a job that SLURM signalled, and a check that a scheduler answers and
accepts the jobs before a sweep is submitted to it.

Who requeues. Three parties could: Lightning (SLURMEnvironment's `auto_requeue`: on SIGUSR1 it saves
`hpc_ckpt_<n>.ckpt` from inside the signal handler, mid-step, requeues, and loads it at the next start when
`ckpt_path` is unset), submitit (on SIGUSR2 it pickles the job again, requeues it and exits from inside the
signal handler, mid-step) and this project (`callbacks.LastCheckpoint` saves `last.ckpt` at the next point
where model, optimizer, loops and RNG agree). The project does: Lightning's requeue is off, submitit's signal
handlers only act outside the job's task function (`stop_signals` replaces them there), and `runs.sweep`
asks `SlurmLauncher.stopped` (`outcome()`) what SLURM is doing with the job: a job that SLURM requeued
(`scontrol requeue`, preemption in REQUEUE mode, node failure) or that requeues itself (SIGUSR2 ahead of the
time limit) ends without a result, so submitit keeps waiting for it, and its next run continues its own
folder's `last.ckpt`.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import FrameType
from typing import Any

from lightning.fabric.plugins.environments import ClusterEnvironment, SLURMEnvironment, TorchElasticEnvironment
from lightning.fabric.utilities.rank_zero import rank_zero_only

from vae_lightning.core.errors import Interrupted, Signalled, UserError
from vae_lightning.launchers.base import Launcher, Stop

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


class SlurmLauncher(Launcher):
    """submitit's SLURM launcher: threads are the CPUs SLURM allocated (`cpus_per_task`); the scheduler is
    checked before the sweep is submitted; a job requeues itself or is requeued by SLURM."""

    targets = ("hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",)

    def threads(self, settings: Mapping[str, Any], cores: int, allocated: int | None) -> int | None:
        if allocated is not None:
            return allocated
        return int(settings["cpus_per_task"]) if settings.get("cpus_per_task") else None

    def check(self, settings: Mapping[str, Any], name: str) -> None:
        check_scheduler(settings, name)

    def in_job(self) -> bool:
        return in_job()

    @contextmanager
    def stop_signals(self) -> Iterator[None]:
        with stop_signals():
            yield

    def job_record(self) -> dict[str, Any]:
        return {"slurm": {"job_id": job_id(), "restarts": restart_count()}}

    def allocated_cpus(self) -> int | None:
        return cpus_per_task()

    def job_note(self) -> str:
        return f"SLURM job {job_id()}, restarts: {restart_count()}"

    def stopped(self, err: Interrupted | Signalled, max_restarts: int) -> Stop:
        """Requeued, cancelled or failed, as SLURM says (`outcome`).

        A job that SLURM keeps running after the signal (the notice ahead of the time limit, a preemption's
        grace period) requeues itself when it trained in this run (a stop during training saved `last.ckpt`
        after at least one step), or else while it has been restarted fewer than `max_restarts` times
        (`hydra.launcher.max_num_timeout`, submitit's limit for the same case before the job's task starts),
        so that a time limit shorter than a job's start cannot requeue it forever."""
        fate, refusal = outcome(err.signum), None
        if fate == "signalled" and (isinstance(err, Interrupted) or restart_count() < max_restarts):
            refusal = requeue() if rank_zero_only.rank == 0 else None
            fate = "requeued" if refusal is None else "refused"
        why = {"requeued": "requeued: it runs again from this checkpoint",
               "signalled": f"not requeued: signalled outside training after {restart_count()} restarts "
                            f"(hydra.launcher.max_num_timeout={max_restarts}); give the jobs more time: "
                            "hydra.launcher.timeout_min",
               "refused": f"SLURM refused to requeue it ({refusal})",
               "timeout": "the job reached its time limit",
               "cancelled": "SLURM cancelled the job",
               "unknown": "SLURM's controller did not say what became of the job"}[fate]
        return Stop({"requeued": "requeued", "cancelled": "cancelled"}.get(fate, "failed"), why)
