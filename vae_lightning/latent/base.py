"""The latent-distribution contract: what every prior and every sampler provides.

A latent distribution is an `nn.Module` over vectors of `latent_dim` numbers (its parameters and
buffers follow the model to any device and, for a learned prior, live in the model's state_dict).

Every latent distribution provides

- `log_prob(z)`: log p(z) of whole latent vectors, z [..., latent_dim] -> [...];
- `sample(n, generator)`: n draws [n, latent_dim]; with a `torch.Generator` the draws are a function
  of the generator's seed alone and the global RNG is left untouched (fixed noise for pictures);
- `posterior(params)`: its posterior family q(z|x) from the encoder's output [B, 2 * latent_dim], a
  `torch.distributions` object with batch shape [B, latent_dim] (independent dimensions);
- `kl_terms(q, z)`: KL(q || p) per image in groups [B, G] that sum to the KL: per dimension where it
  is analytic (`analytic_kl`, G = latent_dim), else one group, the single-sample estimate
  log q(z|x) - log p(z) at the training draw z (as in the VampPrior paper; G = 1): unbiased, so the
  ELBO it gives is the usual Monte Carlo ELBO. Free bits apply per group; `kl(q, z)` is their sum;
- `name` (tags, file names) and `label` (titles, HPARAMS).

It may provide

- independent dimensions with a quantile function (`Quantiles`: `icdf(u)` and `cdf(z)` per
  dimension, `analytic_kl(q)` per dimension; both take their input on any device and answer on
  the input's device, so a prior moved to the GPU with its model takes the CPU's uniforms and grid
  edges). Code that lays a grid over quantiles, matches fixed noise quantile by quantile or weights
  quadrature cells by exact CDF masses asks for this capability with `has_quantiles(d)`, and falls
  back to `sample`/`log_prob` without it;
- `attach(encoder)`: called by the model with its own encoder (the VampPrior needs it);
- `learning_rate`: a learned prior whose parameters train at their own rate sets it (the flow prior);
  the model's optimizer then puts them in a parameter group of their own (`VAEModule.configure_optimizers`).
  None (the default): they train in the one group of all the model's parameters.

Every latent distribution has `fit(module, images)`, a no-op by default: samplers fitted to a trained
model (latent/fitted.py) learn from it. Callers fit, then sample, without asking what they hold
(`latent.sampler_sets.fit_samplers` fits a list in one place). `images` is the training images (uint8
[N, 28, 28] or floats in [0, 1]) or a function that returns them, so that the data is read only when
a sampler needs it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from vae_lightning.core.checks import COUNT

# The training images a sampler is fitted to, or a function that reads them when first needed
Images = Tensor | Callable[[], Tensor]

# The Monte Carlo bounds of a distribution without quantiles use this many seeded draws.
BOUNDS_DRAWS = 1 << 16


def fmt(x: float) -> str:
    """Parameter value as used in names: 1.0 -> '1', 1.1 -> '1.1'."""
    return f"{x:g}"


class LatentDistribution(nn.Module):
    """Base class of priors and samplers; subclasses implement the contract of this module's docstring."""

    # The learning rate of the distribution's own optimizer parameter group; None: the model's one group
    learning_rate: float | None = None

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        COUNT.check("latent_dim", latent_dim)
        self.latent_dim = latent_dim

    @property
    def name(self) -> str:
        """Short identifier used in tags and file names, e.g. `beta_4_3`."""
        raise NotImplementedError

    @property
    def label(self) -> str:
        """Human-readable form for titles, e.g. `Beta(4, 3)`."""
        raise NotImplementedError

    def log_prob(self, z: Tensor) -> Tensor:
        """log p(z) of latent vectors z [..., latent_dim] -> [...]."""
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n draws [n, latent_dim] on the distribution's device, kept inside the support."""
        raise NotImplementedError

    def posterior(self, params: Tensor) -> Distribution:
        """q(z|x) from encoder output `params` [B, 2 * latent_dim], batch shape [B, latent_dim]."""
        raise NotImplementedError

    def rsample_posterior(self, q: Distribution) -> Tensor:
        """A reparameterised draw from q, kept inside the prior's support."""
        return self.clamp_to_support(q.rsample())

    def clamp_to_support(self, z: Tensor) -> Tensor:
        """Keep latents where the decoder was trained to expect them (identity by default)."""
        return z

    def analytic_kl(self, q: Distribution) -> Tensor | None:
        """KL(q || p) per latent dimension [B, latent_dim] where it has a closed form; None otherwise."""
        return None

    def kl_terms(self, q: Distribution, z: Tensor) -> Tensor:
        """KL(q || p) per image and group [B, G]: per dimension when analytic, else one Monte Carlo group
        log q(z|x) - log p(z) at the draw z."""
        analytic = self.analytic_kl(q)
        if analytic is not None:
            return analytic
        return (q.log_prob(z).sum(dim=-1) - self.log_prob(z)).unsqueeze(-1)

    def kl(self, q: Distribution, z: Tensor) -> Tensor:
        """KL(q || p) per image [B] (the sum of `kl_terms`)."""
        return self.kl_terms(q, z).sum(dim=-1)

    def attach(self, encoder: nn.Module) -> None:
        """Told the model's encoder when the model is built; most distributions do not need it."""

    def fit(self, module: nn.Module, images: Images) -> LatentDistribution:
        """Fit to a trained model and its training images; a no-op (that never reads `images`) unless the
        distribution is fitted to a model. Returns the distribution."""
        return self

    @torch.no_grad()
    def bounds(self, tail: float) -> Tensor:
        """[2, latent_dim] lower and upper corners of a box that holds all but a negligible part of the mass.

        Without a quantile function (`Quantiles.icdf`): the per-dimension 1e-4 and 1 - 1e-4 quantiles of
        `BOUNDS_DRAWS` seeded draws, widened by half their distance on each side (for a Gaussian that
        leaves about 1e-18 outside; a heavy-tailed distribution loses more, and quadrature over the box
        reports the mass it holds: evaluation.likelihood.exact_log_likelihood). Mixtures of Gaussians override it.
        """
        z = self.sample(BOUNDS_DRAWS, torch.Generator().manual_seed(0)).double().cpu()
        lo, hi = torch.quantile(z, torch.tensor([1e-4, 1 - 1e-4], dtype=torch.float64), dim=0)
        margin = (hi - lo) / 2
        return torch.stack([lo - margin, hi + margin])

    def extra_repr(self) -> str:
        return f"{self.label}, latent_dim={self.latent_dim}"


@runtime_checkable
class Quantiles(Protocol):
    """Optional capability: independent dimensions with a CDF and a quantile function per dimension."""

    def icdf(self, u: Tensor) -> Tensor:
        """u in (0, 1)^[..., latent_dim] -> z, kept inside the support."""

    def cdf(self, z: Tensor) -> Tensor:
        """z [..., latent_dim] -> P(Z_i <= z_i) per dimension, float64."""


def has_quantiles(distribution: LatentDistribution) -> bool:
    return isinstance(distribution, Quantiles)


def images_of(images: Images) -> Tensor:
    """The training images of an `Images` argument (calling it when it is a function)."""
    return images() if callable(images) else images
