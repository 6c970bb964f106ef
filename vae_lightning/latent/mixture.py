"""Learned priors that are mixtures of diagonal Gaussians: a mixture of Gaussians and the VampPrior.

Neither has an analytic KL against the Normal posterior, so the loss uses the single-sample
estimate log q(z|x) - log p(z) at the training draw (latent/base.py), as in Tomczak & Welling
2018, eq. (7)-(9). Their parameters are `nn.Parameter`s of the prior, hence of the model: the
optimizer trains them with the networks and checkpoints store them.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.functional import hardtanh, log_softmax, softplus

from vae_lightning.core.checks import COUNT, NON_NEGATIVE, PROBABILITY_OPEN, number
from vae_lightning.core.memory import FLOAT_BYTES, check_fits
from vae_lightning.latent.base import LatentDistribution
from vae_lightning.latent.factorised import normal_posterior

_LOG_2PI = math.log(2 * math.pi)


def diagonal_mixture_log_prob(z: Tensor, log_weights: Tensor, means: Tensor, scales: Tensor) -> Tensor:
    """log sum_k w_k N(z; mu_k, diag(sigma_k^2)) for z [..., D]; weights [K], means and scales [K, D].

    The squared distances to every component come from matrix products
    (z²/σ² - 2 z μ/σ² + μ²/σ², summed over dimensions), so memory is [..., K], never [..., K, D]:
    an IWAE chunk of 500 x 100 latents against 500 pseudo-inputs stays small at any latent size.
    """
    precision = scales.pow(-2)  # [K, D]
    flat = z.reshape(-1, z.shape[-1])
    quadratic = flat.square() @ precision.T - 2 * flat @ (means * precision).T + (means.square() * precision).sum(-1)
    log_norm = -torch.log(scales).sum(-1) - 0.5 * z.shape[-1] * _LOG_2PI  # [K]
    log_components = log_norm - 0.5 * quadratic  # [N, K]
    return torch.logsumexp(log_components + log_weights, dim=-1).reshape(z.shape[:-1])


def pick_components(weights: Tensor, n: int, generator: torch.Generator | None) -> Tensor:
    """n component indices drawn with probabilities `weights` [K] (on their device), by the inverse CDF of
    n uniforms from `generator` (CPU): the same seed picks the same quantile of the weights even as they change."""
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    cumulative = torch.cumsum(weights.detach().double().cpu(), 0)
    return torch.searchsorted(cumulative / cumulative[-1], u).clamp_(max=len(weights) - 1).to(weights.device)


class DiagonalGaussianMixture(LatentDistribution):
    """p(z) = sum_k w_k N(z; mu_k, diag(sigma_k²)); posterior: diagonal Normal. Subclasses define
    `components()`; density, sampling and bounds follow from it."""

    def components(self) -> tuple[Tensor, Tensor, Tensor]:
        """Log-weights [K], means [K, D] and scales [K, D] of the mixture as it is now."""
        raise NotImplementedError

    def log_prob(self, z: Tensor) -> Tensor:
        return diagonal_mixture_log_prob(z, *self.components())

    def posterior(self, params: Tensor) -> torch.distributions.Normal:
        return normal_posterior(params)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """A component by inverse-CDF of one uniform per draw, then mean + scale·ε. The uniforms and ε
        come from `generator` (CPU), so the same seed gives the same draws whatever the device, and
        while the mixture trains a fixed seed keeps the same noise (same quantile of the weights)."""
        log_weights, means, scales = self.components()
        k = pick_components(log_weights.exp(), n, generator)
        eps = torch.randn(n, self.latent_dim, generator=generator).to(means)
        return means[k] + scales[k] * eps

    @torch.no_grad()
    def bounds(self, tail: float) -> Tensor:
        """The union of the components' central boxes: at most 2·latent_dim·tail of the mass lies outside."""
        _, means, scales = self.components()
        quantile = float(torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(1 - tail, dtype=torch.float64)))
        means, scales = means.double(), scales.double()
        return torch.stack([(means - quantile * scales).min(dim=0).values,
                            (means + quantile * scales).max(dim=0).values])


