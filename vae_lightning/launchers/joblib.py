"""joblib's launcher (`hydra/launcher=joblib`): `n_jobs` jobs at once, as processes of this machine, share its
cores (or a scheduler's allocation) between them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vae_lightning.launchers.base import Launcher


class JoblibLauncher(Launcher):
    targets = ("hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",)

    def threads(self, settings: Mapping[str, Any], cores: int, allocated: int | None) -> int | None:
        """The allocation (or this machine's cores) shared by the jobs that run at once: `n_jobs` (negative as
        joblib counts: -1 = one per core); none set: the allocation, or torch's default."""
        if settings.get("n_jobs") is None:
            return allocated
        n_jobs, available = int(settings["n_jobs"]), allocated or cores
        parallel = n_jobs if n_jobs > 0 else max(1, available + 1 + n_jobs)
        return max(1, available // parallel)
