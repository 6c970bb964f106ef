"""Sampler sets: the latent distributions a trained decoder is fed side by side (the study's experiment),
built from config entries at the model's latent size, compared with the model's prior, and fitted to
the model, in one place for every caller (the training pictures, `evaluate`, `explore`, `sample`).

A set's entries (conf/sampler_set/, the config key `samplers`) are distributions of conf/prior/ and
conf/fitted/ under a label, without `latent_dim` (the code passes the model's), e.g.
`{_target_: vae_lightning.latent.BetaPrior, alpha: 4, beta: 3}`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution

from vae_lightning.core.building import build
from vae_lightning.core.errors import UserError
from vae_lightning.latent.base import Images, LatentDistribution, images_of
from vae_lightning.latent.trained import TrainedModel


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


def fit_samplers(samplers: list[LatentDistribution], module: TrainedModel, images: Images,
                 timings: dict[str, float] | None = None) -> list[LatentDistribution]:
    """Fit every sampler to the trained `module` (a no-op for all but the fitted ones), on the module's
    device. The training images are read once, when the first sampler asks for them; `timings` gets
    the seconds of each fit that used them (`fit <name>`)."""
    device = next(module.parameters()).device
    cache: list[Tensor] = []

    def training_images() -> Tensor:
        if not cache:
            cache.append(images_of(images))
        asked.append(True)
        return cache[0]

    for sampler in samplers:
        asked: list[bool] = []
        start = time.perf_counter()
        sampler.to(device).fit(module, training_images)
        if asked and timings is not None:
            timings[f"fit {sampler.name}"] = time.perf_counter() - start
    return samplers
