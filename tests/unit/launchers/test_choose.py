"""launchers.choose: the launcher of `hydra.launcher` by its `_target_` (each module's Launcher found without a
list), the base launcher for a single run or an unknown launcher, and the check that runs before a multirun."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from vae_lightning.core.errors import UserError
from vae_lightning.core.paths import CONF_DIR
from vae_lightning.launchers import Launcher, launcher_for
from vae_lightning.launchers.choose import LauncherCheck, known
from vae_lightning.launchers.joblib import JoblibLauncher
from vae_lightning.launchers.local import BasicLauncher, SubmititLocalLauncher
from vae_lightning.launchers.slurm import SlurmLauncher


@pytest.mark.parametrize(("choice", "launcher"), [("basic", BasicLauncher), ("joblib", JoblibLauncher),
                                                  ("submitit_local", SubmititLocalLauncher),
                                                  ("submitit_slurm", SlurmLauncher), ("slurm", SlurmLauncher)])
def test_each_hydra_launcher_choice_has_its_module(choice, launcher):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"hydra/launcher={choice}"], return_hydra_config=True)
    assert type(launcher_for(cfg.hydra.launcher)) is launcher


def test_a_single_run_or_a_launcher_without_a_module_gets_the_base_launcher():
    assert type(launcher_for(None)) is Launcher
    ray = {"_target_": "hydra_plugins.hydra_ray_launcher.ray_aws_launcher.RayAWSLauncher"}
    assert type(launcher_for(ray)) is Launcher
    assert Launcher().threads({}, cores=8, allocated=None) is None


def test_every_launcher_module_is_found_and_no_target_is_claimed_twice():
    targets = [t for launcher in known() for t in launcher.targets]
    assert len(targets) == len(set(targets)) and {type(launcher) for launcher in known()} == {
        BasicLauncher, JoblibLauncher, SubmititLocalLauncher, SlurmLauncher}


def test_the_check_before_a_multirun_is_the_configured_launchers(monkeypatch, capsys):
    checked = []

    def refuse(self, settings, name):
        checked.append((settings["_target_"], name))
        raise UserError("hydra/launcher=slurm cannot submit the sweep: no SLURM here")

    monkeypatch.setattr(SlurmLauncher, "check", refuse)
    config = OmegaConf.create({"hydra": {"launcher": {"_target_": SlurmLauncher.targets[0], "partition": None},
                                         "runtime": {"choices": {"hydra/launcher": "slurm"}}}})
    with pytest.raises(SystemExit) as stopped:
        LauncherCheck().on_multirun_start(config)
    assert stopped.value.code == 2 and checked == [(SlurmLauncher.targets[0], "slurm")]
    assert capsys.readouterr().err == "error: hydra/launcher=slurm cannot submit the sweep: no SLURM here\n"
    config.hydra.launcher._target_ = BasicLauncher.targets[0]
    config.hydra.runtime.choices["hydra/launcher"] = "basic"
    LauncherCheck().on_multirun_start(config)  # nothing to check
    assert len(checked) == 1
