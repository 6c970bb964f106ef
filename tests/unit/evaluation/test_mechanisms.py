"""The mechanism measures against the papers' definitions on cases with known answers: ELBO surgery's identity and
its two ends (identical posteriors: no information; far-apart posteriors: log N), prior holes, improved precision
and recall and density and coverage on a hand-computed example, and the bound gaps' order on a model whose
likelihood is known by brute force."""

from __future__ import annotations

import math

import pytest
import torch
from helpers.models import binary_images, brute_force_log_px, tiny_decoder, tiny_vae
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal, kl_divergence

from vae_lightning.evaluation.mechanisms import (
    aggregate_log_density,
    elbo_surgery,
    optimal_elbo,
    precision_recall,
    prior_holes,
)
from vae_lightning.latent import BetaPrior, NormalPrior


def normal_params(means: torch.Tensor, log_var: float | torch.Tensor) -> torch.Tensor:
    return torch.cat([means, torch.as_tensor(log_var).expand_as(means)], dim=1).double()


def test_the_aggregate_density_is_the_mixture_of_the_posteriors():
    gen = torch.Generator().manual_seed(0)
    means, log_var = torch.randn(50, 2, generator=gen), torch.randn(50, 2, generator=gen) * 0.3
    params = torch.cat([means, log_var], dim=1).double()
    z = torch.randn(300, 2, generator=gen).double()
    mixture = MixtureSameFamily(Categorical(logits=torch.zeros(50, dtype=torch.float64)),
                                Independent(Normal(means.double(), (0.5 * log_var).exp().double()), 1))
    torch.testing.assert_close(aggregate_log_density(NormalPrior(2), params, z, chunk_size=7), mixture.log_prob(z))
    beta = BetaPrior(2, 2.0, 3.0)  # another family: Beta posteriors from the same encoder outputs
    u = torch.rand(300, 2, generator=gen).double() * 0.98 + 0.01
    q = beta.posterior(params)
    expected = torch.logsumexp(q.log_prob(u[:, None]).sum(-1), dim=1) - math.log(50)
    torch.testing.assert_close(aggregate_log_density(beta, params, u), expected)


def test_identical_posteriors_carry_no_information_and_the_marginal_kl_is_the_whole_kl():
    params = normal_params(torch.full((4000, 2), 0.7), -1.0)
    surgery = elbo_surgery(NormalPrior(2), params, seed=3)
    assert abs(surgery.mutual_information) < 1e-9
    assert surgery.kl == pytest.approx(surgery.mutual_information + surgery.marginal_kl, abs=1e-9)
    analytic = kl_divergence(Normal(torch.tensor(0.7), math.exp(-0.5)), Normal(0.0, 1.0)).item() * 2
    assert surgery.marginal_kl == pytest.approx(analytic, abs=0.05)  # one draw per image: Monte Carlo, 4000 draws


def test_far_apart_posteriors_carry_log_n_and_the_identity_holds_draw_by_draw():
    n = 64
    params = normal_params(torch.arange(n, dtype=torch.float64).unsqueeze(1).expand(n, 2) * 50, -2.0)
    surgery = elbo_surgery(NormalPrior(2), params, seed=1)
    assert surgery.mutual_information == pytest.approx(math.log(n), abs=1e-9) and surgery.log_n == math.log(n)
    assert surgery.kl == pytest.approx(surgery.mutual_information + surgery.marginal_kl, abs=1e-9)
    q = NormalPrior(2).posterior(params)
    analytic = kl_divergence(q, Normal(torch.zeros(2, dtype=torch.float64), 1.0)).sum(-1).mean().item()
    assert surgery.kl == pytest.approx(analytic, rel=0.02)  # the average KL term itself, against its closed form


def test_surgery_of_a_linear_gaussian_encoder_matches_the_closed_forms():
    """Posterior means mu_n ~ N(0, a^2 I) with posterior variance s^2 I and a N(0, I) prior: the aggregate posterior
    is N(0, (a^2 + s^2) I), so the marginal KL is D/2 (v - 1 - log v) with v = a^2 + s^2, and the index-code
    mutual information tends to the Gaussian channel's D/2 log(1 + a^2 / s^2) (Hoffman & Johnson 2016, eq. 2-4)
    for N much larger than exp(I)."""
    a, s, n, dim = 2.0, 0.5, 6000, 2
    means = torch.randn(n, dim, generator=torch.Generator().manual_seed(11), dtype=torch.float64) * a
    params = normal_params(means, math.log(s**2))
    surgery = elbo_surgery(NormalPrior(dim), params, seed=5)
    v = a**2 + s**2
    # the finite sample of means moves the two population values by a few hundredths (measured over seeds)
    assert surgery.marginal_kl == pytest.approx(dim / 2 * (v - 1 - math.log(v)), abs=0.1)  # 1.80 nats
    assert surgery.mutual_information == pytest.approx(dim / 2 * math.log(1 + a**2 / s**2), abs=0.05)  # 2.83
    exact_kl = kl_divergence(NormalPrior(dim).posterior(params), Normal(0.0, 1.0)).sum(-1).mean().item()
    assert surgery.kl == pytest.approx(exact_kl, rel=0.02)  # the average KL term: only the draws' Monte Carlo


