"""Samplers: latent distributions that a trained decoder is fed side by side (the study's experiment).

A sampler keeps the latent-distribution contract (priors/base.py). Most are priors built from a
config entry without `latent_dim` (the model's is passed in). Two are fitted to a trained model
(`needs_fit`: call `fit(module, images)` with the training images before drawing):

- `AggregatePosterior`: q(z) = (1/N) sum_n q(z | x_n) over the training images, drawn exactly (an
  image at random, then z ~ q(z | x)); its density is that average, computed in chunks;
- `PosteriorGMM`: a Gaussian mixture with full covariances fitted to the training posterior means
  with scikit-learn's `GaussianMixture` (the post-hoc sampler of Ghosh et al. 2020, offered by pythae).

Fixed noise (`fixed_noise`): for samplers with quantiles, one seeded draw of uniforms pushed through
each quantile function, so the same grid cell is the same quantile under every sampler; for the
others, `sample` with a generator of the same seed. Either way the draws are the same at every epoch
and in every run with that seed, and drawing never touches the global RNG.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from sklearn.mixture import GaussianMixture
from torch import Tensor
from torch.distributions import Distribution, MultivariateNormal

from vae_lightning.errors import UserError, build, require
from vae_lightning.priors import LatentDistribution, has_quantiles, seeded
from vae_lightning.priors.base import generator_seed
from vae_lightning.priors.mixture import pick_components

if TYPE_CHECKING:
    from vae_lightning.module import VAEModule

# Uniforms are kept this far from 0 and 1, where Gaussian quantiles are infinite.
_U_MARGIN = 1e-6
# Draws that estimate a box or a region of a sampler without quantiles.
_REGION_DRAWS = 20_000


def _parameters(dist: Distribution) -> dict[str, Tensor]:
    return {key: getattr(dist, key) for key in dist.arg_constraints}


def same_distribution(a: LatentDistribution, b: LatentDistribution) -> bool:
    """Whether two samplers draw from the same distribution.

    For distributions with independent marginals: the same torch family and parameters (names differ
    for equal distributions: NormalPrior is `normal_0_1`, GaussianPrior(0, 1) `gaussian_0_1`; a Beta
    prior's posterior settings do not change its p(z)). Any other distribution (a learned or fitted
    one) is only the same as itself.
    """
    if a is b:
        return True
    marginals_a, marginals_b = getattr(a, "marginals", None), getattr(b, "marginals", None)
    if marginals_a is None or marginals_b is None or a.latent_dim != b.latent_dim:
        return False
    da, db = marginals_a(), marginals_b()
    if type(da) is not type(db):
        return False
    pa, pb = _parameters(da), _parameters(db)
    return all(torch.equal(pa[k].cpu(), pb[k].cpu()) for k in pa)


def build_samplers(configs: Mapping[str, Any], latent_dim: int,
                   prior: LatentDistribution | None = None) -> list[LatentDistribution]:
    """The samplers of `configs` (key -> config entry) for `latent_dim`, in order, followed by
    `prior` unless one of them already is its distribution. Names must be unique (they are tags)."""
    samplers = [build(node, f"samplers.{key}", latent_dim=latent_dim) for key, node in configs.items()]
    if prior is not None and not any(same_distribution(s, prior) for s in samplers):
        samplers.append(prior)
    names = [s.name for s in samplers]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UserError(f"samplers: {', '.join(duplicates)} appear more than once ({', '.join(configs)}); "
                        "remove the repeated entries")
    return samplers


def needs_fit(sampler: LatentDistribution) -> bool:
    """Whether the sampler is fitted to a trained model (`fit(module, images)`) before it can draw."""
    return callable(getattr(sampler, "fit", None))


def fixed_uniforms(n: int, latent_dim: int, seed: int) -> Tensor:
    """n x latent_dim uniforms in (0, 1) from their own generator seeded with `seed` (CPU, float32)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, latent_dim, generator=generator).clamp_(_U_MARGIN, 1 - _U_MARGIN)


