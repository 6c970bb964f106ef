"""The flow prior and the flow fitted to the aggregate posterior (latent/flow.py, latent/fitted.py): densities
against quadrature and the change-of-variables formula, draws against the density, fixed noise, the exact
likelihood of a briefly trained flow-prior model against brute force, recovery of a known 2-D mixture, the
flow's own optimizer group, bad settings. Unit level: no data files."""

from __future__ import annotations

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
from torch.distributions import MultivariateNormal, Normal

from vae_lightning.core.errors import ParameterError
from vae_lightning.evaluation.likelihood import elbo_terms, exact_log_likelihood, iwae_log_likelihood
from vae_lightning.latent import FlowPrior, MixturePrior, NormalPrior, PosteriorFlow, has_quantiles
from vae_lightning.latent.geometry import fixed_noise
from vae_lightning.latent.sampler_sets import same_distribution
from vae_lightning.model import MLPDecoder, MLPEncoder, VAEModule

F64 = torch.float64


@pytest.fixture(scope="module")
def flow_prior() -> FlowPrior:
    """A flow prior trained by maximum likelihood on a three-component mixture: far from its N(0, I)-like start."""
    torch.manual_seed(0)
    prior = FlowPrior(2)
    points = synthetic_mixture(4000)[0] / 2
    optimizer = torch.optim.Adam(prior.parameters(), lr=3e-3)
    for step in range(150):
        loss = -prior.log_prob(points[step % 15 * 256:][:256]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return prior.requires_grad_(False)


def midpoints(half_width: float, cells: int) -> tuple[torch.Tensor, float]:
    """The midpoints of a square grid of `cells`^2 equal cells over [-half_width, half_width]^2, and a cell's area."""
    edges = torch.linspace(-half_width, half_width, cells + 1, dtype=F64)
    axis = (edges[1:] + edges[:-1]) / 2
    return torch.cartesian_prod(axis, axis), float(edges[1] - edges[0]) ** 2


@pytest.fixture(scope="module")
def on_grid(flow_prior) -> tuple[torch.Tensor, torch.Tensor]:
    """The trained flow's mass in each cell of a fine grid over [-10, 10]^2 (density x area at the midpoint)."""
    z, area = midpoints(10, 800)
    return z, torch.cat([flow_prior.log_prob(chunk.float()) for chunk in z.split(1 << 16)]).double().exp() * area


def test_flow_density_integrates_to_one_and_is_zukos_change_of_variables(flow_prior, on_grid):
    assert float(on_grid[1].sum()) == pytest.approx(1.0, abs=1e-3)
    # the library's own density, and the change of variables written out: log N(f(z); 0, I) + log |det df/dz|
    points = torch.randn(20, 2, generator=torch.Generator().manual_seed(1)) * 2
    flow = flow_prior.flow()
    torch.testing.assert_close(flow_prior.log_prob(points), flow.log_prob(points))
    transform = flow.transform
    by_hand = torch.stack([Normal(0.0, 1.0).log_prob(transform(p)).sum()
                           + torch.linalg.slogdet(torch.autograd.functional.jacobian(transform, p))[1]
                           for p in points])
    torch.testing.assert_close(flow_prior.log_prob(points), by_hand, atol=1e-4, rtol=1e-4)
    assert not has_quantiles(flow_prior)


def test_flow_draws_have_its_density(flow_prior, on_grid):
    n = 200_000
    z = flow_prior.sample(n, torch.Generator().manual_seed(0)).double()
    points, weights = on_grid
    mean = weights @ points
    covariance = (weights[:, None] * (points - mean)).T @ (points - mean)
    torch.testing.assert_close(z.mean(0), mean, atol=0.01, rtol=0)
    torch.testing.assert_close(torch.cov(z.T), covariance, atol=0.03, rtol=0.02)
    # a 2-D histogram of the draws against the density's mass in the same 1 x 1 cells (grid cells never straddle
    # them): within 4.5 binomial standard errors in every cell
    edges = torch.arange(-4.0, 4.5, 1.0, dtype=F64)
    counts = torch.histogramdd(z, bins=[edges, edges]).hist / n
    inside = [((points[:, d:d + 1] >= edges[:-1]) & (points[:, d:d + 1] < edges[1:])).double() for d in (0, 1)]
    mass = torch.einsum("g,gi,gj->ij", weights, *inside)
    assert float(mass.sum()) > 0.99
    assert ((counts - mass).abs() <= 4.5 * (mass * (1 - mass) / n).sqrt() + 1e-4).all(), (counts - mass)


def test_fixed_noise_is_deterministic_and_leaves_the_global_rng_alone(flow_prior):
    state = torch.get_rng_state()
    a, b = fixed_noise(flow_prior, 64, seed=3), fixed_noise(flow_prior, 64, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b) and not torch.equal(a, fixed_noise(flow_prior, 64, seed=4))
    assert same_distribution(flow_prior, flow_prior) and not same_distribution(flow_prior, NormalPrior(2))


def test_flow_parameters_are_the_models_and_train_in_their_own_optimizer_group():
    torch.manual_seed(0)
    prior = FlowPrior(2, lr=3e-4)
    module = VAEModule(MLPEncoder(latent_dim=2), MLPDecoder(latent_dim=2), prior,
                       lambda params: torch.optim.Adam(params, lr=1e-3), 2)
    assert any(k.startswith("prior.flow.") for k in module.state_dict())
    groups = module.configure_optimizers().param_groups
    assert [g["lr"] for g in groups] == [1e-3, 3e-4]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in prior.parameters()}
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(list(module.parameters()))
    # a prior without its own learning rate keeps the one group of every parameter (old checkpoints' layout)
    mog = VAEModule(MLPEncoder(latent_dim=2), MLPDecoder(latent_dim=2), MixturePrior(2),
                    lambda params: torch.optim.Adam(params, lr=1e-3), 2)
    (group,) = mog.configure_optimizers().param_groups
    assert [id(p) for p in group["params"]] == [id(p) for p in mog.parameters()]


