"""A run folder written by the code of 2026-12-07 (commit cc0f4e8, before the house's second move; tests/fixtures/
members_run: one epoch of a Beta(4, 3) prior with 16-unit networks and linear KL warm-up on the synthetic digits,
trained as two members, `'seeds=[0,1]'`) still loads, resumes bit-identically and evaluates. Its configs carry
`prior.latent_dim: ${model.latent_dim}` and its checkpoints the stacked members' state.

The fixture's weights were computed on another machine, so resuming is checked against resuming here: training
on from it to epoch 3 in one go and in two resumes (epoch 2, then 3) ends in the same bits."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from helpers.commands import QUICK, assert_same_weights, evaluate_overrides, run_cli

from vae_lightning import load_model

MEMBERS_RUN = Path(__file__).resolve().parents[1] / "fixtures" / "members_run"


def copy(tmp_path: Path, name: str) -> Path:
    return Path(shutil.copytree(MEMBERS_RUN, tmp_path / name))


def resume(run: Path, data_root: Path, epochs: int) -> None:
    result = run_cli("vae_lightning.train", f"ckpt_path={run}/checkpoints/last.ckpt", f"data.root={data_root}",
                     f"trainer.max_epochs={epochs}", "callbacks.progress_bar.refresh_rate=0")
    assert result.returncode == 0, result.stderr[-3000:]


def test_load_model_rebuilds_each_member():
    for seed in (0, 1):
        model = load_model(MEMBERS_RUN / f"seed_{seed}")
        assert model.prior.label == "Beta(4, 3)" and model.latent_dim == 2
        assert model.architecture == "mlp 784-16-2 leaky_relu / mlp 2-16-784 leaky_relu"
        assert model.sample(4).shape == (4, 1, 28, 28)
    first, second = (load_model(MEMBERS_RUN / f"seed_{s}") for s in (0, 1))
    assert not torch.equal(first.encoder.net[0].weight, second.encoder.net[0].weight)  # two seeds, two models


@pytest.mark.full
def test_resuming_the_members_run_is_bit_identical_to_training_on_in_one_go(mnist_root, tmp_path):
    straight, twice = copy(tmp_path, "straight"), copy(tmp_path, "twice")
    resume(straight, mnist_root, 3)
    resume(twice, mnist_root, 2)
    resume(twice, mnist_root, 3)
    stored = torch.load(MEMBERS_RUN / "checkpoints" / "last.ckpt", weights_only=False)
    assert_same_weights(twice, straight, 3 * stored["global_step"])
    for seed in (0, 1):
        assert_same_weights(twice / f"seed_{seed}", straight / f"seed_{seed}", 3 * stored["global_step"])
        member = torch.load(straight / f"seed_{seed}" / "checkpoints" / "last.ckpt", weights_only=False)
        before = torch.load(MEMBERS_RUN / f"seed_{seed}" / "checkpoints" / "last.ckpt", weights_only=False)
        key = "encoder.net.0.weight"
        assert not torch.equal(member["state_dict"][key], before["state_dict"][key])


def test_evaluate_reads_a_member_of_the_recent_run(mnist_root, tmp_path):
    run = copy(tmp_path, "run")
    result = run_cli("vae_lightning.evaluate", *evaluate_overrides(run / "seed_1", mnist_root, tmp_path / "cache"),
                     *QUICK)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run / "seed_1" / "eval" / "metrics.json").is_file()
