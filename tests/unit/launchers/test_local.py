"""launchers.local: Hydra's basic launcher (torch's default threads, or a scheduler's allocation) and submitit's
local one (its cpus_per_task)."""

from __future__ import annotations

from vae_lightning.launchers.local import BasicLauncher, SubmititLocalLauncher


def test_the_basic_launcher_leaves_torchs_default_unless_a_scheduler_allocated_cpus():
    assert BasicLauncher().threads({}, cores=8, allocated=None) is None
    assert BasicLauncher().threads({}, cores=8, allocated=3) == 3  # a sweep inside an sbatch script


def test_submitit_local_jobs_get_their_cpus_per_task():
    local = SubmititLocalLauncher()
    assert local.threads({"cpus_per_task": 3}, cores=8, allocated=None) == 3
    assert local.threads({"cpus_per_task": None}, cores=8, allocated=None) is None
    assert local.threads({"cpus_per_task": 3}, cores=8, allocated=2) == 2
