"""Where pictures put their latents: fixed noise, quantile grids and central boxes of any sampler.

Fixed noise (`fixed_noise`): for samplers with quantiles, one seeded draw of uniforms pushed through
each quantile function, so the same grid cell is the same quantile under every sampler; for the
others, `sample` with a generator of the same seed. Either way the draws are the same at every epoch
and in every run with that seed, and drawing never touches the global RNG. Without quantiles, boxes
and regions are estimated from seeded draws.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vae_lightning.latent.base import LatentDistribution, has_quantiles

# Uniforms are kept this far from 0 and 1, where Gaussian quantiles are infinite.
_U_MARGIN = 1e-6
# Draws that estimate a box or a region of a sampler without quantiles.
REGION_DRAWS = 20_000


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
    z = sampler.sample(REGION_DRAWS, torch.Generator().manual_seed(seed)).float().cpu()
    return torch.quantile(z, u, dim=0)


def box_mass(sampler: LatentDistribution, box: Tensor, seed: int = 0) -> float:
    """The share of 20,000 seeded draws of `sampler` inside `box` [2, latent_dim]."""
    z = sampler.sample(REGION_DRAWS, torch.Generator().manual_seed(seed)).cpu()
    return float(((z >= box[0].cpu()) & (z <= box[1].cpu())).all(dim=1).double().mean())