@pytest.fixture(scope="module")
def trained_flow_vae() -> VAEModule:
    """A tiny VAE on 12-pixel images with a flow prior, trained briefly on its negative ELBO (prior included)."""
    torch.manual_seed(4)
    module = tiny_vae(FlowPrior(2), tiny_decoder(2).float(), nn.Linear(12, 4))
    x = (torch.rand(64, 12, generator=torch.Generator().manual_seed(5)) > 0.5).float()
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-2)
    for _ in range(100):
        recon, kl = module.loss_terms(x)
        optimizer.zero_grad()
        (recon + kl).mean().backward()
        optimizer.step()
    return module.eval().requires_grad_(False)


def test_nll_exact_of_a_briefly_trained_flow_prior_model_matches_brute_force(trained_flow_vae):
    module, x = trained_flow_vae, binary_images().float()
    axes = [torch.linspace(-12, 12, 801, dtype=F64)] * 2
    expected = brute_force_log_px(module.decoder.double(), module.prior, x.double(), axes)
    module.decoder.float()
    got, mass = exact_log_likelihood(module, x, points_per_dim=256, chunk_size=8192)
    assert mass == pytest.approx(1.0, abs=1e-3)  # density x cell area over the sampled box
    assert (got.double() - expected).abs().max() < 2e-3, (got, expected)
    bound = iwae_log_likelihood(module, x, [2000], chunk_size=1000, seed=0)[0]
    assert (bound.double() <= got.double() + 0.1).all()  # IWAE >= exact - 0.1, as -log p(x)
    many = x.repeat(100, 1)  # the single-draw ELBO averaged over 100 draws per image
    assert -elbo_terms(module, many, batch_size=600, seed=0)["elbo"] >= -float(got.mean())


@pytest.mark.full  # fits two flows for 10 epochs each: tens of seconds
def test_flow_fitted_to_a_known_mixture_recovers_its_density():
    points, means, covariances = synthetic_mixture(8000)
    train, held_out = points[:6000], points[6000:]
    module = VAEModule(PointEncoder(-20.0), MLPDecoder(latent_dim=2), NormalPrior(2), None, 2)
    state = torch.get_rng_state()
    flow = PosteriorFlow(2, epochs=10, batch_size=256).fit(module, point_images(train))
    again = PosteriorFlow(2, epochs=10, batch_size=256).fit(module, lambda: point_images(train))
    assert torch.equal(torch.get_rng_state(), state)  # the fit draws from its own seed
    true = MultivariateNormal(means, covariances)
    with torch.no_grad():
        log_true = torch.logsumexp(true.log_prob(held_out[:, None]) + torch.tensor([0.5, 0.3, 0.2]).log(), -1)
        log_flow = flow.log_prob(held_out)
        torch.testing.assert_close(log_flow, again.log_prob(held_out), atol=0, rtol=0)  # a fit is reproducible
    kl = float(log_true.mean() - log_flow.mean())  # KL(true || flow) estimated on held-out draws
    assert 0 <= kl + 0.02 and kl < 0.15, kl
    draws = fixed_noise(flow, 50_000, seed=0)
    assert torch.equal(draws, fixed_noise(flow, 50_000, seed=0)) and torch.equal(torch.get_rng_state(), state)
    # draws in the data's units (standardisation undone): its mean and spread up to the fit's error
    torch.testing.assert_close(draws.mean(0), points.mean(0), atol=0.25, rtol=0)
    torch.testing.assert_close(draws.std(0), points.std(0), atol=0, rtol=0.05)
    with pytest.raises(RuntimeError, match="after fit"):
        PosteriorFlow(2).sample(3)


@pytest.mark.parametrize("build, key", [
    (lambda: FlowPrior(2, transforms=0), "transforms=0"),
    (lambda: FlowPrior(2, hidden_features=[]), r"hidden_features=\[\] is invalid: must be a non-empty list"),
    (lambda: FlowPrior(2, lr=-1e-3), "lr=-0.001"),
    (lambda: FlowPrior(2, flow="Glow"), "flow='Glow' is invalid: must be one of NSF, MAF, RealNVP"),
    (lambda: PosteriorFlow(2, epochs=0), "epochs=0"),
    (lambda: PosteriorFlow(2, batch_size=0), "batch_size=0"),
    (lambda: PosteriorFlow(2, lr=0), "lr=0"),
    (lambda: PosteriorFlow(2, hidden_features=[64, 0]), "hidden_features"),
])
def test_invalid_flow_settings_are_one_line_errors(build, key):
    with pytest.raises(ParameterError, match=key):
        build()


@pytest.mark.parametrize("flow", ["MAF", "RealNVP"])
def test_other_flow_types_are_densities_too(flow):
    torch.manual_seed(0)
    prior = FlowPrior(2, flow=flow, transforms=2)
    z, area = midpoints(12, 600)
    with torch.no_grad():
        assert float(prior.log_prob(z.float()).double().exp().sum() * area) == pytest.approx(1.0, abs=1e-3)
    assert (prior.name, prior.label) == (f"flow_{flow.lower()}_2", f"Flow({flow}, 2)")


def test_names_and_labels():
    assert (FlowPrior(2).name, FlowPrior(2).label) == ("flow_nsf_4", "Flow(NSF, 4)")
    assert (PosteriorFlow(2).name, PosteriorFlow(2).label) == ("q_flow_nsf_4", "Flow(NSF, 4) on q(z)")
