"""Samplers, quantiles and the drawing helpers, without training."""

from __future__ import annotations

import math

import pytest
import torch
from helpers.commands import compose_plain
from omegaconf import OmegaConf

from vae_lightning.core.building import build
from vae_lightning.core.errors import ParameterError, UserError
from vae_lightning.core.paths import CONF_DIR
from vae_lightning.latent import BetaPrior, GaussianPrior, NormalPrior
from vae_lightning.latent.base import LatentDistribution
from vae_lightning.latent.factorised import beta_cdf, beta_icdf
from vae_lightning.latent.geometry import central_box, fixed_uniforms, grid_quantiles
from vae_lightning.latent.sampler_sets import build_samplers, same_distribution
from vae_lightning.pictures import panel_figure, reconstruction_grid

U = torch.tensor([0.001, 0.05, 0.3, 0.5, 0.77, 0.95, 0.999], dtype=torch.float64)


def test_beta_cdf_matches_closed_forms_and_exact_values():
    x = U
    assert torch.allclose(beta_cdf(x, 1.0, 1.0), x)
    assert torch.allclose(beta_cdf(x, 3.0, 1.0), x**3)
    assert torch.allclose(beta_cdf(x, 1.0, 2.5), 1 - (1 - x) ** 2.5)
    assert torch.allclose(beta_cdf(x, 0.5, 0.5), 2 / math.pi * torch.asin(x.sqrt()))  # arcsine law, a < 1
    # I_{1/2}(4, 3) = P(Binomial(6, 1/2) >= 4) = 22/64
    assert float(beta_cdf(torch.tensor(0.5), 4.0, 3.0)) == pytest.approx(22 / 64, abs=1e-14)


@pytest.mark.parametrize("a, b", [(1.1, 2.0), (4.0, 3.0), (30.0, 0.7)])
def test_beta_cdf_matches_the_integrated_density(a, b):
    """Against an independent method: the trapezoid rule on torch's Beta density."""
    xs = torch.linspace(0, 1, 400_001, dtype=torch.float64)[1:-1]
    density = torch.distributions.Beta(torch.tensor(a, dtype=torch.float64),
                                       torch.tensor(b, dtype=torch.float64)).log_prob(xs).exp()
    integral = torch.cumulative_trapezoid(density, xs)
    for q in (0.2, 0.5, 0.8):
        i = int(q * 400_000) - 1
        assert float(beta_cdf(xs[i], a, b)) == pytest.approx(float(integral[i - 1]), abs=2e-4)


@pytest.mark.parametrize("a, b", [(1.0, 1.0), (1.1, 1.1), (1.1, 2.0), (4.0, 3.0), (0.5, 0.5), (100.0, 3.0)])
def test_beta_icdf_inverts_the_cdf(a, b):
    x = beta_icdf(U, a, b)
    assert torch.all((x > 0) & (x < 1)) and torch.all(x[1:] > x[:-1])
    assert torch.allclose(beta_cdf(x, a, b), U, atol=1e-12)


def test_beta_icdf_known_quantiles():
    assert torch.allclose(beta_icdf(U, 2.0, 1.0), U.sqrt())
    assert torch.allclose(beta_icdf(U, 1.0, 3.0), 1 - (1 - U) ** (1 / 3))
    assert float(beta_icdf(torch.tensor(0.5), 2.0, 2.0)) == pytest.approx(0.5, abs=1e-12)
    u32 = torch.rand(5, 2)
    assert beta_icdf(u32, 4.0, 3.0).dtype == torch.float32


def test_prior_quantiles():
    gaussian = GaussianPrior(2, loc=1.0, scale=2.0)
    z = gaussian.icdf(torch.tensor([[0.5, 0.8413447460685429]]))
    assert torch.allclose(z, torch.tensor([[1.0, 3.0]]), atol=1e-5)
    beta = BetaPrior(2, alpha=4.0, beta=3.0)
    z = beta.icdf(torch.tensor([[1e-9, 0.5]]))
    assert z[0, 0] >= BetaPrior.eps and float(beta_cdf(z[0, 1].double(), 4.0, 3.0)) == pytest.approx(0.5, abs=1e-6)


def test_same_distribution_compares_family_and_parameters_not_names():
    assert same_distribution(NormalPrior(2), GaussianPrior(2, 0.0, 1.0))
    assert not same_distribution(NormalPrior(2), GaussianPrior(2, 1.0, 2.0))
    assert same_distribution(BetaPrior(2, 4, 3), BetaPrior(2, 4, 3, min_concentration=0.5))
    assert not same_distribution(BetaPrior(2, 4, 3), BetaPrior(2, 3, 4))
    assert not same_distribution(BetaPrior(2, 1, 1), GaussianPrior(2, 0.5, 1.0))
    assert not same_distribution(NormalPrior(2), NormalPrior(3))


STUDY = compose_plain("train").samplers
PRIORS = sorted(p.stem for p in (CONF_DIR / "prior").glob("*.yaml"))
FITTED = sorted(p.stem for p in (CONF_DIR / "fitted").glob("*.yaml"))


@pytest.mark.parametrize("name", PRIORS)
def test_each_distribution_of_the_prior_group_is_a_prior_and_a_sampler_from_one_yaml(name):
    """conf/prior/<name>.yaml, without latent_dim, builds as training's prior and as sample's sampler."""
    prior = compose_plain("train", f"prior={name}").prior
    assert "latent_dim" not in prior
    assert compose_plain("sample", f"prior={name}").prior == prior  # the same YAML, the same spelling
    built = build(prior, "prior", latent_dim=3)
    (sampler,) = build_samplers({name: prior}, 3)
    assert isinstance(built, LatentDistribution) and type(sampler) is type(built)
    assert built.latent_dim == sampler.latent_dim == 3
    assert built.name == sampler.name


