"""Unit tests of the metric functions (and of the Beta CDF they integrate with), against closed forms and
independent brute force."""

from __future__ import annotations

import math

import pytest
import torch
from helpers.models import binary_images, brute_force_log_px, tiny_decoder, tiny_vae
from torch import nn
from torch.distributions import Beta, ContinuousBernoulli

from vae_lightning.core.progress import no_track
from vae_lightning.core.rng import seeded
from vae_lightning.evaluation import likelihood
from vae_lightning.evaluation.diagnostics import active_units
from vae_lightning.evaluation.likelihood import (
    NEGLIGIBLE,
    by_region,
    dilate,
    exact_log_likelihood,
    iwae_log_likelihood,
    nll_exact,
    quadrature_grid,
    regions_that_matter,
)
from vae_lightning.evaluation.quality import (
    clarity,
    classes_covering,
    diversity,
    feature_statistics,
    frechet_distance,
    probability_entropy,
)
from vae_lightning.evaluation.results import quality_of
from vae_lightning.evaluation.settings import ExactSettings
from vae_lightning.latent import BetaPrior, GaussianPrior, NormalPrior
from vae_lightning.latent.factorised import beta_cdf, beta_icdf
from vae_lightning.model import likelihoods

F64 = torch.float64


@pytest.mark.parametrize(("a", "b", "cdf"), [
    (2.0, 2.0, lambda x: 3 * x**2 - 2 * x**3),
    (3.5, 1.0, lambda x: x**3.5),
    (1.0, 0.3, lambda x: 1 - (1 - x) ** 0.3),
    (1.0, 1.0, lambda x: x),
])
def test_beta_cdf_matches_closed_forms(a, b, cdf):
    x = torch.linspace(0, 1, 101, dtype=F64)
    assert torch.allclose(beta_cdf(x, a, b), cdf(x), atol=1e-12)


@pytest.mark.parametrize(("a", "b"), [(4.0, 3.0), (1.1, 2.0), (0.4, 0.6), (60.0, 40.0)])
def test_beta_cdf_matches_integrated_density_and_icdf_inverts_it(a, b):
    grid = torch.linspace(0, 1, 400_001, dtype=F64)[1:-1]
    density = Beta(torch.tensor(a, dtype=F64), torch.tensor(b, dtype=F64)).log_prob(grid).exp()
    integral = torch.cumulative_trapezoid(density, grid)
    points = torch.arange(20_000, len(grid) - 1, 40_000)
    # the trapezoid misses the (integrable) mass on [0, grid[0]]: compare increments
    assert torch.allclose(integral[points] - integral[points[0]],
                          beta_cdf(grid[points + 1], a, b) - beta_cdf(grid[points[0] + 1], a, b),
                          atol=1e-5)
    u = torch.linspace(0.001, 0.999, 57, dtype=F64)
    z = beta_icdf(u, torch.tensor(a, dtype=F64), torch.tensor(b, dtype=F64))
    assert torch.allclose(beta_cdf(z, a, b), u, atol=1e-12)
    assert (z.diff() > 0).all()


