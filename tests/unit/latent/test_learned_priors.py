"""The latent-distribution contract for learned priors (mixture of Gaussians, VampPrior) and the samplers
fitted to a trained model (aggregate posterior, GMM): densities against brute force, KL estimates against
closed forms, fixed noise, and exact likelihoods. Unit level: no training, no data files."""

from __future__ import annotations

import math

import pytest
import torch
from helpers.models import (
    PointEncoder,
    binary_images,
    brute_force_log_px,
    point_images,
    synthetic_mixture,
    tiny_decoder,
    tiny_vae,
)
from torch import nn
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from vae_lightning.core.errors import ParameterError
from vae_lightning.evaluation.likelihood import exact_log_likelihood, iwae_log_likelihood
from vae_lightning.latent import AggregatePosterior, MixturePrior, NormalPrior, PosteriorGMM, VampPrior, has_quantiles
from vae_lightning.latent.geometry import box_mass, central_box, fixed_noise
from vae_lightning.latent.sampler_sets import same_distribution
from vae_lightning.model import MLPDecoder, MLPEncoder, VAEModule

F64 = torch.float64


def trained_looking_mog(latent_dim: int = 2, k: int = 3) -> MixturePrior:
    """A mixture with unequal weights, means and scales (as after training)."""
    torch.manual_seed(0)
    prior = MixturePrior(latent_dim, n_components=k)
    with torch.no_grad():
        prior.means.copy_(torch.randn(k, latent_dim) * 2)
        prior.raw_scales.copy_(torch.randn(k, latent_dim) * 0.5)
        prior.logits.copy_(torch.randn(k))
    return prior


def vae(prior, latent_dim: int = 2) -> VAEModule:
    torch.manual_seed(1)
    return VAEModule(MLPEncoder(latent_dim=latent_dim), MLPDecoder(latent_dim=latent_dim), prior, None,
                     latent_dim).eval()


def test_mixture_density_matches_torch_mixture_and_integrates_to_one():
    prior = trained_looking_mog()
    log_w, means, scales = prior.components()
    reference = MixtureSameFamily(Categorical(logits=log_w), Independent(Normal(means, scales), 1))
    z = torch.randn(7, 5, 2) * 3
    torch.testing.assert_close(prior.log_prob(z), reference.log_prob(z), atol=1e-4, rtol=1e-5)
    # brute force: the density summed over a fine grid is 1
    axis = torch.linspace(-15, 15, 1201)
    grid = torch.cartesian_prod(axis, axis)
    cell = float(axis[1] - axis[0]) ** 2
    with torch.no_grad():
        assert float(prior.log_prob(grid).double().exp().sum() * cell) == pytest.approx(1.0, abs=1e-4)


def test_vampprior_density_is_the_average_posterior_density_at_the_pseudo_inputs():
    prior = VampPrior(2, n_pseudo_inputs=7, init_mean=0.3, init_std=0.2)
    module = vae(prior)
    z = torch.randn(11, 2)
    with torch.no_grad():
        q = module.encode(prior.pseudo_inputs.clamp(0, 1))  # the paper's hardtanh keeps them in [0, 1]
        by_hand = torch.stack([q.log_prob(zi.expand(7, 2)).sum(-1).exp().mean().log() for zi in z])
        torch.testing.assert_close(prior.log_prob(z), by_hand, atol=1e-4, rtol=1e-4)


def test_vampprior_uses_the_models_own_encoder_not_a_copy():
    prior = VampPrior(2, n_pseudo_inputs=5)
    module = vae(prior)
    keys = module.state_dict().keys()
    assert "prior.pseudo_inputs" in keys and not any(k.startswith("prior.") and "net" in k for k in keys)
    z = torch.randn(4, 2)
    with torch.no_grad():
        before = prior.log_prob(z)
        module.encoder.net[0].bias.add_(1.0)
        assert not torch.allclose(prior.log_prob(z), before)
    with pytest.raises(RuntimeError, match="encoder"):
        VampPrior(2).log_prob(z)


