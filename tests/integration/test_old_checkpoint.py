"""A run folder written before the package was laid out by concept (tests/fixtures/old_run: one epoch of a
MoG(3) prior with 16-unit networks and linear KL warm-up on the synthetic digits, made by the code of
commit 902ef9d) still loads, resumes and evaluates: its config and checkpoint name the classes by their
old homes (`vae_lightning.priors.MixturePrior`, `vae_lightning.module.VAEModule`, ...).

The fixture's weights were computed on another machine, so its resume is compared with a continuation of the
same stored weights made here (the same run with its classes renamed to their homes now), never with a fresh
run: float results differ between CPUs, and a test never compares bits made on two machines."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from helpers.commands import (
    QUICK,
    assert_same_weights,
    evaluate_overrides,
    run_cli,
    tiny_overrides,
)
from omegaconf import OmegaConf

from vae_lightning import load_model
from vae_lightning.checkpoints import CHECKPOINT_KEY
from vae_lightning.checkpoints.renames import upgrade_config

OLD_RUN = Path(__file__).resolve().parents[1] / "fixtures" / "old_run"
# the old run's own settings, as it was made
SETTINGS = ["prior=mog", "prior.n_components=3", "model.encoder.hidden_dims=[16]", "model.decoder.hidden_dims=[16]",
            "annealing=linear", "test=false", "~callbacks.prior_grid"]


@pytest.fixture
def old_run(tmp_path: Path) -> Path:
    """A copy of the fixture (resume and evaluate write into the run folder)."""
    return Path(shutil.copytree(OLD_RUN, tmp_path / "old_run"))


def test_the_old_checkpoint_names_classes_by_their_old_homes():
    stored = torch.load(OLD_RUN / "checkpoints" / "last.ckpt", weights_only=False)["vae_lightning"]
    assert stored["prior"]["_target_"] == "vae_lightning.priors.MixturePrior"
    assert stored["model"]["_target_"] == "vae_lightning.module.VAEModule"
    assert "vae_lightning.reliability.LastCheckpoint" in (OLD_RUN / ".hydra" / "config.yaml").read_text()


def test_load_model_rebuilds_the_old_model():
    model = load_model(OLD_RUN)
    assert model.prior.label == "MoG(3)"
    assert model.architecture == "mlp 784-16-2 leaky_relu / mlp 2-16-784 leaky_relu"
    assert model.sample(4).shape == (4, 1, 28, 28)


def upgraded_copy(folder: Path) -> Path:
    """A copy of the fixture in today's format: the same weights and state, every class named by its home now, no
    prior.latent_dim."""
    shutil.copytree(OLD_RUN, folder)
    last = folder / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=False)
    upgrade_config(checkpoint[CHECKPOINT_KEY])
    torch.save(checkpoint, last)
    config = folder / ".hydra" / "config.yaml"
    OmegaConf.save(upgrade_config(OmegaConf.load(config)), config)
    assert "vae_lightning.priors." not in config.read_text()
    return folder


def test_resuming_the_old_run_continues_it_as_the_same_run_in_todays_format_does(old_run, mnist_root, tmp_path):
    today = upgraded_copy(tmp_path / "today")
    for run in (old_run, today):
        result = run_cli("vae_lightning.train", f"ckpt_path={run}/checkpoints/last.ckpt", f"data.root={mnist_root}",
                         "trainer.max_epochs=2", "callbacks.progress_bar.refresh_rate=0")
        assert result.returncode == 0, result.stderr[-3000:]
    stored = torch.load(OLD_RUN / "checkpoints" / "last.ckpt", weights_only=False)
    resumed = torch.load(old_run / "checkpoints" / "last.ckpt", weights_only=False)
    assert resumed["global_step"] == 2 * stored["global_step"] and resumed["epoch"] == 1
    assert not torch.equal(resumed["state_dict"]["encoder.net.0.weight"], stored["state_dict"]["encoder.net.0.weight"])
    assert_same_weights(old_run, today, resumed["global_step"])


def test_evaluate_reads_the_old_checkpoint(old_run, mnist_root, tmp_path):
    result = run_cli("vae_lightning.evaluate", *evaluate_overrides(old_run, mnist_root, tmp_path / "cache"), *QUICK,
                     "sampler_set=study")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (old_run / "eval" / "metrics.json").is_file()


def test_tiny_overrides_match_the_settings_the_old_run_was_made_with(mnist_root, tmp_path):
    """The fixture was trained with tiny_overrides + SETTINGS (a record of how it was made, for whoever remakes it)."""
    saved = (OLD_RUN / ".hydra" / "overrides.yaml").read_text()
    for override in [*tiny_overrides(mnist_root, tmp_path), *SETTINGS, "trainer.max_epochs=1"]:
        if not override.startswith(("data.root=", "paths.log_dir=")):
            assert f"- {override}" in saved, override
