"""Tiny models, a brute-force likelihood computed with torch.distributions alone, independent of the
code under test (the estimators reach a model only through its contracts)."""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Bernoulli, Distribution

from vae_lightning.model import Likelihood, VAEModule

F64 = torch.float64


def tiny_decoder(latent_dim: int, pixels: int = 12) -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(latent_dim, 8), nn.Tanh(), nn.Linear(8, pixels)).double()


def tiny_vae(prior, decoder: nn.Module, encoder: nn.Module | None = None,
             likelihood: Likelihood | None = None) -> VAEModule:
    """A model around small test networks on 12-pixel images (metrics reach it only through its contracts)."""
    encoder = encoder or nn.Linear(12, 2 * prior.latent_dim)
    return VAEModule(encoder.to(next(decoder.parameters()).dtype), decoder, prior, None, prior.latent_dim,
                     likelihood=likelihood)


def binary_images(n: int = 6, pixels: int = 12) -> torch.Tensor:
    return (torch.rand(n, pixels, generator=torch.Generator().manual_seed(1)) > 0.5).double()


def brute_force_log_px(decoder: nn.Module, prior, x: torch.Tensor, axes: list[torch.Tensor],
                       pixel: type[Distribution] = Bernoulli) -> torch.Tensor:
    """log p(x) by the trapezoid rule in z (not in quantile space) on a very fine grid, with
    torch.distributions doing the densities (`pixel(logits=...)` per pixel): independent of the code under test."""
    z = torch.cartesian_prod(*axes).reshape(-1, len(axes))
    log_joint = torch.cat([pixel(logits=decoder(chunk)).log_prob(x[:, None]).sum(-1)
                           + prior.log_prob(chunk.float()).double()
                           for chunk in z.split(200_000)], dim=1)
    trapezoid = [torch.full((len(a),), (a[1] - a[0]).item(), dtype=F64) for a in axes]
    for t in trapezoid:
        t[[0, -1]] /= 2
    log_cell = sum(torch.log(w) for w in torch.meshgrid(*trapezoid, indexing="ij")).reshape(-1)
    return torch.logsumexp(log_joint + log_cell, dim=1)


class PointEncoder(nn.Module):
    """Encoder whose posterior is N(first two pixels, exp(log_var)): fitted samplers see known posteriors."""

    def __init__(self, log_var: float) -> None:
        super().__init__()
        self.log_var = log_var
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.flatten(1)[:, :2]
        return torch.cat([mean, torch.full_like(mean, self.log_var)], dim=1)


def point_images(points: torch.Tensor) -> torch.Tensor:
    images = torch.zeros(len(points), 1, 28, 28)
    images.view(len(points), -1)[:, :2] = points
    return images


def synthetic_mixture(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    means = torch.tensor([[-4.0, 0.0], [3.0, 3.0], [2.0, -4.0]])
    chol = torch.tensor([[[1.0, 0.0], [0.5, 0.5]], [[0.3, 0.0], [0.0, 1.2]], [[0.8, 0.0], [-0.6, 0.4]]])
    k = torch.multinomial(torch.tensor([0.5, 0.3, 0.2]), n, replacement=True, generator=gen)
    points = means[k] + (chol[k] @ torch.randn(n, 2, 1, generator=gen)).squeeze(-1)
    return points, means, chol @ chol.transpose(1, 2)
