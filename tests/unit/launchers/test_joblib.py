"""launchers.joblib: parallel jobs share this machine's cores (or a scheduler's allocation)."""

from __future__ import annotations

from vae_lightning.launchers.joblib import JoblibLauncher


def test_threads_share_the_cores_between_parallel_jobs():
    joblib = JoblibLauncher()
    assert joblib.threads({"n_jobs": 2}, cores=2, allocated=None) == 1
    assert joblib.threads({"n_jobs": 2}, cores=8, allocated=None) == 4
    assert joblib.threads({"n_jobs": -1}, cores=8, allocated=None) == 1  # -1: one job per core
    assert joblib.threads({"n_jobs": -2}, cores=8, allocated=None) == 1  # 7 jobs
    assert joblib.threads({"n_jobs": 1}, cores=8, allocated=None) == 8
    assert joblib.threads({"n_jobs": 2}, cores=64, allocated=8) == 4  # inside a SLURM allocation
    assert joblib.threads({"n_jobs": None}, cores=8, allocated=None) is None


def test_nothing_is_checked_and_no_scheduler_is_involved():
    joblib = JoblibLauncher()
    joblib.check({"n_jobs": 2}, "joblib")
    assert not joblib.in_job() and joblib.job_record() == {} and joblib.allocated_cpus() is None
