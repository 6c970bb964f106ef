"""A run folder written before the package was laid out by concept (tests/fixtures/old_run: one epoch of a
MoG(3) prior with 16-unit networks and linear KL warm-up on the synthetic digits, made by the code of
commit 902ef9d) still loads, resumes and evaluates: its config and checkpoint name the classes by their
old homes (`vae_lightning.priors.MixturePrior`, `vae_lightning.module.VAEModule`, ...)."""

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
    train_run,
)

from vae_lightning import load_model

OLD_RUN = Path(__file__).resolve().parents[1] / "fixtures" / "old_run"
# the old run's own settings, for an uninterrupted run of the same training
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


def test_resuming_the_old_run_continues_it_as_an_uninterrupted_run(old_run, mnist_root, tmp_path):
    result = run_cli("vae_lightning.train", f"ckpt_path={old_run}/checkpoints/last.ckpt", f"data.root={mnist_root}",
                     "trainer.max_epochs=2", "callbacks.progress_bar.refresh_rate=0")
    assert result.returncode == 0, result.stderr[-3000:]
    straight = train_run(mnist_root, tmp_path / "straight", *SETTINGS, "trainer.max_epochs=2")
    steps = torch.load(straight / "checkpoints" / "last.ckpt", weights_only=False)["global_step"]
    assert_same_weights(old_run, straight, steps)


def test_evaluate_reads_the_old_checkpoint(old_run, mnist_root, tmp_path):
    result = run_cli("vae_lightning.evaluate", *evaluate_overrides(old_run, mnist_root, tmp_path / "cache"), *QUICK,
                     "samplers=study")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (old_run / "eval" / "metrics.json").is_file()


def test_tiny_overrides_match_the_settings_the_old_run_was_made_with(mnist_root, tmp_path):
    """The fixture was trained with tiny_overrides + SETTINGS: if those change, the resume test compares other runs."""
    saved = (OLD_RUN / ".hydra" / "overrides.yaml").read_text()
    for override in [*tiny_overrides(mnist_root, tmp_path), *SETTINGS, "trainer.max_epochs=1"]:
        if not override.startswith(("data.root=", "paths.log_dir=")):
            assert f"- {override}" in saved, override