def fixed_noise(sampler: LatentDistribution, n: int, seed: int) -> Tensor:
    """n latents of `sampler` that are the same for the same seed (see the module's docstring)."""
    if has_quantiles(sampler):
        return sampler.icdf(fixed_uniforms(n, sampler.latent_dim, seed))
    return sampler.sample(n, torch.Generator().manual_seed(seed))


def grid_quantiles(size: int) -> Tensor:
    """The centres (i + 1/2) / size of `size` equal-probability bins: a grid over a distribution's
    mass, each cell standing for 1/size of it per dimension."""
    return (torch.arange(size, dtype=torch.float32) + 0.5) / size


def central_box(sampler: LatentDistribution, mass: float, seed: int = 0) -> Tensor:
    """[2, latent_dim] lower and upper corners of the box between the (1 -+ mass^(1/d)) / 2 quantiles of
    every dimension. For independent dimensions (the `Quantiles` capability) it holds exactly `mass`;
    otherwise the marginal quantiles are estimated from 20,000 seeded draws, and with dependent
    dimensions the box can hold more or less than `mass` (`box_mass` says how much)."""
    per_dim = mass ** (1 / sampler.latent_dim)
    u = torch.tensor([(1 - per_dim) / 2, (1 + per_dim) / 2])
    if has_quantiles(sampler):
        return sampler.icdf(u.unsqueeze(1).expand(2, sampler.latent_dim))
    z = sampler.sample(_REGION_DRAWS, torch.Generator().manual_seed(seed)).float().cpu()
    return torch.quantile(z, u, dim=0)


def box_mass(sampler: LatentDistribution, box: Tensor, seed: int = 0) -> float:
    """The share of 20,000 seeded draws of `sampler` inside `box` [2, latent_dim]."""
    z = sampler.sample(_REGION_DRAWS, torch.Generator().manual_seed(seed)).cpu()
    return float(((z >= box[0].cpu()) & (z <= box[1].cpu())).all(dim=1).double().mean())


@torch.no_grad()
def encode_all(module: VAEModule, images: Tensor, batch_size: int = 1000) -> Tensor:
    """Encoder outputs [N, 2 * latent_dim] of uint8 (or [0, 1] float) images [N, (1,) 28, 28], in batches
    on the module's device, kept there."""
    device = next(module.parameters()).device
    outputs = []
    for chunk in images.split(batch_size):
        x = chunk.to(device)
        x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
        outputs.append(module.encoder(x.view(-1, 1, 28, 28)))
    return torch.cat(outputs)


