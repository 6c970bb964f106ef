"""Every experiment file (conf/experiment/*.yaml) composes and trains for a few steps on the synthetic
data; a sweep's parameters are options that exist, so `-m experiment=<name>` starts every job."""

from __future__ import annotations

import math

import pytest
from helpers.commands import tiny_overrides
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser

from vae_lightning.runs.folders import CONF_DIR, compose_config, register_resolvers
from vae_lightning.runs.training import train

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
# a few steps of every experiment, on the tiny data (an experiment's own data sizes are overridden)
FEW_STEPS = ["trainer.max_epochs=1", "trainer.limit_train_batches=3", "trainer.limit_val_batches=1", "test=false",
             "callbacks.prior_grid=null", "callbacks.model_checkpoint=null", "callbacks.last_checkpoint=null"]


def sweep_choices(experiment: str) -> list[list[str]]:
    """The overrides of each job of the experiment's sweep, as comma lists: one list per swept key."""
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        hydra_cfg = compose("train", [f"experiment={experiment}"], return_hydra_config=True).hydra
    params = hydra_cfg.sweeper.get("params") or {}
    swept = []
    for key, value in params.items():
        parsed = OverridesParser.create().parse_override(f"{key}={value}")
        if parsed.is_sweep_override() and not parsed.is_interval_sweep():
            swept.append([f"{key}={v}" for v in parsed.sweep_string_iterator()])
    return swept


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_trains_a_few_steps(experiment, mnist_root, tmp_path, compose_cfg):
    cfg = compose_cfg([f"experiment={experiment}", *tiny_overrides(mnist_root, tmp_path), *FEW_STEPS])
    metrics = train(cfg)
    assert math.isfinite(metrics["val/elbo"])
    for choices in sweep_choices(experiment):
        for choice in choices:  # every swept option exists and composes with the experiment
            compose_config("train", [f"experiment={experiment}", choice], tmp_path / "compose")


def test_the_study_sweeps_every_study_prior_under_both_schedules():
    swept = sweep_choices("study")
    assert len(swept) == 2 and math.prod(len(c) for c in swept) == 14