def test_beta_icdf_closed_form():
    u = torch.rand(100, dtype=F64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(beta_icdf(u, torch.tensor(2.5, dtype=F64), torch.tensor(1.0, dtype=F64)),
                          u ** (1 / 2.5), atol=1e-12)


@pytest.mark.parametrize("prior", [GaussianPrior(2, loc=1.0, scale=2.0), BetaPrior(2, alpha=0.5, beta=1.0)])
def test_prior_grid_cells_carry_their_prior_mass(prior):
    z, log_w = quadrature_grid(prior, 8, tail=1e-3)
    lo, hi = prior.quantile(torch.tensor([[1e-3], [1 - 1e-3]], dtype=F64))
    width = (hi - lo) / 8
    assert z.shape == (64, 2) and torch.allclose(log_w.exp().sum(), torch.tensor(1.0, dtype=F64))
    assert torch.allclose(z[:8, 1], lo[1] + width[1] * (torch.arange(8, dtype=F64) + 0.5))  # midpoints
    # an inner cell's weight is the product of the prior's mass over each side of the cell
    dist = prior.marginals()
    edges = torch.stack([z[9] - width / 2, z[9] + width / 2])
    if isinstance(prior, BetaPrior):  # Beta(0.5, 1): CDF z^0.5
        mass = edges[1] ** 0.5 - edges[0] ** 0.5
    else:
        mass = dist.cdf(edges.float()).double().diff(dim=0)[0]
    assert log_w[9].exp() == pytest.approx(float(mass.prod()), rel=1e-5)


def test_bernoulli_log_prob_pairs_is_minus_bce_for_every_pair():
    gen = torch.Generator().manual_seed(0)
    x, logits = torch.rand(5, 7, generator=gen), 3 * torch.randn(4, 7, generator=gen)
    expected = torch.stack([-nn.functional.binary_cross_entropy_with_logits(
        logits[g].expand(5, 7), x, reduction="none").sum(1) for g in range(4)], dim=1)
    assert torch.allclose(likelihoods.Bernoulli().log_prob_pairs(x, logits), expected, atol=1e-5)
    assert torch.allclose(likelihoods.Bernoulli().log_prob(logits[:, None], x), expected.T, atol=1e-5)



@pytest.mark.parametrize(("prior", "axes", "points"), [
    (NormalPrior(1), [torch.linspace(-9, 9, 200_001, dtype=F64)], 512),
    (BetaPrior(1, alpha=1.1, beta=2.0), [torch.linspace(0, 1, 200_001, dtype=F64)], 512),
    (GaussianPrior(2, loc=1.0, scale=2.0), [torch.linspace(-17, 19, 601, dtype=F64)] * 2, 128),
])
def test_exact_log_likelihood_matches_brute_force(prior, axes, points):
    decoder, x = tiny_decoder(prior.latent_dim), binary_images()
    expected = brute_force_log_px(decoder, prior, x, axes)
    with torch.no_grad():
        got, mass = exact_log_likelihood(tiny_vae(prior, decoder), x, points_per_dim=points, chunk_size=10_000)
    assert mass == pytest.approx(1.0, abs=1e-12)  # exact CDF masses: the weights sum to 1
    assert (got - expected).abs().max() < 1e-3, (got, expected)


def test_exact_log_likelihood_under_the_continuous_bernoulli_matches_brute_force():
    """Gray images under the continuous Bernoulli: the quadrature's pairwise likelihood is the normalised density."""
    prior, decoder = NormalPrior(1), tiny_decoder(1)
    x = torch.rand(6, 12, generator=torch.Generator().manual_seed(4), dtype=F64)
    expected = brute_force_log_px(decoder, prior, x, [torch.linspace(-9, 9, 200_001, dtype=F64)], ContinuousBernoulli)
    with torch.no_grad():
        got, _ = exact_log_likelihood(tiny_vae(prior, decoder, likelihood=likelihoods.ContinuousBernoulli()),
                                              x, points_per_dim=512, chunk_size=10_000)
    assert (got - expected).abs().max() < 1e-3, (got, expected)
    # and it is not the Bernoulli expression on the same gray pixels
    bernoulli, _ = exact_log_likelihood(tiny_vae(prior, decoder), x, points_per_dim=512, chunk_size=10_000)
    assert (bernoulli - expected).abs().min() > 1.0


def test_regions_tile_the_grid_and_keep_its_weights():
    prior = GaussianPrior(2, loc=1.0, scale=2.0)
    z, log_w = quadrature_grid(prior, 16, tail=1e-3)
    z_r, log_w_r = by_region(z, log_w, 4)
    assert z_r.shape == (16, 16, 2) and log_w_r.shape == (16, 16)
    assert torch.equal(torch.sort(log_w_r.reshape(-1)).values, torch.sort(log_w).values)
    # region r is cell r of the 4-point grid: its 4 x 4 cells lie inside that cell, around its midpoint
    coarse, _ = quadrature_grid(prior, 4, tail=1e-3)
    lo, hi = prior.quantile(torch.tensor([[1e-3], [1 - 1e-3]], dtype=F64))
    half_cell = (hi - lo) / 8
    assert torch.allclose(z_r.mean(dim=1), coarse)
    assert ((z_r - coarse[:, None]).abs() < half_cell).all()


def test_dilate_grows_a_mask_by_one_region_in_every_direction():
    mask = torch.zeros(2, 5, 5, dtype=torch.bool)
    mask[0, 2, 2] = mask[1, 0, 4] = True
    grown = dilate(mask)
    assert torch.equal(grown[0].nonzero(), torch.cartesian_prod(torch.arange(1, 4), torch.arange(1, 4)))
    assert torch.equal(grown[1].nonzero(), torch.tensor([[0, 3], [0, 4], [1, 3], [1, 4]]))


def test_regions_that_matter_are_those_above_the_negligible_share_and_their_neighbours():
    log_px = torch.full((1, 16), -1000.0)
    log_px[0, 5] = 0.0
    log_px[0, 15] = -NEGLIGIBLE + 1  # above e^-NEGLIGIBLE of p(x): it matters, with its neighbours
    log_px[0, 0] = -NEGLIGIBLE - 1  # below: it does not
    matters = regions_that_matter(log_px, 4, 2).reshape(4, 4)
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[0:3, 0:3] = True  # around region 5 = (1, 1)
    expected[2:4, 2:4] = True  # around region 15 = (3, 3)
    assert torch.equal(matters, expected)


def test_nll_exact_refining_only_what_matters_equals_the_full_finest_grid(monkeypatch):
    """A peaked 2-D model (300 pixels) and images drawn from it, each with its own bump: the refined grids
    integrate a part of the image-region pairs, and the result is the full grid's at the same points per
    dimension."""
    torch.manual_seed(3)
    decoder = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 300))
    with torch.no_grad():
        decoder[0].weight.mul_(3)
        decoder[2].weight.mul_(3)
    module = tiny_vae(NormalPrior(2), decoder, nn.Linear(300, 4))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        x = (torch.rand(40, 300, generator=gen) < torch.sigmoid(decoder(torch.randn(40, 2, generator=gen)))).float()
    shares = []
    integrate = likelihood.integrate_regions
    monkeypatch.setattr(likelihood, "integrate_regions", lambda module, x, z, log_w, active, *rest: (
        shares.append(float(active.float().mean())), integrate(module, x, z, log_w, active, *rest))[1])
    settings = ExactSettings(max_latent_dim=2, points_per_dim=8, max_points_per_dim=256, tolerance=1e-3,
                             chunk_size=512, tail=1e-9)
    with torch.no_grad():
        summary, nll = nll_exact(module, x, settings, no_track)
    monkeypatch.undo()
    with torch.no_grad():
        full, mass = exact_log_likelihood(module, x, summary["points_per_dim"], chunk_size=4096)
    assert summary["points_per_dim"] >= 64 and summary["prior_mass_on_grid"] == pytest.approx(mass)
    assert shares[:2] == [1.0, 1.0] and max(shares[2:]) < 0.6  # the first two grids in full, then a part
    assert (nll + full.double()).abs().max() < 1e-4
    assert summary["value"] == pytest.approx(float(-full.double().mean()), abs=1e-5)