class MixturePrior(DiagonalGaussianMixture):
    """A learned mixture of `n_components` diagonal Gaussians: means, scales and weights trained with the model.

    Means start as draws from N(0, init_spread²) (the global RNG at build time, seeded by `train`),
    so the components start apart and can specialise; scales start at 1 (softplus(raw) + min_scale),
    weights equal (softmax of zero logits).
    """

    def __init__(self, latent_dim: int, n_components: int = 10, init_spread: float = 1.0,
                 min_scale: float = 1e-3) -> None:
        super().__init__(latent_dim)
        COUNT.check("n_components", n_components)
        # means, scales, weights with Adam's two moments and a gradient each, and a batch's [B, K] densities
        check_fits("n_components", n_components, 4 * FLOAT_BYTES * (2 * latent_dim + 1) + 1024 * FLOAT_BYTES)
        NON_NEGATIVE.check("init_spread", init_spread)
        PROBABILITY_OPEN.check("min_scale", min_scale)
        self.n_components, self.min_scale = n_components, min_scale
        self.means = nn.Parameter(torch.randn(n_components, latent_dim) * init_spread)
        unit = math.log(math.expm1(1 - min_scale))  # softplus(unit) + min_scale = 1
        self.raw_scales = nn.Parameter(torch.full((n_components, latent_dim), unit))
        self.logits = nn.Parameter(torch.zeros(n_components))

    @property
    def name(self) -> str:
        return f"mog_{self.n_components}"

    @property
    def label(self) -> str:
        return f"MoG({self.n_components})"

    def components(self) -> tuple[Tensor, Tensor, Tensor]:
        return log_softmax(self.logits, dim=0), self.means, softplus(self.raw_scales) + self.min_scale


class VampPrior(DiagonalGaussianMixture):
    """The VampPrior (Tomczak & Welling 2018): p(z) = (1/K) sum_k q(z | u_k), with K learnable
    pseudo-inputs u_k [K, 1, 28, 28] passed through the model's own encoder (`attach`: the same
    weights, not a copy, so the prior moves with the encoder and the encoder is trained by log p(z) too).

    Pseudo-inputs are kept in [0, 1] by a hardtanh and start as N(init_mean, init_std²) pixels, the
    paper's initialisation for MNIST (0.05, 0.01): nearly black images, close to MNIST's mostly dark
    pixels, with enough noise to tell the components apart. It needs no data, so the prior is a function
    of its config and seed alone (a checkpoint rebuilds it without the dataset).
    """

    def __init__(self, latent_dim: int, n_pseudo_inputs: int = 500, init_mean: float = 0.05,
                 init_std: float = 0.01) -> None:
        super().__init__(latent_dim)
        COUNT.check("n_pseudo_inputs", n_pseudo_inputs)
        # the pseudo-images with Adam's two moments and a gradient, and their pass through the encoder
        check_fits("n_pseudo_inputs", n_pseudo_inputs, 8 * FLOAT_BYTES * 784)
        number(0, 1).check("init_mean", init_mean)
        NON_NEGATIVE.check("init_std", init_std)
        self.n_pseudo_inputs = n_pseudo_inputs
        self.pseudo_inputs = nn.Parameter(init_mean + init_std * torch.randn(n_pseudo_inputs, 1, 28, 28))
        self.__dict__["_encoder"] = None  # not a submodule: the model owns the encoder and its state

    def attach(self, encoder: nn.Module) -> None:
        self.__dict__["_encoder"] = encoder

    @property
    def name(self) -> str:
        return f"vamp_{self.n_pseudo_inputs}"

    @property
    def label(self) -> str:
        return f"Vamp({self.n_pseudo_inputs})"

    def components(self) -> tuple[Tensor, Tensor, Tensor]:
        encoder = self.__dict__["_encoder"]
        if encoder is None:
            raise RuntimeError("VampPrior needs the model's encoder: build it inside a VAEModule (which calls attach)")
        q = normal_posterior(encoder(hardtanh(self.pseudo_inputs, 0.0, 1.0)))
        log_weights = torch.full((self.n_pseudo_inputs,), -math.log(self.n_pseudo_inputs), device=q.loc.device)
        return log_weights, q.loc, q.scale