@pytest.mark.parametrize("latent_dim", [1, 3])
def test_monte_carlo_kl_agrees_with_the_analytic_kl_in_expectation(latent_dim):
    """A one-component mixture is a Gaussian: its single-sample KL log q(z|x) - log p(z) must average to the
    closed form KL(N(m, s²) || N(mu, sigma²)), and the standard normal's analytic KL is what `kl` returns."""
    torch.manual_seed(2)
    mog = MixturePrior(latent_dim, n_components=1)
    params = torch.cat([torch.randn(1, latent_dim), torch.randn(1, latent_dim) - 1], dim=1).expand(400_000, -1)
    q = mog.posterior(params)
    z = q.sample()
    with torch.no_grad():
        estimate = mog.kl(q, z).double()
        _, means, scales = mog.components()
    closed = torch.distributions.kl_divergence(q, Normal(means[0].detach(), scales[0].detach()))[0].sum()
    assert mog.analytic_kl(q) is None
    assert float(estimate.mean()) == pytest.approx(float(closed), abs=4 * float(estimate.std()) / 400_000 ** 0.5)
    normal = NormalPrior(latent_dim)
    torch.testing.assert_close(normal.kl(q, z)[:3], normal.analytic_kl(q)[:3].sum(-1))  # analytic, not the draw


def test_mixture_nll_exact_matches_brute_force():
    prior = trained_looking_mog(k=3)
    decoder, x = tiny_decoder(2).float(), binary_images().float()
    axes = [torch.linspace(-14, 14, 801, dtype=F64)] * 2
    with torch.no_grad():
        expected = brute_force_log_px(decoder.double(), prior, x.double(), axes)
        got, mass = exact_log_likelihood(tiny_vae(prior, decoder.float()), x, points_per_dim=256,
                                                 chunk_size=8192)
    assert mass == pytest.approx(1.0, abs=1e-4)  # density x area over the components' boxes
    assert (got.double() - expected).abs().max() < 2e-3, (got, expected)


def test_iwae_uses_the_density_of_the_whole_latent_vector():
    """For a mixture prior the IWAE bound reaches the exact likelihood (a per-dimension log_prob would not)."""
    prior = trained_looking_mog(k=3)
    decoder, x = tiny_decoder(2).float(), binary_images().float()
    module = tiny_vae(prior, decoder, nn.Linear(12, 4))
    with torch.no_grad():
        exact, _ = exact_log_likelihood(module, x, points_per_dim=256, chunk_size=8192)
        bound = iwae_log_likelihood(module, x, [5000], chunk_size=1000, seed=0)[0]
    assert (bound - exact).abs().max() < 0.05, (bound, exact)


@pytest.mark.parametrize("make", [lambda: trained_looking_mog(), lambda: VampPrior(2, n_pseudo_inputs=9)],
                         ids=["mog", "vamp"])
def test_learned_priors_draw_fixed_noise_without_touching_the_global_rng(make):
    prior = make()
    vae(prior)
    state = torch.get_rng_state()
    a, b = fixed_noise(prior, 16, seed=3), fixed_noise(prior, 16, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b) and not torch.equal(a, fixed_noise(prior, 16, seed=4))
    assert not has_quantiles(prior) and same_distribution(prior, prior)
    assert not same_distribution(prior, NormalPrior(2))


def test_mixture_sampling_matches_its_density():
    prior = trained_looking_mog()
    z = prior.sample(200_000, torch.Generator().manual_seed(0))
    log_w, means, scales = prior.components()
    weights = log_w.exp()
    with torch.no_grad():
        mean = weights @ means
        second = weights @ (scales.square() + means.square())
    torch.testing.assert_close(z.mean(0), mean, atol=0.03, rtol=0)
    torch.testing.assert_close(z.square().mean(0), second, atol=0.1, rtol=0.02)


