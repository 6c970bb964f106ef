"""launchers.slurm without a scheduler: Lightning's cluster environment in and out of a SLURM job, the CPUs a job
was given, what a job's record in the controller means after a signal (from `scontrol show job` lines as the
local cluster printed them) and what the launcher makes of it, the launcher's sbatch flags and threads, and the
stop signals. The live cluster:
tests/integration/test_slurm.py."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import warnings
from pathlib import Path

import lightning as L
import pytest
from lightning.fabric.plugins.environments import LightningEnvironment, SLURMEnvironment

from vae_lightning.callbacks import LastCheckpoint
from vae_lightning.core.errors import Interrupted, ParameterError, Signalled
from vae_lightning.launchers import job_scheduler, launcher_for, slurm
from vae_lightning.runs import threads as parallelism

SLURM_VARIABLES = ("SLURM_JOB_ID", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NODEID", "SLURM_JOB_NAME",
                   "SLURM_RESTART_COUNT", "SLURM_CPUS_PER_TASK", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID",
                   "SLURM_NTASKS_PER_NODE", "SLURM_NNODES")


@pytest.fixture
def no_job(monkeypatch, tmp_path) -> None:
    """Not in a SLURM job, on a machine where `srun` is installed."""
    for name in SLURM_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    srun = tmp_path / "bin" / "srun"
    srun.parent.mkdir()
    srun.write_text("#!/bin/sh\n")
    srun.chmod(0o755)
    monkeypatch.setenv("PATH", f"{srun.parent}{os.pathsep}{os.environ['PATH']}")


@pytest.fixture
def job_step(no_job, monkeypatch) -> None:
    """A task that srun started (as submitit starts each job)."""
    for name, value in (("SLURM_JOB_ID", "41"), ("SLURM_NTASKS", "1"), ("SLURM_PROCID", "0"), ("SLURM_LOCALID", "0"),
                        ("SLURM_NODEID", "0"), ("SLURM_JOB_NAME", "train"), ("SLURM_CPUS_PER_TASK", "3")):
        monkeypatch.setenv(name, value)


def trainer_warnings(plugins: list) -> tuple[L.Trainer, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, plugins=plugins + slurm.cluster_plugins())
    return trainer, [str(w.message) for w in caught]


def test_outside_a_job_lightning_keeps_its_environment_without_the_srun_hint(no_job):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        L.Trainer(accelerator="cpu", devices=1, logger=False)
    assert any(slurm.SRUN_WARNING in str(w.message) for w in caught)  # what Lightning says by itself
    with warnings.catch_warnings():
        trainer, messages = trainer_warnings([])
    assert not [m for m in messages if slurm.SRUN_WARNING in m]
    assert isinstance(trainer._accelerator_connector.cluster_environment, LightningEnvironment)
    assert not slurm.in_job() and slurm.cpus_per_task() is None


def test_in_a_job_step_lightning_uses_slurm_without_its_own_requeue(job_step):
    with warnings.catch_warnings():
        trainer, messages = trainer_warnings([])
    environment = trainer._accelerator_connector.cluster_environment
    assert isinstance(environment, SLURMEnvironment) and not environment.auto_requeue
    assert not messages or all(slurm.SRUN_WARNING not in m for m in messages)
    assert (slurm.job_id(), slurm.cpus_per_task(), slurm.restart_count()) == ("41", 3, 0)


def test_in_an_allocation_without_srun_lightnings_hint_stays(no_job, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "41")  # an sbatch script that runs python without srun
    with warnings.catch_warnings():
        trainer, messages = trainer_warnings([])
    assert any(slurm.SRUN_WARNING in m for m in messages)
    assert not isinstance(trainer._accelerator_connector.cluster_environment, SLURMEnvironment)


SLURM = {"_target_": slurm.SlurmLauncher.targets[0], "cpus_per_task": 3}
JOBLIB = {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 2}


def test_threads_follow_the_cpus_slurm_allocated():
    assert parallelism.threads_for_job("auto", None, cores=64, allocated=3) == 3  # a single run in an sbatch script
    assert parallelism.threads_for_job("auto", SLURM, cores=64, allocated=3) == 3  # slurm launcher
    assert parallelism.threads_for_job("auto", SLURM, cores=64) == 3  # its cpus_per_task, before the job starts
    assert parallelism.threads_for_job("auto", JOBLIB, cores=64, allocated=8) == 4  # joblib in an allocation
    assert parallelism.threads_for_job(2, None, cores=64, allocated=8) == 2
    assert parallelism.threads_for_job("auto", None, cores=64) is None


def test_inside_a_job_the_scheduler_is_slurms_and_outside_none(job_step, monkeypatch):
    scheduler = job_scheduler()
    assert type(scheduler) is slurm.SlurmLauncher and scheduler.allocated_cpus() == 3
    assert scheduler.job_record() == {"slurm": {"job_id": "41", "restarts": 0}}
    monkeypatch.delenv("SLURM_JOB_ID")
    assert not job_scheduler().in_job() and job_scheduler().job_record() == {}


@pytest.mark.parametrize(("fate", "err", "restarts", "status"), [
    ("requeued", Signalled(signal.SIGTERM), 0, "requeued"),
    ("cancelled", Signalled(signal.SIGTERM), 0, "cancelled"),
    ("timeout", Signalled(signal.SIGTERM), 0, "failed"),
    ("signalled", Interrupted(signal.SIGUSR2, 0, 8, "last.ckpt"), 5, "requeued"),  # it trained: requeues itself
    ("signalled", Signalled(signal.SIGUSR2), 0, "requeued"),  # before training, under max_num_timeout
    ("signalled", Signalled(signal.SIGUSR2), 3, "failed"),  # before training, max_num_timeout restarts already
])
def test_a_stopped_job_is_requeued_cancelled_or_failed_as_slurm_says(job_step, monkeypatch, fate, err, restarts,
                                                                      status):
    monkeypatch.setenv("SLURM_RESTART_COUNT", str(restarts))
    record = RECORDS[fate].replace("Restarts=1", f"Restarts={restarts + 1}").replace("Restarts=0",
                                                                                      f"Restarts={restarts}")
    commands = []

    def scontrol(*command: str) -> subprocess.CompletedProcess[str]:
        commands.append(command[:2])
        return subprocess.CompletedProcess(command, 0, record, "")

    monkeypatch.setattr(slurm, "_run", scontrol)
    stop = launcher_for(SLURM).stopped(err, max_restarts=3)
    assert stop.status == status
    assert (("scontrol", "requeue") in commands) is (fate == "signalled" and status == "requeued")


# `scontrol show job --oneliner` after the signal, as the local cluster answered (the fields that matter)
RECORDS = {
    "requeued": "JobId=2 JobState=COMPLETING Reason=None Requeue=1 Restarts=1 ExitCode=0:0",  # scontrol requeue
    "cancelled": "JobId=6 JobState=COMPLETING Reason=None Requeue=1 Restarts=0 ExitCode=0:15",  # scancel
    "signalled": "JobId=3 JobState=RUNNING Reason=None Requeue=1 Restarts=0 TimeLimit=00:01:00",  # --signal=USR2@50
    "timeout": "JobId=3 JobState=COMPLETING Reason=TimeLimit Requeue=1 Restarts=0 TimeLimit=00:01:00",
}


@pytest.mark.parametrize("fate", sorted(RECORDS))
def test_outcome_reads_what_slurm_does_with_the_job(fate, job_step, monkeypatch):
    def scontrol(*command: str) -> subprocess.CompletedProcess[str]:
        assert command == ("scontrol", "show", "job", "--oneliner", "41")
        return subprocess.CompletedProcess(command, 0, RECORDS[fate], "")

    monkeypatch.setattr(slurm, "_run", scontrol)
    assert slurm.outcome(signal.SIGTERM) == fate


def test_outcome_of_a_restarted_job_counts_from_its_own_restart(job_step, monkeypatch):
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # its second run, cancelled: the record still says 1
    monkeypatch.setattr(slurm, "_run", lambda *c: subprocess.CompletedProcess(c, 0, RECORDS["requeued"], ""))
    assert slurm.outcome(signal.SIGTERM) == "cancelled"
    monkeypatch.setattr(slurm, "_run", lambda *c: subprocess.CompletedProcess(c, 1, "", "slurm_load_jobs error"))
    assert slurm.outcome(signal.SIGTERM) == "unknown"


def test_the_job_id_of_an_array_task_is_the_one_scontrol_names(job_step, monkeypatch):
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "40")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    assert slurm.job_id() == "40_1"


def test_sbatch_flags_are_the_launchers_resources():
    launcher = {"partition": "gpu", "timeout_min": 240, "nodes": 1, "tasks_per_node": 4, "cpus_per_task": 8,
                "mem_gb": 32, "gpus_per_node": 4, "account": "proj", "qos": None,
                "additional_parameters": {"requeue": True, "mail_type": "END"}}
    assert slurm.sbatch_flags(launcher) == ["--partition=gpu", "--time=240", "--nodes=1", "--ntasks-per-node=4",
                                            "--cpus-per-task=8", "--mem=32G", "--gpus-per-node=4", "--account=proj",
                                            "--requeue", "--mail-type=END"]


def test_stop_signals_raise_in_a_job_and_are_put_back(job_step):
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Signalled, match="stopped by SIGTERM outside training"):
        with slurm.stop_signals():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler raises first
    assert signal.getsignal(signal.SIGTERM) is before


def test_stop_signals_do_nothing_outside_a_job(no_job):
    before = signal.getsignal(signal.SIGTERM)
    with slurm.stop_signals():
        assert signal.getsignal(signal.SIGTERM) is before


def test_last_checkpoint_takes_the_signals_by_name(tmp_path: Path):
    assert LastCheckpoint(tmp_path).signals == [signal.SIGINT, signal.SIGTERM, signal.SIGUSR2]
    assert LastCheckpoint(tmp_path, signals=["TERM"]).signals == [signal.SIGTERM]
    with pytest.raises(ParameterError, match=r"signals=\['KILL'\] is invalid: must be a list of signal names"):
        LastCheckpoint(tmp_path, signals=["KILL"])
