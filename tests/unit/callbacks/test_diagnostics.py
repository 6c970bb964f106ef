"""Posterior-collapse diagnostics (active units, mutual information, KL per dimension) and free bits."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from helpers.commands import scalars, tiny_overrides
from torch import nn
from torch.distributions import Normal

from vae_lightning.callbacks import Diagnostics
from vae_lightning.core.building import build
from vae_lightning.core.errors import ParameterError
from vae_lightning.evaluation.diagnostics import mutual_information
from vae_lightning.latent import MixturePrior, NormalPrior
from vae_lightning.model import MLPDecoder, MLPEncoder, VAEModule
from vae_lightning.runs.training import train


@pytest.mark.parametrize("sigma", [0.3, 1.0, 3.0])
def test_mutual_information_of_a_gaussian_channel(sigma):
    """x ~ N(0, 1), q(z|x) = N(x, sigma²): I(x; z) = ½ log(1 + 1/sigma²)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4000, 1, generator=gen)
    q = Normal(x, torch.full_like(x, sigma))
    z = x + sigma * torch.randn(4000, 1, generator=gen)
    expected = 0.5 * math.log(1 + 1 / sigma**2)
    assert mutual_information(q, z) == pytest.approx(expected, abs=0.03)


class FixedPosterior(nn.Module):
    """Encoder whose posterior means are the first `latent_dim` pixels times a per-dimension factor."""

    def __init__(self, factors: list[float], log_var: float = -2.0) -> None:
        super().__init__()
        self.factors, self.log_var = torch.tensor(factors), log_var
        self.latent_dim = len(factors)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.flatten(1)[:, : self.latent_dim] * self.factors
        return torch.cat([mean, torch.full_like(mean, self.log_var)], dim=1)