def test_iwae_bounds_are_nested_deterministic_and_reach_the_exact_likelihood():
    prior, decoder, x = NormalPrior(1), tiny_decoder(1), binary_images()
    decoder = decoder.float()
    module = tiny_vae(prior, decoder, nn.Linear(12, 2))  # any q(z|x): the bound holds for every proposal
    with torch.no_grad():
        exact, _ = exact_log_likelihood(module, x.float(), points_per_dim=4096, chunk_size=4096)
        bounds = iwae_log_likelihood(module, x.float(), [1, 10, 100, 2000], chunk_size=300, seed=7)
        again = iwae_log_likelihood(module, x.float(), [2000, 100], chunk_size=300, seed=7)
    assert bounds.shape == (4, 6)
    assert torch.equal(again, bounds[2:])  # the same first k draws, whatever the other ks
    # a consistent estimator: with many samples it reaches log p(x) (from below, up to MC noise)
    assert (bounds[-1] - exact).abs().max() < 0.02, (bounds[-1], exact)
    assert (bounds[0] - exact).mean() < (bounds[-1] - exact).mean()


def test_seeded_draws_leave_the_global_rng_alone():
    state = torch.random.get_rng_state()
    with seeded(5, torch.device("cpu")):
        a = torch.rand(3)
    with seeded(5, torch.device("cpu")):
        b = torch.rand(3)
    assert torch.equal(a, b) and torch.equal(torch.random.get_rng_state(), state)


