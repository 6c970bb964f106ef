"""Latent distributions: the model's prior p(z) with its posterior family q(z|x), and the samplers a
trained decoder is fed side by side.

The contract (written out in `latent/base.py`): every latent distribution is an `nn.Module` over
vectors of `latent_dim` numbers with

- `log_prob(z)`: the log-density of whole latent vectors, z [..., latent_dim] -> [...];
- `sample(n, generator)`: n draws; with a `torch.Generator` they depend on its seed alone and the
  global RNG is left untouched (fixed noise);
- `posterior(params)`: its posterior family q(z|x) built from the encoder's output [B, 2 * latent_dim];
- `kl_terms(q, z)`: KL(q || p) per image, analytic per dimension where torch has it, else the
  single-sample estimate log q(z|x) - log p(z) (`kl` is their sum);
- `fit(module, images)`: a no-op unless the distribution is fitted to a trained model;
- `name` (tags, file names) and `label` (titles, HPARAMS).
Optional capability: independent dimensions with a quantile function (`Quantiles`, asked with
`has_quantiles`), which enables quantile grids, quantile-matched fixed noise and CDF-weighted
quadrature; code without it falls back to `sample` and `log_prob`. Learned priors keep their parameters
in the model's state_dict; the VampPrior uses the model's own encoder (`attach`).

Modules: `base` (the contract), `factorised` (N(0, I), N(loc, scale²), Beta: quantiles, analytic KL),
`mixture` (a learned mixture of Gaussians, the VampPrior: Monte Carlo KL), `flow` (a learned
normalizing-flow prior from zuko: Monte Carlo KL, its own learning rate), `fitted` (the aggregate
posterior, a GMM on posterior means and a flow on the aggregate posterior, fitted after training),
`sampler_sets` (building, comparing and fitting a set of samplers in one place), `geometry` (fixed noise,
quantile grids, central boxes).

Adding a latent distribution: subclass `LatentDistribution` (or `Factorised`, which derives density, sampling,
quantiles and KL from `marginals()`), implement `log_prob`, `sample`, `posterior`, `name` and `label`
(and `learning_rate` for parameters that train at their own rate), and add `conf/prior/<name>.yaml` with
`_target_` naming the class and its settings; the code passes `latent_dim` (the model's). That one file makes
it a prior (`train prior=<name>`), a sampler (`sample prior=<name>`) and an entry of a sampler set
(`- /prior@<label>: <name>` in conf/sampler_set/). Every command then trains, resumes, samples and evaluates it
(tests/integration/test_custom_prior.py does exactly that with a Student-t prior defined in the test file).
A distribution fitted to a trained model (it implements `fit`, and cannot be trained as a prior) goes in
`conf/fitted/<name>.yaml` instead.
"""

from vae_lightning.latent.base import LatentDistribution, Quantiles, has_quantiles
from vae_lightning.latent.factorised import BetaPrior, Factorised, GaussianPrior, NormalPrior
from vae_lightning.latent.fitted import AggregatePosterior, PosteriorFlow, PosteriorGMM
from vae_lightning.latent.flow import FlowPrior
from vae_lightning.latent.mixture import DiagonalGaussianMixture, MixturePrior, VampPrior

__all__ = ["AggregatePosterior", "BetaPrior", "DiagonalGaussianMixture", "Factorised", "FlowPrior", "GaussianPrior",
           "LatentDistribution", "MixturePrior", "NormalPrior", "PosteriorFlow", "PosteriorGMM", "Quantiles",
           "VampPrior", "has_quantiles"]