def test_gmm_recovers_the_components_of_a_synthetic_mixture():
    points, means, covariances = synthetic_mixture(6000)
    module = VAEModule(PointEncoder(-20.0), MLPDecoder(latent_dim=2), NormalPrior(2), None, 2)
    gmm = PosteriorGMM(2, n_components=3).fit(module, point_images(points))
    order = [int(torch.cdist(m[None], gmm.means).argmin()) for m in means]
    torch.testing.assert_close(gmm.means[order], means, atol=0.1, rtol=0)
    torch.testing.assert_close(gmm.weights[order], torch.tensor([0.5, 0.3, 0.2]), atol=0.03, rtol=0)
    fitted_cov = gmm.scale_tril[order] @ gmm.scale_tril[order].transpose(1, 2)
    torch.testing.assert_close(fitted_cov, covariances, atol=0.12, rtol=0)
    draws = fixed_noise(gmm, 50_000, seed=0)
    assert torch.equal(draws, fixed_noise(gmm, 50_000, seed=0))
    torch.testing.assert_close(draws.mean(0), points.mean(0), atol=0.08, rtol=0)
    torch.testing.assert_close(gmm.log_prob(points[:5]).exp().sum() > 0, torch.tensor(True))


def test_aggregate_posterior_draws_match_the_encoded_posteriors_moments():
    points, _, _ = synthetic_mixture(2000)
    log_var = math.log(0.25)
    module = VAEModule(PointEncoder(log_var), MLPDecoder(latent_dim=2), NormalPrior(2), None, 2)
    aggregate = AggregatePosterior(2).fit(module, point_images(points))
    state = torch.get_rng_state()
    z = fixed_noise(aggregate, 200_000, seed=1)
    assert torch.equal(torch.get_rng_state(), state) and torch.equal(z, fixed_noise(aggregate, 200_000, seed=1))
    # mixture moments: mean of the means; covariance of the means plus the average posterior covariance
    expected_cov = torch.cov(points.T, correction=0) + 0.25 * torch.eye(2)
    torch.testing.assert_close(z.mean(0), points.mean(0), atol=0.03, rtol=0)
    torch.testing.assert_close(torch.cov(z.T), expected_cov, atol=0.06, rtol=0.02)
    # its density is the average of the posteriors' densities
    q = Normal(points, 0.5)
    by_hand = torch.logsumexp(q.log_prob(z[:3, None]).sum(-1), dim=1) - math.log(len(points))
    torch.testing.assert_close(aggregate.log_prob(z[:3]), by_hand, atol=1e-4, rtol=1e-4)


def test_boxes_without_quantiles_report_the_mass_they_hold():
    prior = trained_looking_mog()
    box = central_box(prior, 0.9)
    assert box.shape == (2, 2) and (box[0] < box[1]).all()
    mass = box_mass(prior, box)
    assert 0.7 < mass < 1.0
    assert box_mass(NormalPrior(2), central_box(NormalPrior(2), 0.9)) == pytest.approx(0.9, abs=0.01)


@pytest.mark.parametrize("build, key", [
    (lambda: MixturePrior(2, n_components=0), "n_components=0"),
    (lambda: MixturePrior(2, min_scale=0.0), "min_scale=0.0"),
    (lambda: VampPrior(2, n_pseudo_inputs=-1), "n_pseudo_inputs=-1"),
    (lambda: VampPrior(2, init_mean=2.0), "init_mean=2.0"),
    (lambda: PosteriorGMM(2, n_components=0), "n_components=0"),
    (lambda: AggregatePosterior(2, max_images=0), "max_images=0"),
])
def test_invalid_parameters_are_one_line_errors(build, key):
    with pytest.raises(ParameterError, match=key):
        build()


def test_names_and_labels():
    assert (MixturePrior(2).name, MixturePrior(2).label) == ("mog_10", "MoG(10)")
    assert (VampPrior(2).name, VampPrior(2).label) == ("vamp_500", "Vamp(500)")
    assert "aggregate" in AggregatePosterior(2).name and "gmm" in PosteriorGMM(2).name
