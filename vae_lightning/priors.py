"""Latent distributions: the model's prior p(z) and, paired with it, the posterior family q(z|x).

A prior is an `nn.Module` so that its parameters (buffers) follow the model to any device. It
builds `torch.distributions` objects over `latent_dim` independent dimensions (batch shape
`[..., latent_dim]`, no `Independent` wrapper) so that KL and log-probabilities stay available
per dimension; callers sum over the last axis.

The same classes serve as *samplers*: any trained decoder can be fed draws from another
distribution (`sample`), which is the study's prior-comparison experiment.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.distributions import Beta, Distribution, Normal, kl_divergence
from torch.nn.functional import softplus

from vae_lightning.errors import require
from vae_lightning.special import beta_icdf


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Run the block with the global RNG seeded to `seed`, restoring it afterwards.

    torch's Beta/Gamma samplers take no `generator`, so reproducible draws from any posterior
    family need the (forked) global RNG.
    """
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def _fmt(x: float) -> str:
    """Parameter value as used in names: 1.0 -> '1', 1.1 -> '1.1'."""
    return f"{x:g}"


class LatentDistribution(nn.Module):
    """Base class: a fully factorised distribution over `latent_dim` dimensions.

    Subclasses define `distribution()` (the prior), `posterior(params)` (the matching q(z|x) from
    the encoder's two `latent_dim`-sized outputs), `name` and `label`.
    """

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        require(isinstance(latent_dim, int) and latent_dim >= 1, "latent_dim", latent_dim, "an integer >= 1")
        self.latent_dim = latent_dim

    @property
    def name(self) -> str:
        """Short identifier used in tags and file names, e.g. `beta_4_3`."""
        raise NotImplementedError

    @property
    def label(self) -> str:
        """Human-readable form for titles, e.g. `Beta(4, 3)`."""
        raise NotImplementedError

    def distribution(self) -> Distribution:
        """p(z), batch shape [latent_dim]."""
        raise NotImplementedError

    def posterior(self, params: Tensor) -> Distribution:
        """q(z|x) from encoder output `params` of shape [B, 2 * latent_dim]."""
        raise NotImplementedError

    def rsample_posterior(self, q: Distribution) -> Tensor:
        """A reparameterised draw from q, kept inside the prior's support."""
        return self.clamp_to_support(q.rsample())

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n draws from p(z), shape [n, latent_dim], on the prior's device.

        With a `generator` the draws are reproducible and the global RNG is left untouched (so a
        callback drawing fixed noise does not change the training stream). torch's Beta/Gamma
        samplers accept no generator, hence the forked, reseeded global RNG.
        """
        dist = self.distribution()
        if generator is None:
            z = dist.sample((n,))
        else:
            with seeded(int(torch.randint(2**62, (1,), generator=generator)), dist.mean.device):
                z = dist.sample((n,))
        return self.clamp_to_support(z)

    def icdf(self, u: Tensor) -> Tensor:
        """The quantile function per dimension: u in (0, 1)^[..., latent_dim] -> z, kept in the support.

        It lays a grid over the distribution's mass (the latent manifold) and turns one fixed
        draw of uniforms into fixed noise for any sampler (inverse-transform sampling), so that
        the same cell of every sampler's grid is the same quantile.
        """
        return self.clamp_to_support(self.distribution().icdf(u))

    def clamp_to_support(self, z: Tensor) -> Tensor:
        """Keep samples where the decoder was trained to expect them (identity by default)."""
        return z

    def kl(self, q: Distribution) -> Tensor:
        """KL(q || p) per latent dimension, shape [B, latent_dim], analytic."""
        return kl_divergence(q, self.distribution())

    def extra_repr(self) -> str:
        return f"{self.label}, latent_dim={self.latent_dim}"


class GaussianPrior(LatentDistribution):
    """N(loc, scale^2 I). The study's N(1, 2) is loc=1, scale=2. Posterior: diagonal Normal.

    The encoder's outputs are (mean, log-variance); the reparameterisation is
    z = mean + exp(log-variance / 2) * eps (the study's code used the log-variance as the std).
    """

    def __init__(self, latent_dim: int, loc: float = 0.0, scale: float = 1.0) -> None:
        super().__init__(latent_dim)
        require(math.isfinite(loc), "loc", loc, "a finite number")
        require(math.isfinite(scale) and scale > 0, "scale", scale, "a finite number > 0")
        self.loc, self.scale = float(loc), float(scale)
        self.register_buffer("_loc", torch.full((latent_dim,), self.loc), persistent=False)
        self.register_buffer("_scale", torch.full((latent_dim,), self.scale), persistent=False)

    @property
    def name(self) -> str:
        return f"gaussian_{_fmt(self.loc)}_{_fmt(self.scale)}"

    @property
    def label(self) -> str:
        return f"N({_fmt(self.loc)}, {_fmt(self.scale)}²)"

    def distribution(self) -> Normal:
        return Normal(self._loc, self._scale)

    def posterior(self, params: Tensor) -> Normal:
        mean, log_var = params.chunk(2, dim=-1)
        # validate_args=False here and in BetaPrior: the parameters are valid by construction unless
        # they are NaN/inf, and then the NaN loss is reported by reliability.NonFiniteGuard with the
        # step and the loss terms, instead of a ValueError deep inside torch.distributions.
        return Normal(mean, torch.exp(0.5 * log_var), validate_args=False)


class NormalPrior(GaussianPrior):
    """The standard normal N(0, I): the usual VAE prior."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__(latent_dim, loc=0.0, scale=1.0)

    @property
    def name(self) -> str:
        return "normal_0_1"


class BetaPrior(LatentDistribution):
    """Beta(alpha, beta) per dimension on (0, 1). Posterior: a Beta per dimension.

    The encoder's two outputs become concentrations via softplus + `min_concentration`, bounded
    away from 0 where Beta samples and their gradients degenerate, and capped at
    `max_concentration` so that the posterior cannot become a spike that underflows in float32.
    Samples are clamped to [eps, 1 - eps] so that they stay strictly inside (0, 1).
    """

    eps = 1e-6

    def __init__(
        self,
        latent_dim: int,
        alpha: float = 1.0,
        beta: float = 1.0,
        min_concentration: float = 1e-2,
        max_concentration: float = 1e4,
    ) -> None:
        super().__init__(latent_dim)
        require(math.isfinite(alpha) and alpha > 0, "alpha", alpha, "a finite number > 0")
        require(math.isfinite(beta) and beta > 0, "beta", beta, "a finite number > 0")
        require(min_concentration > 0, "min_concentration", min_concentration, "> 0")
        require(max_concentration > min_concentration, "max_concentration", max_concentration,
                f"> min_concentration ({min_concentration})")
        self.alpha, self.beta = float(alpha), float(beta)
        self.min_concentration, self.max_concentration = min_concentration, max_concentration
        self.register_buffer("_alpha", torch.full((latent_dim,), self.alpha), persistent=False)
        self.register_buffer("_beta", torch.full((latent_dim,), self.beta), persistent=False)

    @property
    def name(self) -> str:
        return f"beta_{_fmt(self.alpha)}_{_fmt(self.beta)}"

    @property
    def label(self) -> str:
        return f"Beta({_fmt(self.alpha)}, {_fmt(self.beta)})"

    def distribution(self) -> Beta:
        return Beta(self._alpha, self._beta)

    def posterior(self, params: Tensor) -> Beta:
        raw_a, raw_b = params.chunk(2, dim=-1)
        lo, hi = self.min_concentration, self.max_concentration
        return Beta((softplus(raw_a) + lo).clamp(max=hi), (softplus(raw_b) + lo).clamp(max=hi), validate_args=False)

    def icdf(self, u: Tensor) -> Tensor:
        # torch's Beta has no icdf: a numerical inversion of its CDF (special.py)
        return self.clamp_to_support(beta_icdf(u, self._alpha, self._beta))

    def clamp_to_support(self, z: Tensor) -> Tensor:
        return z.clamp(self.eps, 1 - self.eps)
