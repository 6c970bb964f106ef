"""Hydra's basic launcher (one job after the other, in this process) and submitit's local launcher (jobs as
local processes): torch threads follow the CPUs a scheduler allocated, else submitit's `cpus_per_task`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vae_lightning.launchers.base import Launcher


class BasicLauncher(Launcher):
    """`hydra/launcher=basic`, Hydra's default: a scheduler's allocation, else torch's default threads."""

    targets = ("hydra._internal.core_plugins.basic_launcher.BasicLauncher",)


class SubmititLocalLauncher(Launcher):
    """`hydra/launcher=submitit_local`: each job its `cpus_per_task` threads when set."""

    targets = ("hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher",)

    def threads(self, settings: Mapping[str, Any], cores: int, allocated: int | None) -> int | None:
        if allocated is not None:
            return allocated
        return int(settings["cpus_per_task"]) if settings.get("cpus_per_task") else None