def test_diagnostics_count_active_units_and_split_the_kl_by_dimension():
    # dimension 0 varies (Var 4 x Var(pixel)), dimension 1 barely (factor 0.01), dimension 2 not at all
    encoder = FixedPosterior([2.0, 0.01, 0.0])
    module = VAEModule(encoder, MLPDecoder(latent_dim=3), NormalPrior(3), None, 3)
    x = torch.rand(500, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    values = Diagnostics(max_kl_dims=2).values(module, x)
    assert values["diagnostics/active_units"] == 1
    assert set(values) == {"diagnostics/active_units", "diagnostics/mutual_information", "diagnostics/kl/0",
                           "diagnostics/kl/1"}  # capped at 2 dimensions
    q = module.encode(x)
    expected = torch.distributions.kl_divergence(q, Normal(0.0, 1.0)).mean(0)
    assert values["diagnostics/kl/0"] == pytest.approx(float(expected[0]), rel=1e-5)
    assert values["diagnostics/kl/0"] > values["diagnostics/kl/1"]
    assert 0 < values["diagnostics/mutual_information"] <= math.log(500)
    state = torch.get_rng_state()
    again = Diagnostics(max_kl_dims=2).values(module, x)
    assert again == values and torch.equal(torch.get_rng_state(), state)  # seeded, global RNG untouched
    mog = VAEModule(FixedPosterior([2.0, 0.01, 0.0]), MLPDecoder(latent_dim=3), MixturePrior(3), None, 3)
    assert "diagnostics/kl/0" not in Diagnostics().values(mog, x)  # a Monte Carlo KL does not split


def test_diagnostics_of_diverged_weights_are_nan_not_a_crash():
    module = VAEModule(FixedPosterior([float("inf"), 1.0]), MLPDecoder(latent_dim=2), NormalPrior(2), None, 2)
    x = torch.rand(50, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    values = Diagnostics().values(module, x)
    assert math.isnan(values["diagnostics/active_units"]) and math.isnan(values["diagnostics/mutual_information"])


def free_bits_module(free_bits: float, prior=None) -> VAEModule:
    torch.manual_seed(0)
    prior = prior or NormalPrior(2)
    return VAEModule(MLPEncoder(latent_dim=2), MLPDecoder(latent_dim=2), prior, None, 2, free_bits=free_bits)


def kl_gradient(module: VAEModule, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch-mean KL per dimension and the gradient of the loss's KL term w.r.t. the encoder's output."""
    params = module.encoder(x).detach().requires_grad_()
    q = module.prior.posterior(params)
    terms = module.prior.kl_terms(q, module.prior.rsample_posterior(q))
    module.kl_for_loss(terms).backward()
    return terms.mean(0).detach(), params.grad


def test_free_bits_zero_the_kl_gradient_of_dimensions_below_the_threshold():
    x = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    plain, threshold = free_bits_module(0.0), None
    kl, grad_plain = kl_gradient(plain, x)
    threshold = float(kl.mean())  # between the two dimensions' KL for this batch
    assert kl.min() < threshold < kl.max()
    below, above = int(kl.argmin()), int(kl.argmax())
    _, grad_fb = kl_gradient(free_bits_module(threshold), x)
    columns = {d: [d, d + 2] for d in (0, 1)}  # mean and log-variance of dimension d
    assert torch.count_nonzero(grad_fb[:, columns[below]]) == 0
    torch.testing.assert_close(grad_fb[:, columns[above]], grad_plain[:, columns[above]])
    assert torch.count_nonzero(grad_plain[:, columns[below]]) > 0  # the comparison is not vacuous


def test_free_bits_with_a_monte_carlo_kl_floor_the_whole_vector():
    module = free_bits_module(1e6, MixturePrior(2))
    terms = torch.tensor([[3.0], [5.0]], requires_grad=True)
    loss_kl = module.kl_for_loss(terms)
    loss_kl.backward()
    assert float(loss_kl.detach()) == 2e6 and torch.count_nonzero(terms.grad) == 0


def test_invalid_free_bits_is_a_parameter_error():
    with pytest.raises(ParameterError, match="free_bits=-1"):
        free_bits_module(-1.0)


def test_free_bits_leave_the_validation_elbo_alone(compose_cfg, mnist_root, tmp_path):
    def validate(free_bits: float) -> dict[str, float]:
        cfg = compose_cfg(tiny_overrides(mnist_root, tmp_path) + [f"model.free_bits={free_bits}", "model.latent_dim=3"])
        torch.manual_seed(0)  # the same weights for both
        module = build(cfg.model, "model", prior=build(cfg.prior, "prior", latent_dim=cfg.model.latent_dim))
        trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
        return trainer.validate(module, datamodule=build(cfg.data, "data"), verbose=False)[0]

    with_fb, without = validate(0.5), validate(0.0)
    assert with_fb["val/elbo"] == without["val/elbo"] and with_fb["val/kl"] == without["val/kl"]
    assert with_fb["val/loss"] > without["val/loss"]  # the untrained posteriors' KL is below the floor


def test_a_short_run_logs_the_diagnostics(compose_cfg, mnist_root, tmp_path):
    cfg = compose_cfg(tiny_overrides(mnist_root, tmp_path) + [
        "trainer.max_epochs=2", "trainer.limit_train_batches=2", "test=false", "~callbacks.prior_grid",
        "model.latent_dim=3"])
    metrics_out = train(cfg)
    run = tmp_path / "run"
    for tag in ("diagnostics/active_units", "diagnostics/mutual_information", "diagnostics/kl/0",
                "diagnostics/kl/2"):
        assert len(scalars(run, tag)) == 2, tag  # once per validation epoch (not in the sanity check)
        assert math.isfinite(metrics_out[tag])


@pytest.mark.parametrize("model", ["mlp", "conv", "gated", "iwae"])
def test_every_model_takes_free_bits(compose_cfg, mnist_root, tmp_path, model):
    cfg = compose_cfg(tiny_overrides(mnist_root, tmp_path) + [f"model={model}", "model.free_bits=0.5"])
    assert build(cfg.model, "model", prior=build(cfg.prior, "prior", latent_dim=cfg.model.latent_dim)).free_bits == 0.5
