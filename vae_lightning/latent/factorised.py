"""Priors with independent dimensions and a quantile function: N(loc, scale²), N(0, I), Beta(α, β).

They build `torch.distributions` objects over `latent_dim` independent dimensions (batch shape
`[latent_dim]`, no `Independent` wrapper), so KL, CDF and quantiles stay available per dimension;
they have the `Quantiles` capability (latent/base.py) and an analytic KL against their posterior.
"""

from __future__ import annotations

import scipy.special
import torch
from torch import Tensor
from torch.distributions import Beta, Distribution, Normal, kl_divergence
from torch.nn.functional import softplus

from vae_lightning.core.checks import FINITE, POSITIVE, number
from vae_lightning.core.rng import generator_seed, seeded
from vae_lightning.latent.base import LatentDistribution, fmt


def beta_cdf(x: Tensor, a: Tensor | float, b: Tensor | float) -> Tensor:
    """I_x(a, b) = P(Z <= x) for Z ~ Beta(a, b), elementwise (broadcast), float64 (scipy.special.betainc)."""
    x = torch.as_tensor(x, dtype=torch.float64)
    a, b = (torch.as_tensor(t, dtype=torch.float64).cpu() for t in (a, b))
    out = scipy.special.betainc(a.numpy(), b.numpy(), x.detach().cpu().clamp(0, 1).numpy())
    return torch.as_tensor(out, dtype=torch.float64, device=x.device)


def beta_icdf(u: Tensor, a: Tensor | float, b: Tensor | float) -> Tensor:
    """The quantile function of Beta(a, b) (scipy.special.betaincinv), elementwise; in u's dtype
    (float64 for other inputs)."""
    u = torch.as_tensor(u)
    a, b = (torch.as_tensor(t, dtype=torch.float64).cpu() for t in (a, b))
    out = scipy.special.betaincinv(a.numpy(), b.numpy(), u.detach().cpu().double().numpy())
    return torch.as_tensor(out, dtype=u.dtype if u.is_floating_point() else torch.float64, device=u.device)


def _double(distribution: Distribution) -> Distribution:
    """The same distribution with float64 parameters."""
    return type(distribution)(**{k: getattr(distribution, k).double() for k in distribution.arg_constraints})


def normal_posterior(params: Tensor) -> Normal:
    """The diagonal Normal q(z|x) from the encoder's (mean, log-variance); z = mean + exp(log-variance / 2)·ε
    (the study's code used the log-variance as the standard deviation)."""
    mean, log_var = params.chunk(2, dim=-1)
    # validate_args=False here and in BetaPrior: the parameters are valid by construction unless they
    # are NaN/inf, and then the NaN loss is reported by callbacks.NonFiniteGuard with the step and
    # the loss terms, instead of a ValueError deep inside torch.distributions.
    return Normal(mean, torch.exp(0.5 * log_var), validate_args=False)