def test_active_units_counts_dimensions_whose_posterior_mean_varies():
    gen = torch.Generator().manual_seed(0)
    means = torch.stack([torch.randn(1000, generator=gen), 0.01 * torch.randn(1000, generator=gen),
                         torch.full((1000,), 3.0)], dim=1)
    count, variance = active_units(means, 0.01)
    assert count == 1 and variance[0] == pytest.approx(1, abs=0.1) and variance[2] == 0


def test_frechet_distance_closed_form_for_diagonal_covariances():
    gen = torch.Generator().manual_seed(0)
    m_a, m_b = torch.randn(5, generator=gen, dtype=F64), torch.randn(5, generator=gen, dtype=F64)
    s_a, s_b = torch.rand(5, generator=gen, dtype=F64) + 0.1, torch.rand(5, generator=gen, dtype=F64) + 0.1
    expected = ((m_a - m_b) ** 2).sum() + ((s_a - s_b) ** 2).sum()
    got = frechet_distance(m_a, torch.diag(s_a**2), m_b, torch.diag(s_b**2))
    assert got == pytest.approx(float(expected), rel=1e-9)


def test_frechet_distance_of_a_set_with_itself_is_zero_and_symmetric():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(2000, 16, generator=gen) @ torch.randn(16, 16, generator=gen)
    b = torch.randn(2000, 16, generator=gen) + 0.5
    stats_a, stats_b = feature_statistics(a), feature_statistics(b)
    assert frechet_distance(*stats_a, *stats_a) == pytest.approx(0, abs=1e-6)
    assert frechet_distance(*stats_a, *stats_b) == pytest.approx(frechet_distance(*stats_b, *stats_a))


def test_clarity_diversity_and_class_coverage():
    one_class = torch.nn.functional.one_hot(torch.full((50,), 3), 10).double()
    assert clarity(one_class) == 1 and diversity(one_class.argmax(1)) == pytest.approx(0, abs=1e-12)
    assert probability_entropy(one_class) == pytest.approx(0, abs=1e-12)
    assert classes_covering(one_class.argmax(1), 10) == 1
    every_class = torch.nn.functional.one_hot(torch.arange(50) % 10, 10).double()  # each class 5 times
    assert diversity(every_class.argmax(1)) == pytest.approx(math.log(10))
    # blurry samples of one class: probabilities nearly uniform, the top one always class 3. The entropy of the
    # mean probabilities calls that diverse; the histogram of predicted classes does not
    blurry = torch.full((50, 10), 0.099).index_fill(1, torch.tensor([3]), 0.109)
    assert blurry.argmax(1).eq(3).all() and clarity(blurry) == pytest.approx(0.109)
    assert diversity(blurry.argmax(1)) == pytest.approx(0, abs=1e-12)
    assert probability_entropy(blurry) > 0.99 * math.log(10)
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 15 + [3] * 5)
    assert classes_covering(labels, 10, 0.9) == 3 and classes_covering(labels, 10, 0.8) == 2
    shares = torch.tensor([0.5, 0.3, 0.15, 0.05])
    assert diversity(labels) == pytest.approx(float(-(shares * shares.log()).sum()))


def test_an_evaluation_written_before_the_class_histogram_diversity_reads_in_todays_terms():
    old = {"name": "normal_0_1", "diversity": 2.1, "class_frequencies": [0.5, 0.5] + [0.0] * 8}
    row = quality_of(old)
    assert row["probability_entropy"] == 2.1 and row["diversity"] == pytest.approx(math.log(2))
    new = {**row, "diversity": 0.3}
    assert quality_of(new) == new
