"""Latent distributions: the model's prior p(z) with its posterior family q(z|x), and the samplers
a trained decoder is fed. The contract every one of them keeps is in `priors/base.py`; the families:

- `factorised`: N(0, I), N(loc, scale²), Beta(α, β) per dimension (quantiles, analytic KL);
- `mixture`: a learned mixture of Gaussians and the VampPrior (Monte Carlo KL).

A config chooses one by `_target_: vae_lightning.priors.<Class>`.
"""

from vae_lightning.priors.base import LatentDistribution, Quantiles, has_quantiles, seeded
from vae_lightning.priors.factorised import BetaPrior, Factorised, GaussianPrior, NormalPrior
from vae_lightning.priors.mixture import DiagonalGaussianMixture, MixturePrior, VampPrior

__all__ = ["BetaPrior", "DiagonalGaussianMixture", "Factorised", "GaussianPrior", "LatentDistribution", "MixturePrior",
           "NormalPrior", "Quantiles", "VampPrior", "has_quantiles", "seeded"]
