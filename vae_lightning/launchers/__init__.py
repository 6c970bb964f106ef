"""Launchers: what the project knows about each Hydra launcher, one module per launcher, chosen from the
configured one (`hydra.launcher._target_`, set by `hydra/launcher=<name>`).

- `base`: the interface (`Launcher`): torch threads per job, checks before a sweep is submitted, and what a
  job does on a cluster (stop signals, its record in status.json, what became of a job its scheduler stopped);
  the base class is the launcher of a single run and of a launcher the project has no module for;
- `local`: Hydra's basic launcher and submitit's local one; `joblib`: jobs sharing this machine's cores;
  `slurm`: submitit's SLURM launcher and a run as a SLURM job;
- `choose`: the launcher for `hydra.launcher` settings, the scheduler a job runs under, and the Hydra
  callback that runs the launcher's checks before a multirun (conf/hydra/default.yaml).

Adding a launcher: one module here with a `Launcher` subclass naming its `_target_` in `targets` (found
without being listed), plus its YAML in conf/hydra/launcher/. Imports only core.
"""

from vae_lightning.launchers.base import Launcher, Stop
from vae_lightning.launchers.choose import job_scheduler, launcher_for

__all__ = ["Launcher", "Stop", "job_scheduler", "launcher_for"]
