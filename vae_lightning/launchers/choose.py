"""Choosing a launcher: the configured one (`hydra.launcher._target_`) for threads and checks, and the
scheduler a job runs under for what a job does on a cluster. The launchers are the `Launcher` classes of this
subpackage's modules, found by their `targets`; a launcher with no module is the base `Launcher`."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Mapping
from functools import cache
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from vae_lightning.core.errors import UserError
from vae_lightning.launchers.base import Launcher


@cache
def known() -> tuple[Launcher, ...]:
    """One instance of each Launcher class in this subpackage's modules."""
    package = sys.modules[__package__]
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{__package__}.{module.name}")

    def subclasses(cls: type[Launcher]) -> list[type[Launcher]]:
        return [c for sub in cls.__subclasses__() for c in (sub, *subclasses(sub))]

    return tuple(cls() for cls in subclasses(Launcher) if cls.targets)


def launcher_for(settings: Mapping[str, Any] | None) -> Launcher:
    """The launcher of `hydra.launcher` settings (by `_target_`); None (a single run) or a launcher the project
    has no module for: the base `Launcher`."""
    target = (settings or {}).get("_target_")
    return next((launcher for launcher in known() if target in launcher.targets), Launcher())


def job_scheduler() -> Launcher:
    """The launcher whose scheduler this process runs as a job of (SLURM inside an allocation, whichever
    launcher started the job: a sweep under `hydra/launcher=slurm`, or a local sweep in an sbatch script); the
    base `Launcher` outside any."""
    return next((launcher for launcher in known() if launcher.in_job()), Launcher())


class LauncherCheck(Callback):
    """Hydra callback: before a multirun is submitted (before its folder exists), the configured launcher's
    checks (a missing or silent SLURM, a request it refuses) as one line `error: ...` and exit status 2.
    (Hydra turns an exception of a callback into a warning and goes on, so the callback ends the command
    itself, as the command layer would.)"""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        settings = {key: config.hydra.launcher[key] for key in config.hydra.launcher}
        name = config.hydra.runtime.choices.get("hydra/launcher", "basic")
        try:
            launcher_for(settings).check(settings, name)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
