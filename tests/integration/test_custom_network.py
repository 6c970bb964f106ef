"""Proof of the network contract: an encoder/decoder pair defined in this file only, chosen by one YAML in a
temporary config folder on Hydra's search path, is trained, pictured, evaluated and sampled without a change
to the package (with the continuous Bernoulli likelihood, so that its density reaches evaluate too)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from helpers.commands import QUICK, config_on_searchpath, evaluate_overrides, only_run, run_cli, tiny_overrides
from PIL import Image
from torch import Tensor, nn

from vae_lightning.checkpoints import load_model
from vae_lightning.latent.geometry import fixed_noise


class PoolEncoder(nn.Module):
    """Images [B, 1, 28, 28] -> 4x4 average pooling -> one dense layer -> [B, 2 * latent_dim]."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.net = nn.Sequential(nn.AvgPool2d(4), nn.Flatten(), nn.Linear(49, 2 * latent_dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class BilinearDecoder(nn.Module):
    """Latents [..., latent_dim] -> a 7x7 map, upsampled bilinearly to 28x28 logits [..., 784]. The upsampling
    wants [N, C, H, W], so it flattens the leading dimensions and restores them, as the contract asks."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.dense = nn.Linear(latent_dim, 49)

    def forward(self, z: Tensor) -> Tensor:
        maps = self.dense(z.reshape(-1, self.latent_dim)).view(-1, 1, 7, 7)
        up = nn.functional.interpolate(maps, scale_factor=4, mode="bilinear", align_corners=False)
        return up.reshape(*z.shape[:-1], 784)


MODEL_YAML = """_target_: vae_lightning.model.VAEModule
latent_dim: 2
encoder: {_target_: test_custom_network.PoolEncoder, latent_dim: "${model.latent_dim}"}
decoder: {_target_: test_custom_network.BilinearDecoder, latent_dim: "${model.latent_dim}"}
optimizer: {_target_: torch.optim.Adam, _partial_: true, lr: 1e-2}
"""


def test_a_network_defined_in_a_test_runs_through_every_command(mnist_root, tmp_path, monkeypatch):
    search, env = config_on_searchpath(tmp_path, "model", "pool", MODEL_YAML, __file__)
    logs = tmp_path / "logs"
    train = run_cli("vae_lightning.train", *tiny_overrides(mnist_root, logs), search, "model=pool", "prior=vamp",
                    "prior.n_pseudo_inputs=20", "likelihood=continuous_bernoulli", "trainer.max_epochs=1",
                    "trainer.limit_train_batches=4", "test=false", "callbacks.prior_grid.n_samples=16",
                    "callbacks.prior_grid.scatter_points=64", env=env)
    assert train.returncode == 0, train.stderr[-3000:]
    run = only_run(logs)
    pictures = {p.name for p in (run / "samples" / "epoch_000").glob("*.png")}
    assert {"samples_vamp_20.png", "samples_comparison.png", "space_manifold.png", "space_scatter.png",
            "space_reconstructions.png"} <= pictures

    cache = tmp_path / "cache"
    evaluate = run_cli("vae_lightning.evaluate", *evaluate_overrides(run, mnist_root, cache), *QUICK,
                       "exact.points_per_dim=64", "exact.max_points_per_dim=128", "sampler_set=study",
                       "log_to_trackers=false", env={**env, "XDG_CACHE_HOME": str(cache)})
    assert evaluate.returncode == 0, evaluate.stderr[-3000:]
    results = json.loads((run / "eval" / "metrics.json").read_text())
    assert results["pixel_likelihood"] == "continuous_bernoulli" and results["model"] == "PoolEncoder / BilinearDecoder"
    assert "a normalised density of gray images" in results["data"]["units"]
    likelihood = results["likelihood"]
    assert math.isfinite(likelihood["nll_exact"]["value"]) and math.isfinite(likelihood["nll_iwae"]["20"])
    assert likelihood["nll_iwae"]["20"] >= likelihood["nll_exact"]["value"] - 0.5
    rows = {r["name"]: r for r in results["sample_quality"]["rows"]}
    assert rows["vamp_20"]["model_prior"] and math.isfinite(rows["vamp_20"]["fid"])

    sample = run_cli("vae_lightning.sample", f"ckpt_path={run}", "n=4", "nrow=2", f"output={tmp_path / 'p.png'}",
                     env=env)
    assert sample.returncode == 0, sample.stderr[-3000:]
    # the picture shows the continuous Bernoulli's mean, not sigmoid(logit)
    monkeypatch.syspath_prepend(str(Path(__file__).parent))  # the checkpoint names this module's classes
    module = load_model(run)
    with torch.no_grad():
        z = fixed_noise(module.prior, 4, seed=0)
        expected = module.decode(z)[0, 0].numpy()
        sigmoid = torch.sigmoid(module.decoder(z))[0].view(28, 28).numpy()
    with Image.open(tmp_path / "p.png") as image:
        first = np.array(image)[2:30, 2:30, 0].astype(float) / 255
    assert np.abs(first - expected).max() <= 1 / 255 + 1e-6
    assert np.abs(first - sigmoid).max() > 0.01