class Factorised(LatentDistribution):
    """Independent dimensions: subclasses define `marginals()` (batch shape [latent_dim]) and
    `posterior`; log-density, sampling, CDF, quantiles and the analytic KL follow from them."""

    def marginals(self) -> Distribution:
        """p(z_i) for each dimension, batch shape [latent_dim]."""
        raise NotImplementedError

    def log_prob(self, z: Tensor) -> Tensor:
        return self.marginals().log_prob(z).sum(dim=-1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """torch's Beta/Gamma samplers accept no generator, hence the forked global RNG reseeded from it."""
        dist = self.marginals()
        if generator is None:
            return self.clamp_to_support(dist.sample((n,)))
        with seeded(generator_seed(generator), dist.mean.device):
            return self.clamp_to_support(dist.sample((n,)))

    def quantile(self, u: Tensor) -> Tensor:
        """The quantile function per dimension, not clamped, in u's dtype and on u's device (computed in
        float64 where the parameters are: a CUDA prior takes the CPU's uniforms)."""
        marginals = _double(self.marginals())
        return marginals.icdf(u.to(marginals.mean.device, torch.float64)).to(u.device, u.dtype)

    def icdf(self, u: Tensor) -> Tensor:
        """The quantile function per dimension: u in (0, 1)^[..., latent_dim] -> z, kept in the support.

        It lays a grid over the distribution's mass (the latent manifold) and turns one fixed
        draw of uniforms into fixed noise for any sampler (inverse-transform sampling), so that
        the same cell of every sampler's grid is the same quantile.
        """
        return self.clamp_to_support(self.quantile(u))

    def cdf(self, z: Tensor) -> Tensor:
        """P(Z_i <= z_i) per dimension, float64, on z's device (as `quantile`)."""
        marginals = _double(self.marginals())
        return marginals.cdf(z.to(marginals.mean.device, torch.float64)).to(z.device)

    def analytic_kl(self, q: Distribution) -> Tensor | None:
        try:
            return kl_divergence(q, self.marginals())
        except NotImplementedError:
            return None

    def bounds(self, tail: float) -> Tensor:
        u = torch.tensor([tail, 1 - tail], dtype=torch.float64).unsqueeze(1).expand(2, self.latent_dim)
        return self.quantile(u)


class GaussianPrior(Factorised):
    """N(loc, scale^2 I). The study's N(1, 2) is loc=1, scale=2. Posterior: diagonal Normal."""

    def __init__(self, latent_dim: int, loc: float = 0.0, scale: float = 1.0) -> None:
        super().__init__(latent_dim)
        FINITE.check("loc", loc)
        POSITIVE.check("scale", scale)
        self.loc, self.scale = float(loc), float(scale)
        self.register_buffer("_loc", torch.full((latent_dim,), self.loc), persistent=False)
        self.register_buffer("_scale", torch.full((latent_dim,), self.scale), persistent=False)

    @property
    def name(self) -> str:
        return f"gaussian_{fmt(self.loc)}_{fmt(self.scale)}"

    @property
    def label(self) -> str:
        return f"N({fmt(self.loc)}, {fmt(self.scale)}²)"

    def marginals(self) -> Normal:
        return Normal(self._loc, self._scale)

    def posterior(self, params: Tensor) -> Normal:
        return normal_posterior(params)


class NormalPrior(GaussianPrior):
    """The standard normal N(0, I): the usual VAE prior."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__(latent_dim, loc=0.0, scale=1.0)

    @property
    def name(self) -> str:
        return "normal_0_1"


class BetaPrior(Factorised):
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
        POSITIVE.check("alpha", alpha)
        POSITIVE.check("beta", beta)
        POSITIVE.check("min_concentration", min_concentration)
        number(min_concentration, above=True).check("max_concentration", max_concentration)
        self.alpha, self.beta = float(alpha), float(beta)
        self.min_concentration, self.max_concentration = min_concentration, max_concentration
        self.register_buffer("_alpha", torch.full((latent_dim,), self.alpha), persistent=False)
        self.register_buffer("_beta", torch.full((latent_dim,), self.beta), persistent=False)

    @property
    def name(self) -> str:
        return f"beta_{fmt(self.alpha)}_{fmt(self.beta)}"

    @property
    def label(self) -> str:
        return f"Beta({fmt(self.alpha)}, {fmt(self.beta)})"

    def marginals(self) -> Beta:
        return Beta(self._alpha, self._beta)

    def posterior(self, params: Tensor) -> Beta:
        raw_a, raw_b = params.chunk(2, dim=-1)
        lo, hi = self.min_concentration, self.max_concentration
        return Beta((softplus(raw_a) + lo).clamp(max=hi), (softplus(raw_b) + lo).clamp(max=hi), validate_args=False)

    def quantile(self, u: Tensor) -> Tensor:
        return beta_icdf(u, self._alpha, self._beta)  # torch's Beta has no icdf

    def icdf(self, u: Tensor) -> Tensor:
        return self.clamp_to_support(self.quantile(u))

    def cdf(self, z: Tensor) -> Tensor:
        return beta_cdf(z, self._alpha, self._beta)

    def clamp_to_support(self, z: Tensor) -> Tensor:
        return z.clamp(self.eps, 1 - self.eps)
