"""Learned priors and fitted samplers through the real config and the real commands, on the tiny synthetic
data: pictures with fixed noise, exact resume, the checkpoint contract, evaluate's bounds, sample, multirun."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.commands import (
    PICTURED_STEPS,
    assert_same_weights,
    brief_likelihoods,
    run_cli,
    tiny_overrides,
    train_run,
)
from PIL import Image

from vae_lightning.checkpoints import load_model
from vae_lightning.latent.geometry import fixed_noise

FEW_STEPS = ["trainer.max_epochs=2", "trainer.limit_train_batches=4", "test=false"]


@pytest.fixture(scope="module")
def mog_runs(learned_prior_run: Path, mnist_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two identical runs of a mog model (same seed) that also draw the fitted samplers every epoch: conftest's
    learned_prior_run, and the same run made again."""
    again = train_run(mnist_root, tmp_path_factory.mktemp("mog_again"), "prior=mog", "sampler_set=study_fitted",
                      *PICTURED_STEPS)
    return learned_prior_run, again


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.array(image)


def test_mog_run_draws_every_picture_with_the_same_noise_in_every_run(mog_runs):
    a, b = mog_runs
    for epoch in ("epoch_000", "epoch_001"):
        names = {p.name for p in (a / "samples" / epoch).glob("*.png")}
        assert {"samples_mog_10.png", "samples_aggregate_posterior.png", "samples_gmm_10.png",
                "samples_q_flow_nsf_4.png", "samples_comparison.png", "space_manifold.png",
                "space_scatter.png"} <= names, names
    for name in ("samples_mog_10.png", "samples_aggregate_posterior.png", "samples_gmm_10.png",
                 "samples_q_flow_nsf_4.png", "space_manifold.png"):
        assert np.array_equal(pixels(a / "samples" / "epoch_001" / name), pixels(b / "samples" / "epoch_001" / name))
    # the learned prior's parameters are in the checkpoint and changed while training
    state = torch.load(a / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert {"prior.means", "prior.raw_scales", "prior.logits"} <= set(state)
    assert not torch.equal(state["prior.logits"], torch.zeros(10))


def test_briefly_trained_mog_likelihood_bounds(mog_runs, mnist_root):
    result = brief_likelihoods(mog_runs[0], mnist_root)
    exact = result["nll_exact"]
    assert exact["converged"] and exact["prior_mass_on_grid"] == pytest.approx(1.0, abs=1e-4)
    assert result["nll_iwae"]["200"] >= exact["value"] - 0.1
    assert -result["elbo"] >= exact["value"]
    assert result["kl_per_dim"] is None  # a Monte Carlo KL of the whole vector does not split by dimension


def test_sample_rebuilds_the_learned_prior_and_fits_samplers_from_data_root(mog_runs, mnist_root, tmp_path):
    run = mog_runs[0]
    result = run_cli("vae_lightning.sample", f"ckpt_path={run}", "n=16", "nrow=4", f"output={tmp_path / 'p.png'}")
    assert result.returncode == 0, result.stderr[-3000:]
    module = load_model(run)
    with torch.no_grad():
        expected = module.decode(fixed_noise(module.prior, 16, seed=0))
    grid = pixels(tmp_path / "p.png")
    first = grid[2:30, 2:30, 0].astype(float) / 255  # the first digit, inside its 2-pixel border
    assert np.abs(first - expected[0, 0].numpy()).max() <= 1 / 255 + 1e-6
    for sampler in ("aggregate", "gmm"):
        ok = run_cli("vae_lightning.sample", f"ckpt_path={run}", f"fitted={sampler}", "n=4",
                     f"data.root={mnist_root}", f"output={tmp_path / sampler}.png")
        assert ok.returncode == 0 and (tmp_path / f"{sampler}.png").is_file(), ok.stderr[-3000:]
    missing = run_cli("vae_lightning.sample", f"ckpt_path={run}", "fitted=aggregate",
                      f"data.root={tmp_path / 'nowhere'}", f"paths.log_dir={tmp_path / 'logs'}")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    (line,) = [x for x in missing.stderr.splitlines() if x.startswith("error:")]
    assert "data.root=" in line and "aggregate_posterior" in line


def test_mog_resume_is_bit_identical_and_a_changed_prior_is_refused(mnist_root, tmp_path):
    straight = train_run(mnist_root, tmp_path / "straight", "prior=mog", *FEW_STEPS)
    first = train_run(mnist_root, tmp_path / "resumed", "prior=mog", *FEW_STEPS[1:], "trainer.max_epochs=1")
    resumed = run_cli("vae_lightning.train", f"ckpt_path={first}/checkpoints/last.ckpt", "trainer.max_epochs=2",
                      f"paths.log_dir={tmp_path / 'resumed'}", f"data.root={mnist_root}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_weights(first, straight, 8)
    refused = run_cli("vae_lightning.train", f"ckpt_path={first}/checkpoints/last.ckpt", "trainer.max_epochs=3",
                      "prior=mog", "prior.n_components=5", f"paths.log_dir={tmp_path / 'resumed'}")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    (line,) = [x for x in refused.stderr.splitlines() if x.startswith("error:")]
    assert "prior.n_components=5" in line and "checkpoint: 10" in line


def test_multirun_sweeps_normal_mog_and_vamp(mnist_root, tmp_path):
    result = run_cli("vae_lightning.train", "-m", *tiny_overrides(mnist_root, tmp_path), "prior=normal,mog,vamp",
                     "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                     "test=false", "~callbacks.prior_grid")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted((tmp_path / "train" / "multiruns").glob("*/[0-9]*"))
    assert len(jobs) == 3
    priors = [load_model(job).prior.label for job in jobs]
    assert priors == ["N(0, 1²)", "MoG(10)", "Vamp(500)"]
