"""The GPU paths, on a machine with CUDA (skipped elsewhere: CI has no GPU). A prior moves to the GPU with
its model while the pictures' uniforms and the exact likelihood's grid edges are made on the CPU; the
default command (N(0, I), 2-D latent: latent figures, exact likelihood) crashed there once on exactly that."""

from __future__ import annotations

import json
import math

import pytest
import torch
from helpers.commands import run_cli, train_run

from vae_lightning.latent import BetaPrior, FlowPrior, GaussianPrior, NormalPrior
from vae_lightning.latent.geometry import fixed_noise

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU and a CUDA build of torch "
                                "(torch.cuda.is_available() is False here)")


PRIORS = [NormalPrior(2), GaussianPrior(2, loc=1.0, scale=2.0), BetaPrior(2, alpha=4.0, beta=3.0)]


@pytest.mark.parametrize("prior", PRIORS, ids=["normal", "gaussian", "beta"])
def test_a_prior_on_the_gpu_answers_cpu_quantiles_and_cdfs(prior):
    u = torch.tensor([[0.1, 0.5], [0.7, 0.99]])
    z_cpu, cdf_cpu = prior.icdf(u), prior.cdf(torch.tensor([[0.2, 0.4]]))
    on_gpu = prior.to("cuda")
    for inputs in (u, u.cuda()):  # answered on the input's device, equal to the CPU's answer
        z = on_gpu.icdf(inputs)
        assert z.device == inputs.device and torch.allclose(z.cpu(), z_cpu)
    cdf = on_gpu.cdf(torch.tensor([[0.2, 0.4]]))
    assert cdf.device.type == "cpu" and torch.allclose(cdf, cdf_cpu)


def test_a_flow_prior_on_the_gpu_draws_the_cpus_fixed_noise_and_density():
    torch.manual_seed(0)
    prior = FlowPrior(2)
    z_cpu = fixed_noise(prior, 64, seed=1)
    log_p_cpu = prior.log_prob(z_cpu)
    on_gpu = prior.to("cuda")
    z = fixed_noise(on_gpu, 64, seed=1)  # base noise from the CPU generator, mapped on the GPU
    assert z.device.type == "cuda" and torch.allclose(z.cpu(), z_cpu, atol=1e-5)
    assert torch.allclose(on_gpu.log_prob(z).cpu(), log_p_cpu, atol=1e-4)


def test_the_default_command_trains_evaluates_and_samples_on_the_gpu(mnist_root, tmp_path):
    run = train_run(mnist_root, tmp_path / "logs", "trainer.accelerator=gpu", "trainer.max_epochs=1",
                    "trainer.limit_train_batches=5")
    result = run_cli("vae_lightning.evaluate", f"ckpt_path={run}", "device=cuda", f"data.root={mnist_root}",
                     "data.download=false", "n_images=32", "iwae.k=50", "n_samples=200", "classifier.epochs=1",
                     "classifier.min_accuracy=0", "exact.max_points_per_dim=64", "progress=false",
                     "log_to_trackers=false", f"classifier.cache_dir={tmp_path / 'cache'}")
    assert result.returncode == 0, result.stderr[-3000:]
    likelihood = json.loads((run / "eval" / "metrics.json").read_text())["likelihood"]
    assert math.isfinite(likelihood["nll_exact"]["value"]) and math.isfinite(likelihood["nll_iwae"]["50"])
    result = run_cli("vae_lightning.sample", f"ckpt_path={run}", "n=4", "nrow=2", f"output={tmp_path / 'p.png'}")
    assert result.returncode == 0, result.stderr[-3000:]
