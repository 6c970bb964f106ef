"""Posterior-collapse diagnostics while training: active units, I(x; z) and the KL per dimension,
once per validation epoch (the estimators are evaluation.diagnostics', shared with evaluate)."""

from __future__ import annotations

import logging
import math
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor

from vae_lightning.core.checks import COUNT, POSITIVE
from vae_lightning.core.rng import seeded
from vae_lightning.evaluation.diagnostics import ACTIVE_UNITS_THRESHOLD, active_units, mutual_information
from vae_lightning.model import VAEModule

log = logging.getLogger(__name__)


class Diagnostics(Callback):
    """Posterior-collapse diagnostics, once per validation epoch, on the first `n_images` validation images
    (the loader is not shuffled: the same images every epoch), logged as epoch metrics:

    - `diagnostics/active_units`: dimensions whose posterior mean varies over the images by more than
      `active_units_threshold` (evaluate's threshold, ACTIVE_UNITS_THRESHOLD, by default);
    - `diagnostics/mutual_information`: I(x; z) under q in nats (mutual_information; at most
      log n_images);
    - `diagnostics/kl/<i>`: the KL of dimension i, for the first `max_kl_dims` dimensions, when the
      prior's KL is analytic per dimension (a Monte Carlo KL of the whole vector, mog and vamp, has no
      per-dimension split). Above the cap the other dimensions are not logged (one log line says so);
      evaluate reports every dimension.

    The latent draw behind the estimate comes from a forked global RNG reseeded with `seed`, so training
    is the same with and without this callback. Each process computes on its own validation images and
    the values are averaged over processes.
    """

    def __init__(self, n_images: int = 1000, active_units_threshold: float = ACTIVE_UNITS_THRESHOLD,
                 max_kl_dims: int = 16, seed: int = 0) -> None:
        for key, value in (("n_images", n_images), ("max_kl_dims", max_kl_dims)):
            COUNT.check(key, value)
        POSITIVE.check("active_units_threshold", active_units_threshold)
        self.n_images, self.threshold, self.max_kl_dims, self.seed = n_images, active_units_threshold, max_kl_dims, seed
        self._images: list[Tensor] = []
        self._said: set[str] = set()

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._images = []

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                                batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        missing = self.n_images - sum(len(x) for x in self._images)
        if not trainer.sanity_checking and missing > 0:
            self._images.append(batch[0][:missing])

    def _say_once(self, message: str, *args: Any) -> None:
        if message not in self._said:
            self._said.add(message)
            log.info(message, *args)

    def values(self, pl_module: VAEModule, x: Tensor) -> dict[str, float]:
        """The diagnostics of images x under the module's current weights."""
        with torch.no_grad():
            q = pl_module.encode(x)
            if not (torch.isfinite(q.mean).all() and torch.isfinite(q.variance).all()):
                # diverged weights: the NaN guard stops training on the loss; the diagnostics say NaN, not crash
                return {"diagnostics/active_units": math.nan, "diagnostics/mutual_information": math.nan}
            with seeded(self.seed, x.device):
                z = pl_module.prior.rsample_posterior(q)
            count, _ = active_units(q.mean, self.threshold)
            out = {"diagnostics/active_units": float(count),
                   "diagnostics/mutual_information": mutual_information(q, z)}
            kl = pl_module.prior.analytic_kl(q)
        if kl is None:
            self._say_once("diagnostics/kl/<i> not logged: the prior %s has no per-dimension KL", pl_module.prior.label)
            return out
        if pl_module.latent_dim > self.max_kl_dims:
            self._say_once("diagnostics/kl/<i> logged for the first %d of %d dimensions (callbacks.diagnostics."
                           "max_kl_dims)", self.max_kl_dims, pl_module.latent_dim)
        per_dim = kl.double().mean(dim=0)[: self.max_kl_dims].tolist()
        return {**out, **{f"diagnostics/kl/{i}": v for i, v in enumerate(per_dim)}}

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not self._images:
            return
        values = self.values(pl_module, torch.cat(self._images))
        self._images = []
        pl_module.log_dict(values, on_step=False, on_epoch=True, sync_dist=True)