class _FittedSampler(LatentDistribution):
    """What the fitted samplers share: the fitted model's posterior family and support."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__(latent_dim)
        self.__dict__["_prior"] = None  # the fitted model's prior (not a submodule: not this sampler's state)

    def _fitted_prior(self) -> LatentDistribution:
        if self.__dict__["_prior"] is None:
            raise RuntimeError(f"{type(self).__name__} draws only after fit(module, training images)")
        return self.__dict__["_prior"]

    def _fit_model(self, module: VAEModule) -> None:
        require(module.latent_dim == self.latent_dim, "latent_dim", self.latent_dim,
                f"the model's latent size ({module.latent_dim})")
        self.__dict__["_prior"] = module.prior

    def posterior(self, params: Tensor) -> Distribution:
        return self._fitted_prior().posterior(params)

    def clamp_to_support(self, z: Tensor) -> Tensor:
        return self._fitted_prior().clamp_to_support(z)


class AggregatePosterior(_FittedSampler):
    """The aggregate posterior q(z) = (1/N) sum_n q(z | x_n) of the training images (at most `max_images`,
    the first ones). Drawn exactly: an image index from the generator, then z ~ q(z | x) under the global
    RNG reseeded from the generator (torch's Beta sampler takes no generator)."""

    def __init__(self, latent_dim: int, max_images: int | None = None, chunk_size: int = 1024) -> None:
        super().__init__(latent_dim)
        require(max_images is None or (isinstance(max_images, int) and max_images >= 1), "max_images", max_images,
                "null (all training images) or an integer >= 1")
        require(isinstance(chunk_size, int) and chunk_size >= 1, "chunk_size", chunk_size, "an integer >= 1")
        self.max_images, self.chunk_size = max_images, chunk_size
        self.register_buffer("params", torch.empty(0, 2 * latent_dim), persistent=False)

    @property
    def name(self) -> str:
        return "aggregate_posterior"

    @property
    def label(self) -> str:
        return "aggregate q(z)"

    def fit(self, module: VAEModule, images: Tensor) -> AggregatePosterior:
        self._fit_model(module)
        self.params = encode_all(module, images[: self.max_images])
        return self

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        if generator is None:  # from the global RNG, like torch's samplers
            generator = torch.Generator().manual_seed(int(torch.randint(2**62, (1,))))
        index = torch.randint(len(self.params), (n,), generator=generator).to(self.params.device)
        with seeded(generator_seed(generator), self.params.device):
            return self.clamp_to_support(self.posterior(self.params[index]).sample())

    def log_prob(self, z: Tensor) -> Tensor:
        """log (1/N) sum_n q(z | x_n), as a running log-sum-exp over chunks of `chunk_size` images."""
        total = torch.full(z.shape[:-1], -math.inf, device=z.device)
        for chunk in self.params.split(self.chunk_size):
            q = self.posterior(chunk)  # batch [C, D]
            log_q = q.log_prob(z.unsqueeze(-2)).sum(-1)  # [..., C]
            total = torch.logaddexp(total, torch.logsumexp(log_q, dim=-1))
        return total - math.log(len(self.params))


class PosteriorGMM(_FittedSampler):
    """A mixture of `n_components` full-covariance Gaussians fitted by EM (scikit-learn) to the posterior
    means of the training images (at most `max_images`), with `seed` for its k-means initialisation."""

    def __init__(self, latent_dim: int, n_components: int = 10, max_images: int | None = None,
                 seed: int = 0) -> None:
        super().__init__(latent_dim)
        require(isinstance(n_components, int) and n_components >= 1, "n_components", n_components,
                "an integer >= 1")
        require(max_images is None or (isinstance(max_images, int) and max_images >= 1), "max_images", max_images,
                "null (all training images) or an integer >= 1")
        self.n_components, self.max_images, self.seed = n_components, max_images, seed
        self.register_buffer("weights", torch.empty(0), persistent=False)
        self.register_buffer("means", torch.empty(0, latent_dim), persistent=False)
        self.register_buffer("scale_tril", torch.empty(0, latent_dim, latent_dim), persistent=False)

    @property
    def name(self) -> str:
        return f"gmm_{self.n_components}"

    @property
    def label(self) -> str:
        return f"GMM({self.n_components}) on q means"

    def fit(self, module: VAEModule, images: Tensor) -> PosteriorGMM:
        self._fit_model(module)
        means = self.posterior(encode_all(module, images[: self.max_images])).mean
        require(len(means) >= self.n_components, "n_components", self.n_components,
                f"at most the number of fitted images ({len(means)})")
        gmm = GaussianMixture(self.n_components, covariance_type="full", random_state=self.seed)
        gmm.fit(means.double().cpu().numpy())
        device = means.device
        self.weights = torch.as_tensor(gmm.weights_, dtype=torch.float32, device=device)
        self.means = torch.as_tensor(gmm.means_, dtype=torch.float32, device=device)
        self.scale_tril = torch.linalg.cholesky(torch.as_tensor(gmm.covariances_, device=device)).float()
        return self

    def _components(self) -> MultivariateNormal:
        if len(self.weights) == 0:
            raise RuntimeError("PosteriorGMM draws only after fit(module, training images)")
        return MultivariateNormal(self.means, scale_tril=self.scale_tril)

    def log_prob(self, z: Tensor) -> Tensor:
        log_components = self._components().log_prob(z.unsqueeze(-2))  # [..., K]
        return torch.logsumexp(log_components + self.weights.log(), dim=-1)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """A component by inverse-CDF of a uniform, then mean + L·ε, all noise from `generator` (CPU)."""
        self._components()
        k = pick_components(self.weights, n, generator)
        eps = torch.randn(n, self.latent_dim, 1, generator=generator).to(self.means)
        return self.clamp_to_support(self.means[k] + (self.scale_tril[k] @ eps).squeeze(-1))