def test_the_prior_has_no_holes_where_q_is_the_prior_and_nearly_all_mass_in_holes_far_from_it():
    prior = NormalPrior(2)
    same = prior_holes(prior, normal_params(torch.zeros(100, 2), 0.0), n_draws=2000)
    assert same.mass == 0.0 and not same.in_hole.any() and same.draws.shape == (2000, 2)
    far = prior_holes(prior, normal_params(torch.full((100, 2), 4.0), math.log(0.01)), n_draws=2000)
    assert far.mass > 0.99
    # codes only along z1 in [0.5, 3]: the holes are where torch's own mixture density is below a tenth of the prior's
    means = torch.stack([torch.linspace(0.5, 3, 400), torch.zeros(400)], 1)
    line = prior_holes(prior, normal_params(means, -4.0), n_draws=4000, seed=5)
    mixture = MixtureSameFamily(Categorical(logits=torch.zeros(400)), Independent(Normal(means, math.exp(-2)), 1))
    expected = mixture.log_prob(line.draws) < prior.log_prob(line.draws) + math.log(0.1)
    assert torch.equal(line.in_hole, expected) and line.mass == float(expected.double().mean())
    assert 0.5 < line.mass < 1.0


def test_precision_recall_density_and_coverage_on_a_hand_computed_example():
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    fake = torch.tensor([[0.5], [10.0]])
    # k = 1: every real ball has radius 1; the fake balls radius 9.5
    result = precision_recall(real, fake, k=1, k_density=1)
    assert result.precision == 0.5  # 0.5 lies in the balls of 0 and 1; 10 in none
    assert result.recall == 1.0  # every real point lies within 9.5 of 0.5
    assert result.density == 1.0  # (2 balls + 0 balls) / (k x 2 fakes)
    assert result.coverage == 0.5  # the balls of 0 and 1 hold a fake; those of 2 and 3 none
    same = precision_recall(real, real.clone(), k=1, k_density=1)
    assert (same.precision, same.recall, same.coverage) == (1.0, 1.0, 1.0)
    apart = precision_recall(real, real + 100, k=1, k_density=1)
    assert (apart.precision, apart.recall, apart.density, apart.coverage) == (0.0, 0.0, 0.0, 0.0)


@pytest.mark.parametrize("k", [3, 5])
def test_precision_recall_density_and_coverage_match_the_papers_reference_package(k):
    """prdc (Naeem et al.'s own package, which also computes Kynkäänniemi et al.'s precision and recall) on the same
    features gives the same four numbers."""
    prdc = pytest.importorskip("prdc", reason="prdc (the dev extra) is not installed")
    gen = torch.Generator().manual_seed(0)
    real, fake = torch.randn(500, 16, generator=gen), torch.randn(400, 16, generator=gen) * 1.3 + 0.3
    ours = precision_recall(real, fake, k=k, k_density=k)
    theirs = prdc.compute_prdc(real.numpy(), fake.numpy(), nearest_k=k)
    for name in ("precision", "recall", "density", "coverage"):
        assert getattr(ours, name) == pytest.approx(float(theirs[name]), abs=1e-12), name


def test_the_best_elbo_lies_between_the_encoders_and_the_exact_likelihood():
    torch.manual_seed(0)
    module = tiny_vae(NormalPrior(2), tiny_decoder(2))
    with torch.no_grad():
        module.encoder.weight.zero_()
        module.encoder.bias.copy_(torch.tensor([2.0, -2.0, -3.0, -3.0]))  # a poor, narrow posterior for every image
    x = binary_images(6)
    encoder, best = optimal_elbo(module, x, steps=150, n_draws=64, lr=0.05)
    axis = torch.linspace(-8, 8, 801, dtype=torch.float64)
    log_px = brute_force_log_px(module.decoder, module.prior, x, [axis, axis])
    assert (best >= encoder).all() and (best - encoder).mean() > 1.0  # an amortization gap, closed by the search
    assert (best <= log_px + 0.05).all()  # a lower bound of the exact likelihood (up to Monte Carlo error)
    assert ((log_px - best) < 0.5).all()  # and close to it: the Gaussian family fits this model's posteriors well
