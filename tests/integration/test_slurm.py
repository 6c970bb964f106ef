"""Sweeps on a live single-node SLURM (tests/helpers/local_slurm.py: munged, slurmctld and slurmd in a
temporary folder), through `hydra/launcher=slurm`: one job per configuration, a job requeued in the middle of
training (twice) or signalled ahead of its time limit resumes its own checkpoint to the weights of an
uninterrupted run, a cancelled job is recorded as cancelled and its sweep continues, and a scheduler that does
not answer or refuses the jobs is one line. Skipped, with the reason, where slurm-wlm and munge are not
installed (`apt-get install slurm-wlm munge`); CI installs them. Every wait is bounded, and the cluster is
stopped at the end even when a test fails.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers.commands import HELPERS, assert_same_weights, only_run, run_cli, scalars, tiny_overrides
from helpers.data import N_TRAIN
from helpers.local_slurm import LocalSlurm, SlurmUnavailable, find_program

import vae_lightning.report as report_command
from vae_lightning.runs import sweep
from vae_lightning.runs.folders import PROJECT_ROOT

pytestmark = pytest.mark.slurm

BATCH, VAL_SIZE, EPOCHS = 8, 64, 4
STEPS = EPOCHS * (N_TRAIN - VAL_SIZE) // BATCH  # 160
SWEEP_TIMEOUT_S = 300


def training(data_root: Path, log_dir: Path) -> list[str]:
    """The run that the requeued, timed-out and cancelled jobs make, and `straight` makes without SLURM."""
    return [*tiny_overrides(data_root, log_dir), f"data.batch_size={BATCH}", f"data.val_size={VAL_SIZE}",
            "data.binarize=dynamic", "test=false", f"trainer.max_epochs={EPOCHS}", "~callbacks.prior_grid"]


def launcher(timeout_min: int = 5, signal_delay_s: int = 120, partition: str = "debug") -> list[str]:
    return ["hydra/launcher=slurm", f"hydra.launcher.partition={partition}", "hydra.launcher.gpus_per_node=0",
            "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2", f"hydra.launcher.timeout_min={timeout_min}",
            f"hydra.launcher.signal_delay_s={signal_delay_s}"]


def instrument(marker: Path, seconds: float = 0.0, slow_runs: int = 0, slow_until: int = 0,
               marker_step: int = 0) -> list[str]:
    """tests/helpers/slurm_job.py's callback: slow steps in the first `slow_runs` runs, `<marker>.<restart>`."""
    key = "+callbacks.instrument"
    return [f"{key}._target_=helpers.slurm_job.Instrument", f"{key}.marker={marker}", f"{key}.seconds={seconds}",
            f"{key}.slow_runs={slow_runs}", f"{key}.slow_until={slow_until}", f"{key}.marker_step={marker_step}"]


@pytest.fixture(scope="session")
def slurm() -> Iterator[LocalSlurm]:
    """The cluster, started once (in a folder under /tmp: munged wants every folder above its socket
    searchable, which pytest's private temporary folder is not), stopped at the end of the session."""
    folder = Path(tempfile.mkdtemp(prefix="vae-slurm-"))
    cluster = LocalSlurm(folder)
    try:
        cluster.start()
    except SlurmUnavailable as err:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(str(err))
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def cluster(slurm: LocalSlurm) -> Iterator[LocalSlurm]:
    """The cluster for one test; whatever the test leaves in the queue is cancelled after it."""
    yield slurm
    slurm.cancel_all()


