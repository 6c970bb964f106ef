import math

import pytest
import torch

from vae_lightning.core.errors import ParameterError
from vae_lightning.latent import BetaPrior, GaussianPrior, NormalPrior


def test_reparameterised_normal_has_posterior_moments():
    """z = mu + exp(logvar / 2) * eps: the study's bug (std = logvar) would fail this."""
    prior = NormalPrior(latent_dim=2)
    mean, log_var = torch.tensor([[0.5, -2.0]]), torch.tensor([[math.log(4.0), math.log(0.25)]])
    q = prior.posterior(torch.cat([mean, log_var], dim=1).expand(200_000, 4))
    torch.manual_seed(0)
    z = prior.rsample_posterior(q)
    torch.testing.assert_close(z.mean(0), mean[0], atol=0.02, rtol=0)
    torch.testing.assert_close(z.std(0), torch.tensor([2.0, 0.5]), atol=0.02, rtol=0)


def _monte_carlo_kl(prior, q, n=400_000):
    torch.manual_seed(1)
    z = q.sample((n,))
    return (q.log_prob(z) - prior.marginals().log_prob(z)).mean(0)


@pytest.mark.parametrize(
    "prior, params",
    [
        (NormalPrior(2), torch.tensor([[0.3, -1.0, 0.5, -0.7]])),
        (GaussianPrior(2, loc=1.0, scale=2.0), torch.tensor([[0.3, -1.0, 0.5, -0.7]])),
        (BetaPrior(2, alpha=4.0, beta=3.0), torch.tensor([[1.5, 0.2, 0.7, 2.0]])),
        (BetaPrior(2, alpha=1.1, beta=2.0), torch.tensor([[-0.5, 3.0, 0.1, 0.4]])),
    ],
    ids=["normal", "gaussian_1_2", "beta_4_3", "beta_1.1_2"],
)
def test_kl_matches_monte_carlo(prior, params):
    q = prior.posterior(params)
    analytic = prior.analytic_kl(q)[0]
    assert analytic.shape == (2,)
    torch.testing.assert_close(analytic, _monte_carlo_kl(prior, q)[0], atol=0.02, rtol=0.01)
    assert (analytic >= 0).all()


def test_kl_is_zero_when_posterior_equals_prior():
    prior = GaussianPrior(3, loc=1.0, scale=2.0)
    params = torch.cat([torch.ones(1, 3), torch.full((1, 3), 2 * math.log(2.0))], dim=1)
    torch.testing.assert_close(prior.analytic_kl(prior.posterior(params)), torch.zeros(1, 3), atol=1e-6, rtol=0)


def test_beta_posterior_is_bounded_and_inside_support():
    prior = BetaPrior(2, alpha=1.0, beta=1.0, min_concentration=0.01)
    params = torch.tensor([[-50.0, 50.0, -50.0, 1e6]])  # extreme encoder outputs
    q = prior.posterior(params)
    assert (q.concentration1 >= 0.01).all() and (q.concentration0 >= 0.01).all()
    assert (q.concentration0 <= prior.max_concentration).all()
    z = prior.rsample_posterior(q.expand((10_000, 2)))
    assert ((z > 0) & (z < 1)).all()
    samples = prior.sample(10_000)
    assert ((samples > 0) & (samples < 1)).all()


def test_beta_rsample_has_gradients():
    prior = BetaPrior(2, alpha=4.0, beta=3.0)
    params = torch.zeros(8, 4, requires_grad=True)
    z = prior.rsample_posterior(prior.posterior(params))
    z.sum().backward()
    assert params.grad is not None and params.grad.abs().sum() > 0


@pytest.mark.parametrize("prior", [NormalPrior(2), GaussianPrior(2, 1.0, 2.0), BetaPrior(2, 4.0, 3.0)])
def test_seeded_sampling_is_reproducible_and_leaves_global_rng_alone(prior):
    torch.manual_seed(5)
    state = torch.get_rng_state()
    a = prior.sample(64, generator=torch.Generator().manual_seed(7))
    b = prior.sample(64, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b) and a.shape == (64, 2)
    assert torch.equal(torch.get_rng_state(), state)


def test_sample_moments_match_distribution():
    z = GaussianPrior(2, loc=1.0, scale=2.0).sample(100_000, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(z.mean(0), torch.ones(2), atol=0.03, rtol=0)
    torch.testing.assert_close(z.std(0), torch.full((2,), 2.0), atol=0.03, rtol=0)
    z = BetaPrior(1, alpha=4.0, beta=3.0).sample(100_000, generator=torch.Generator().manual_seed(0))
    assert abs(z.mean().item() - 4 / 7) < 0.005


def test_names_and_labels():
    assert NormalPrior(2).name == "normal_0_1"
    assert GaussianPrior(2, 1.0, 2.0).name == "gaussian_1_2"
    assert BetaPrior(2, 1.1, 2.0).name == "beta_1.1_2"
    assert BetaPrior(2, 4.0, 3.0).label == "Beta(4, 3)"


@pytest.mark.parametrize(
    "build, key",
    [
        (lambda: BetaPrior(2, alpha=0.0), "alpha=0.0"),
        (lambda: BetaPrior(2, beta=-1.0), "beta=-1.0"),
        (lambda: GaussianPrior(2, scale=0.0), "scale=0.0"),
        (lambda: GaussianPrior(2, loc=float("nan")), "loc=nan"),
        (lambda: NormalPrior(0), "latent_dim=0"),
    ],
)
def test_invalid_parameters_raise_clear_error(build, key):
    with pytest.raises(ParameterError, match=key) as info:
        build()
    assert "must be" in str(info.value)
    assert str(info.value.under("prior")).startswith(f"prior.{key}")