@pytest.mark.parametrize("name", FITTED)
def test_each_fitted_distribution_is_a_sampler_and_not_a_prior(name):
    fitted = compose_plain("sample", f"fitted={name}").fitted
    (sampler,) = build_samplers({name: fitted}, 3)
    assert sampler.latent_dim == 3
    assert type(sampler).fit is not LatentDistribution.fit  # fitted to a trained model first


def test_sampler_sets_name_the_group_distributions_instead_of_repeating_them():
    """Every entry of every set is a config of conf/prior/ or conf/fitted/ as it is there: one place each."""
    group_configs = [compose_plain("train", f"prior={n}").prior for n in PRIORS]
    group_configs += [compose_plain("sample", f"fitted={n}").fitted for n in FITTED]
    sets = {p.stem: compose_plain("evaluate", f"sampler_set={p.stem}").samplers
            for p in (CONF_DIR / "sampler_set").glob("*.yaml")}
    assert sorted(sets) == ["study", "study_fitted", "study_fitted_quick"]
    assert all(entry in group_configs for entries in sets.values() for entry in entries.values())
    assert list(sets["study_fitted_quick"]) == [*STUDY, "aggregate_posterior", "gmm_10"]
    assert list(sets["study_fitted"]) == [*sets["study_fitted_quick"], "q_flow_nsf_4"]
    # evaluate's default is the quick set (the flow on q(z) is opt-in), training's pictures draw the study's
    assert compose_plain("evaluate").samplers == sets["study_fitted_quick"]
    assert STUDY == sets["study"]
    # a set's entry is set like any key, and one more is added from the group by name
    more = compose_plain("train", "samplers.beta_4_3.alpha=5", "+prior@samplers.beta_2_5=beta",
                         "samplers.beta_2_5.alpha=2", "samplers.beta_2_5.beta=5").samplers
    assert [s.name for s in build_samplers(more, 2)][-2:] == ["beta_5_3", "beta_2_5"]


def test_study_samplers_and_the_models_prior():
    names = [s.name for s in build_samplers(STUDY, 2, NormalPrior(2))]
    assert names == ["normal_0_1", "gaussian_1_2", "beta_1_1", "beta_1.1_1.1", "beta_1.1_2", "beta_4_3"]
    # the same distribution under another name is not added twice
    assert len(build_samplers(STUDY, 2, GaussianPrior(2, 0.0, 1.0))) == 6
    own = BetaPrior(2, 2, 5)
    samplers = build_samplers(STUDY, 2, own)
    assert samplers[-1] is own and len(samplers) == 7
    assert all(s.latent_dim == 2 for s in samplers)


def test_sampler_errors_name_the_key():
    bad = OmegaConf.create({"wide": {"_target_": "vae_lightning.latent.GaussianPrior", "scale": 0}})
    with pytest.raises(ParameterError, match=r"samplers\.wide\.scale=0 is invalid"):
        build_samplers(bad, 2)
    twice = OmegaConf.create({"a": {"_target_": "vae_lightning.latent.NormalPrior"},
                              "b": {"_target_": "vae_lightning.latent.NormalPrior"}})
    with pytest.raises(UserError, match="normal_0_1 appear more than once"):
        build_samplers(twice, 2)


def test_fixed_uniforms_are_reproducible_and_leave_the_global_rng_alone():
    state = torch.get_rng_state()
    u = fixed_uniforms(64, 2, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(u, fixed_uniforms(64, 2, seed=3)) and not torch.equal(u, fixed_uniforms(64, 2, seed=4))
    assert u.shape == (64, 2) and torch.all((u > 0) & (u < 1))


def test_grid_quantiles_and_central_box():
    assert torch.allclose(grid_quantiles(4), torch.tensor([0.125, 0.375, 0.625, 0.875]))
    box = central_box(NormalPrior(2), 0.9)
    per_dim = torch.distributions.Normal(0.0, 1.0).cdf(box[1]) - torch.distributions.Normal(0.0, 1.0).cdf(box[0])
    assert torch.allclose(per_dim.prod(), torch.tensor(0.9), atol=1e-5)
    beta_box = central_box(BetaPrior(2, 4, 3), 0.9)
    mass = (beta_cdf(beta_box[1].double(), 4.0, 3.0) - beta_cdf(beta_box[0].double(), 4.0, 3.0)).prod()
    assert float(mass) == pytest.approx(0.9, abs=1e-5)


def test_reconstruction_grid_puts_each_row_above_its_reconstructions():
    images, recons = torch.ones(8, 1, 28, 28), torch.zeros(8, 1, 28, 28)
    grid = reconstruction_grid(images, recons, nrow=4)  # 2 pairs of rows of 4
    assert grid.shape == (3, 4 * 30 + 2, 4 * 30 + 2)
    cell_rows = [float(grid[0, 2 + 30 * r: 30 + 30 * r, 2:30].mean()) for r in range(4)]
    assert cell_rows == [1.0, 0.0, 1.0, 0.0]


def test_panel_figure_pastes_grids_pixel_for_pixel():
    grid = torch.rand(3, 62, 62)
    image = panel_figure([("A", grid), ("B", grid), ("C", grid)], ncols=2)
    assert image.shape == (3, 2 * (62 + 24 + 12), 2 * (62 + 12) + 12)
    # the first panel sits below its 24-pixel title band, 12 pixels from the left, rounded as in a PNG
    assert torch.equal(image[:, 24:86, 12:74], grid.mul(255).add(0.5).floor().div(255))
    assert image.std() > 0
