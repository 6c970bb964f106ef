"""Samplers: latent distributions that a trained decoder is fed side by side (the study's experiment).

A sampler is a `priors.LatentDistribution` built from a config entry without `latent_dim` (the
model's is passed in). Fixed noise is one seeded draw of uniforms pushed through each sampler's
quantile function, so the same grid cell is the same quantile under every sampler and at every
epoch, and drawing it never touches the global RNG.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution

from vae_lightning.errors import UserError, build
from vae_lightning.priors import LatentDistribution

# Uniforms are kept this far from 0 and 1, where Gaussian quantiles are infinite.
_U_MARGIN = 1e-6


def _parameters(dist: Distribution) -> dict[str, Tensor]:
    return {key: getattr(dist, key) for key in dist.arg_constraints}


def same_distribution(a: LatentDistribution, b: LatentDistribution) -> bool:
    """Whether two samplers draw from the same distribution: same torch family and parameters.

    Names differ for equal distributions (NormalPrior is `normal_0_1`, GaussianPrior(0, 1)
    `gaussian_0_1`), and a Beta prior's posterior settings do not change its p(z).
    """
    da, db = a.distribution(), b.distribution()
    if type(da) is not type(db) or a.latent_dim != b.latent_dim:
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


def fixed_uniforms(n: int, latent_dim: int, seed: int) -> Tensor:
    """n x latent_dim uniforms in (0, 1) from their own generator seeded with `seed` (CPU, float32)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, latent_dim, generator=generator).clamp_(_U_MARGIN, 1 - _U_MARGIN)


def grid_quantiles(size: int) -> Tensor:
    """The centres (i + 1/2) / size of `size` equal-probability bins: a grid over a distribution's
    mass, each cell standing for 1/size of it per dimension."""
    return (torch.arange(size, dtype=torch.float32) + 0.5) / size


def central_box(sampler: LatentDistribution, mass: float) -> Tensor:
    """[2, latent_dim] lower and upper corners of the central box that holds `mass` of the sampler:
    per dimension the interval between the (1 -+ mass^(1/d)) / 2 quantiles (dimensions are
    independent, so the box's mass is the product)."""
    per_dim = mass ** (1 / sampler.latent_dim)
    u = torch.tensor([(1 - per_dim) / 2, (1 + per_dim) / 2]).unsqueeze(1).expand(2, sampler.latent_dim)
    return sampler.icdf(u)
