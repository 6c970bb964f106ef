"""The VAE as a LightningModule: negative ELBO with a KL weight, logged in nats per image."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from vae_lightning.core.building import build
from vae_lightning.core.checks import number
from vae_lightning.core.errors import UserError
from vae_lightning.latent import LatentDistribution
from vae_lightning.model.likelihoods import Bernoulli, Likelihood
from vae_lightning.model.networks import IMAGE_SHAPE

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


class VAEModule(L.LightningModule):
    """Encoder -> posterior q(z|x) -> reparameterised z -> decoder -> logits -> likelihood p(x|z).

    The networks follow the shape contract of model/networks.py, the likelihood that of model/likelihoods.py
    (default: the study's Bernoulli). Per image: recon = -log p(x|z) summed over pixels (for the
    Bernoulli, BCE-with-logits), kl = KL(q || p) summed over latent dimensions; both averaged over
    the batch. Training minimises recon + kl_weight * kl, where `kl_weight` is set before every
    step by the KL-annealing callback. `elbo` = -(recon + kl) never carries the weight, so it is
    comparable across schedules and equals the usual ELBO in nats.

    With `free_bits` = λ > 0 (Kingma et al. 2016, eq. 15) the loss's KL is instead
    sum_g max(λ·d_g, mean over the batch of KL_g) over the prior's KL groups (`kl_terms`: each latent
    dimension, d_g = 1, where the KL is analytic; else the whole vector, d_g = latent_dim): a group
    whose batch-mean KL is below its floor gets no gradient from the KL. `kl` and `elbo` stay the
    unclamped values; the validation and test `loss` use the same objective as training.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, prior: LatentDistribution,
                 optimizer: OptimizerFactory, latent_dim: int, free_bits: float = 0.0,
                 likelihood: Likelihood | None = None) -> None:
        super().__init__()
        number(0, note=" (nats per latent dimension; 0: no free bits)").check("free_bits", free_bits)
        dims = {"model.latent_dim": latent_dim, "encoder": getattr(encoder, "latent_dim", latent_dim),
                "decoder": getattr(decoder, "latent_dim", latent_dim), "prior": prior.latent_dim}
        if len(set(dims.values())) != 1:
            raise UserError(f"latent sizes disagree: {dims}; set them all from model.latent_dim")
        self.encoder, self.decoder, self.prior = encoder, decoder, prior
        self.likelihood = likelihood or Bernoulli()
        prior.attach(encoder)  # the VampPrior's components are this encoder's posteriors
        self.optimizer_factory = optimizer
        self.latent_dim, self.free_bits = latent_dim, float(free_bits)
        self.kl_weight = 1.0
        self._epoch_steps: list[tuple[Tensor, Tensor, Tensor, int]] = []  # (loss, recon, kl, images) per step

    @property
    def architecture(self) -> str:
        """The encoder's and decoder's `label` (else their class names), for HPARAMS and reports."""
        return " / ".join(getattr(net, "label", type(net).__name__) for net in (self.encoder, self.decoder))

    def encode(self, x: Tensor) -> Distribution:
        """The posterior q(z|x) of images x [B, 1, 28, 28] (batch shape [B, latent_dim])."""
        return self.prior.posterior(self.encoder(x))

    def loss_parts(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Per-image reconstruction [B] and KL(q(z|x) || p(z)) in the prior's groups [B, G], in nats (per
        dimension where the KL is analytic, else log q(z|x) - log p(z) at the same draw z that is decoded)."""
        params = self.encoder(x)
        z = self.prior.rsample_posterior(self.prior.posterior(params))
        return self.loss_at(x, params, z)

    def loss_at(self, x: Tensor, params: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        """`loss_parts` given the encoder's output `params` and the posterior draw `z`: everything of the loss but
        the random draw. Deterministic, so that model/members.py can map it over stacked members with `vmap`
        (torch's samplers cannot run inside it)."""
        recon = -self.likelihood.log_prob(self.decoder(z), x)
        return recon, self.prior.kl_terms(self.prior.posterior(params), z)

    def loss_terms(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Per-image reconstruction [B] and KL [B], in nats."""
        recon, kl_terms = self.loss_parts(x)
        return recon, kl_terms.sum(dim=-1)

    def kl_for_loss(self, kl_terms: Tensor) -> Tensor:
        """The batch's KL [B, G] as the loss counts it: the plain batch mean, or with free bits each group's
        batch mean floored at free_bits x its dimensions (see the class docstring)."""
        means = kl_terms.mean(dim=0)
        if self.free_bits == 0:
            return means.sum()
        return means.clamp(min=self.free_bits * self.latent_dim / kl_terms.shape[-1]).sum()

    def decode(self, z: Tensor) -> Tensor:
        """Mean images E[x|z] in [0, 1] for latents z [..., latent_dim], shaped [..., 1, 28, 28]."""
        return self.likelihood.mean(self.decoder(z)).unflatten(-1, IMAGE_SHAPE)

    @torch.no_grad()
    def sample(self, n: int, sampler: LatentDistribution | Mapping[str, Any] | None = None, seed: int = 0) -> Tensor:
        """Images [n, 1, 28, 28] in [0, 1]: decoder means of n seeded draws from `sampler`, by default
        the model's prior; a config (`_target_`, e.g. conf/prior/) is built at the model's latent size."""
        if sampler is None:
            sampler = self.prior
        elif not isinstance(sampler, LatentDistribution):
            sampler = build(sampler, "sampler", latent_dim=self.latent_dim)
        return self.decode(sampler.to(self.device).sample(n, generator=torch.Generator().manual_seed(seed)))

    def _step(self, batch: tuple[Tensor, Tensor], stage: str) -> dict[str, Tensor]:
        """The batch's loss and its terms (logged under `<stage>/...`)."""
        x, _ = batch
        recon_per_image, kl_terms = self.loss_parts(x)
        recon, kl = recon_per_image.mean(), kl_terms.sum(dim=-1).mean()
        loss = recon + self.kl_weight * self.kl_for_loss(kl_terms)
        terms = {"loss": loss, "recon": recon.detach(), "kl": kl.detach()}
        if stage == "train":
            self._log_train(terms, len(x))
        else:
            self.log_dict({f"{stage}/{k}": v for k, v in terms.items()}, on_step=False, on_epoch=True,
                          batch_size=len(x), sync_dist=True)
            self.log(f"{stage}/elbo", -(recon + kl), on_step=False, on_epoch=True, prog_bar=True,
                     batch_size=len(x), sync_dist=True)
        return terms

    def _log_train(self, terms: dict[str, Tensor], n: int) -> None:
        """Step values under the plain names, logged only on the steps that Lightning writes
        (every `trainer.log_every_n_steps`), with the terms on the progress bar (the study printed
        them to debug annealing); epoch means as `train/<term>_epoch`.

        A step only keeps references to its terms: each `self.log` call is tens of microseconds of
        Python, and even a few tensor operations per step to accumulate sums are a measurable part
        of an epoch of the study's small model on a CPU; the means are taken once per epoch.
        """
        loss, recon, kl = terms["loss"].detach(), terms["recon"], terms["kl"]
        self._epoch_steps.append((loss, recon, kl, n))
        every = self.trainer.log_every_n_steps
        if every and (self.global_step + 1) % every == 0:
            values = {"loss": loss, "recon": recon, "kl": kl, "elbo": -(recon + kl), "kl_weight": self.kl_weight}
            self.log_dict({f"train/{k}": v for k, v in values.items()}, on_step=True, on_epoch=False, prog_bar=True,
                          batch_size=n)

    def on_train_epoch_start(self) -> None:
        self._epoch_steps = []

    def on_train_epoch_end(self) -> None:
        if not self._epoch_steps:
            return
        steps = torch.stack([t for *step_terms, _ in self._epoch_steps for t in step_terms]).view(-1, 3)
        images = steps.new_tensor([n for *_, n in self._epoch_steps])
        loss, recon, kl = images @ steps / images.sum()  # means over the epoch's images
        self._epoch_steps = []
        means = {"loss": loss, "recon": recon, "kl": kl, "elbo": -(recon + kl)}
        self.log_dict({f"train/{k}_epoch": v for k, v in means.items()}, on_step=False, on_epoch=True,
                      sync_dist=True)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        # Lightning optimizes "loss"; the terms reach `on_train_batch_end` (the non-finite guard names them)
        return self._step(batch, "train")

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return self._step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return self._step(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """`model.optimizer` over every parameter in one group; a prior with its own `learning_rate` (the flow
        prior) gets a second group of its parameters at that rate. Priors without one keep the single group
        that the optimizer states of their checkpoints were saved with, so those still resume."""
        lr = self.prior.learning_rate
        if lr is None:
            return self.optimizer_factory(self.parameters())
        own = {id(p) for p in self.prior.parameters()}
        rest = [p for p in self.parameters() if id(p) not in own]
        return self.optimizer_factory([{"params": rest}, {"params": list(self.prior.parameters()), "lr": lr}])