def job_env(cluster: LocalSlurm) -> dict[str, str]:
    """The sweep's environment (its jobs inherit it): the cluster, the test instrument importable, one thread."""
    path = os.pathsep.join([str(HELPERS.parent), os.environ.get("PYTHONPATH", "")])
    return {"SLURM_CONF": str(cluster.conf), "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


@pytest.fixture
def start_sweep(cluster: LocalSlurm) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """start_sweep(*overrides): `python -m vae_lightning.train -m overrides...` in the background, ended
    after the test if it still runs (a test that failed while waiting for it)."""
    started: list[subprocess.Popen[str]] = []

    def start(*overrides: str) -> subprocess.Popen[str]:
        started.append(subprocess.Popen([sys.executable, "-m", "vae_lightning.train", "-m", *overrides],
                                        cwd=PROJECT_ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        env={**os.environ, **job_env(cluster)}))
        return started[-1]

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.communicate()


def finish(process: subprocess.Popen[str], timeout: float = SWEEP_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        pytest.fail(f"the sweep did not end within {timeout} s:\n{stderr[-3000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def wait_for(path: Path, process: subprocess.Popen[str], timeout: float = 180) -> str:
    """The contents of `path` once the job creates it (the sweep still running)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            stderr = process.communicate()[1] if process.poll() is not None else "(still running)"
            pytest.fail(f"{path.name} did not appear within {timeout} s:\n{stderr[-3000:]}")
        time.sleep(0.1)
    return path.read_text()  # whole: the instrument renames it into place


def scheduler(cluster: LocalSlurm, *args: str) -> str:
    result = subprocess.run(args, capture_output=True, text=True, env=cluster.env, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def running_job(cluster: LocalSlurm) -> str:
    """The id of the one job in the queue (a sweep of one configuration submits one job, not an array)."""
    (line,) = scheduler(cluster, "squeue", "-h", "-o", "%i %T").splitlines()
    job, state = line.split()
    assert state == "RUNNING", line
    return job


def the_sweep(log_dir: Path) -> Path:
    (folder,) = (log_dir / "train" / "multiruns").iterdir()
    return folder


def job_logs(sweep_dir: Path) -> str:
    """What submitit's jobs wrote to stdout and stderr, every run of every job."""
    return "".join(p.read_text() for p in sorted((sweep_dir / ".submitit").glob("*/*_log.*")))


@pytest.fixture(scope="module")
def straight(mnist_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run of `training`, without SLURM."""
    log_dir = tmp_path_factory.mktemp("straight")
    result = run_cli("vae_lightning.train", *training(mnist_root, log_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    return only_run(log_dir)


def assert_same_training(job: Path, straight: Path) -> None:
    assert_same_weights(job, straight, STEPS)
    val = scalars(job, "val/elbo")
    assert len(val) == EPOCHS and val == scalars(straight, "val/elbo")  # the curve continued, no gap, no repeat


# --- a sweep


def test_a_sweep_runs_one_slurm_job_per_configuration_and_reports(cluster, mnist_root, tmp_path, capsys):
    marker = tmp_path / "job${hydra:job.num}"
    result = run_cli("vae_lightning.train", "-m", *tiny_overrides(mnist_root, tmp_path), "trainer.max_epochs=1",
                     "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
                     *launcher(), *instrument(marker), "prior=normal,beta", env=job_env(cluster),
                     timeout=SWEEP_TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-3000:]
    sweep_dir = the_sweep(tmp_path)
    jobs = sweep.job_dirs(sweep_dir)
    assert [j.name for j in jobs] == ["0", "1"]
    ids = set()
    for job in jobs:  # the local launchers' layout, with the SLURM job that ran it
        assert (job / "checkpoints" / "last.ckpt").is_file() and (job / ".hydra" / "overrides.yaml").is_file()
        assert list((job / "tensorboard").rglob("events.out.tfevents.*"))
        status = sweep.read_status(job)
        assert status["status"] == "completed" and status["threads"] == 1  # cpus_per_task=1
        assert re.fullmatch(r"\d+_[01]", status["slurm"]["job_id"]) and status["slurm"]["restarts"] == 0
        ids.add(status["slurm"]["job_id"].split("_")[0])
        # Lightning ran it as a SLURM job step (SLURMEnvironment, not its local environment)
        assert (tmp_path / f"job{job.name}.0").read_text().split()[0] == "SLURMEnvironment"
    assert len(ids) == 1  # one job array
    assert "srun" not in job_logs(sweep_dir)  # no "srun is available but not used" inside the job
    report_command.main([str(sweep_dir)])
    assert "(2 jobs, 0 failed)" in capsys.readouterr().out
    assert sum("| completed |" in line for line in (sweep_dir / "report.md").read_text().splitlines()) == 2


# --- requeue, time limit, cancel


def test_a_job_requeued_twice_mid_training_resumes_its_own_checkpoint_exactly(cluster, start_sweep, straight,
                                                                                mnist_root, tmp_path):
    marker = tmp_path / "at"
    process = start_sweep(*training(mnist_root, tmp_path), *launcher(),
                          *instrument(marker, seconds=0.1, slow_runs=2, marker_step=45))
    states = []
    for restart in (0, 1):  # after the first epoch (40 steps), then again right after the resume
        wait_for(Path(f"{marker}.{restart}"), process)
        job = running_job(cluster)
        scheduler(cluster, "scontrol", "requeue", job)
        states.append(scheduler(cluster, "squeue", "-h", "-j", job, "-o", "%T"))
        print(f"scontrol requeue {job} at step >= 45 of run {restart}: squeue says {states[-1]}")
    result = finish(process)
    assert result.returncode == 0, result.stderr[-3000:]
    assert set(states) <= {"COMPLETING", "PENDING", "REQUEUED"}, states
    sweep_dir = the_sweep(tmp_path)
    (folder,) = sweep.job_dirs(sweep_dir)
    status = sweep.read_status(folder)
    assert status["status"] == "completed" and status["slurm"]["restarts"] == 2
    assert_same_training(folder, straight)
    assert not list((folder / ".hydra").glob("resume_*"))  # the same run folder and config, not a resume of it
    log = (folder / "train.log").read_text()
    assert log.count("Continuing this job's own") == 2
    assert len(re.findall(r"interrupted by SIGTERM at epoch \d, step \d+; saved .*; requeued", log)) == 2


def test_a_job_signalled_ahead_of_its_time_limit_requeues_itself_and_completes(start_sweep, straight, mnist_root,
                                                                                tmp_path):
    # The controller looks at time limits every 30 s: SIGUSR2, 60 s ahead of a 2-minute limit, comes at the
    # first look 60 s or more into the run (60-90 s: after the job's start, which took up to 40 s on a busy
    # 2-core machine; a notice before submitit's handlers are in place ends the process), the time limit's
    # SIGTERM 30 s later. The first run, slowed to a step per second, cannot finish in time; the second is not.
    marker = tmp_path / "at"
    process = start_sweep(*training(mnist_root, tmp_path), *launcher(timeout_min=2, signal_delay_s=60),
                          *instrument(marker, seconds=1.0, slow_runs=1))
    print(f"run 0 in training: {wait_for(Path(f'{marker}.0'), process, timeout=120)}")
    result = finish(process)
    assert result.returncode == 0, result.stderr[-3000:]
    (folder,) = sweep.job_dirs(the_sweep(tmp_path))
    status = sweep.read_status(folder)
    assert status["status"] == "completed" and status["slurm"]["restarts"] >= 1
    assert_same_training(folder, straight)
    log = (folder / "train.log").read_text()
    assert re.search(r"interrupted by SIGUSR2 at epoch \d, step \d+; saved .*; requeued", log), log[-3000:]


def test_a_cancelled_job_is_recorded_as_cancelled_and_its_sweep_continues(cluster, start_sweep, straight, mnist_root,
                                                                          tmp_path, capsys):
    marker = tmp_path / "at"
    process = start_sweep(*training(mnist_root, tmp_path), *launcher(),
                          *instrument(marker, seconds=0.1, slow_runs=1, slow_until=30, marker_step=10))
    wait_for(Path(f"{marker}.0"), process)
    job = running_job(cluster)
    scheduler(cluster, "scancel", job)
    with capsys.disabled():
        print(f"scancel {job} at step >= 10: squeue says {scheduler(cluster, 'squeue', '-h', '-j', job, '-o', '%T')}")
    result = finish(process)
    assert result.returncode == 1, result.stderr[-3000:]
    sweep_dir = the_sweep(tmp_path)
    (folder,) = sweep.job_dirs(sweep_dir)
    status = sweep.read_status(folder)
    assert status["status"] == "cancelled" and status["ckpt_path"] == str(folder / "checkpoints" / "last.ckpt")
    assert re.fullmatch(r"interrupted by SIGTERM at epoch 0, step \d+; saved .*last\.ckpt; SLURM cancelled the job",
                        status["error"])
    assert f"error: job 0 cancelled: {status['error']}" in result.stderr
    report_command.main([str(sweep_dir)])
    assert "(1 jobs, 0 failed, 1 cancelled)" in capsys.readouterr().out
    assert "| 0 | cancelled |" in (sweep_dir / "report.md").read_text()

    (line,) = [x for x in result.stderr.splitlines() if x.startswith("continue the sweep with: ")]
    command = shlex.split(line.removeprefix("continue the sweep with: "))
    assert command[:4] == ["python", "-m", "vae_lightning.train", "-m"] and f"hydra.sweep.dir={sweep_dir}" in command
    again = subprocess.run([sys.executable, *command[1:]], cwd=PROJECT_ROOT, capture_output=True, text=True,
                           timeout=SWEEP_TIMEOUT_S, env={**os.environ, **job_env(cluster)})
    assert again.returncode == 0, again.stderr[-3000:]
    assert sweep.job_dirs(sweep_dir) == [folder] and sweep.read_status(folder)["status"] == "completed"
    assert_same_training(folder, straight)  # the cancelled job continued where it stopped


# --- bad input


def test_a_partition_that_does_not_exist_is_slurms_refusal_in_one_line(cluster, mnist_root, tmp_path):
    result = run_cli("vae_lightning.train", "-m", *tiny_overrides(mnist_root, tmp_path), *launcher(partition="nope"),
                     env=job_env(cluster))
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: hydra/launcher=slurm: SLURM refuses the sweep's jobs (--partition=nope ")
    assert line.endswith("): invalid partition specified: nope; see sinfo for the partitions and their limits")
    assert not (tmp_path / "train").exists()


def test_no_scheduler_is_one_line_naming_the_launcher_and_leaves_no_folder(mnist_root, tmp_path):
    no_slurm = {"PATH": str(Path(sys.executable).parent)}  # sbatch and scontrol not found
    cases = [(no_slurm, "error: hydra/launcher=slurm cannot submit the sweep: sbatch and scontrol not found on PATH "
                        "(no SLURM here); run it on a node of the cluster, or choose another hydra/launcher "
                        "(basic, joblib, submitit_local)")]
    if find_program("slurmd") and find_program("scontrol"):  # a cluster's configuration whose controller is down
        down = LocalSlurm(tmp_path / "down")
        down.write_config()
        cases.append(({"SLURM_CONF": str(down.conf)}, "error: hydra/launcher=slurm cannot submit the sweep: no SLURM "
                       f"controller answers (scontrol ping: Slurmctld(primary) at {down.node} is DOWN)"))
    for env, expected in cases:
        result = run_cli("vae_lightning.train", "-m", *tiny_overrides(mnist_root, tmp_path / "logs"), *launcher(),
                         env=env)
        assert (result.returncode, result.stderr.strip()) == (2, expected)
        assert not (tmp_path / "logs").exists()
