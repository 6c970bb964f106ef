"""The study's comparison drawn while training: the model decoded under several samplers, side by
side, from fixed noise; reconstructions; the latent manifold and scatter for 2-D latents."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor, nn

from vae_lightning.core.checks import COUNT, PROBABILITY_OPEN
from vae_lightning.core.errors import UserError
from vae_lightning.core.memory import FLOAT_BYTES, check_fits
from vae_lightning.latent import LatentDistribution, has_quantiles
from vae_lightning.latent.geometry import box_mass, central_box, fixed_noise, grid_quantiles
from vae_lightning.latent.sampler_sets import build_samplers, fit_samplers, same_distribution
from vae_lightning.model import VAEModule
from vae_lightning.pictures import (
    decoded_grid,
    image_grid,
    manifold_figure,
    panel_figure,
    reconstruction_grid,
    scatter_figure,
)
from vae_lightning.tracking import log_images

log = logging.getLogger(__name__)


@contextmanager
def evaluating(module: nn.Module) -> Iterator[None]:
    """Eval mode and no gradients for the block; the module's previous mode afterwards."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(was_training)


class PriorGrid(Callback):
    """The study's comparison, drawn while training: the model decoded under several samplers.

    Every `every_n_epochs` epochs: one grid per sampler (tag `samples/<name>`) decoded from fixed
    noise, all of them in one labelled figure (`samples/comparison`), and fixed validation images
    above their reconstructions (`space/reconstructions`, from the posterior mean). Every
    `latent_every_n_epochs` epochs, for a 2-D latent: the decoder over a grid of the prior's
    quantiles, or of its central region when it has none (`space/manifold`), and the validation
    codes coloured by digit with each sampler's central `region_mass` box (`space/scatter`). Both
    sets are also drawn at the last epoch. (TensorBoard sorts its groups by name: `samples` comes first,
    then `space`, the latent space's pictures.) Samplers fitted to the model (`latent.fitted`) are refitted
    to the training images of the trainer's data module before each drawing (`fit_samplers`).

    Images go to the run's loggers (step = global step; `tracking.log_images`: TensorBoard images,
    the CSV logger's and MLflow's `samples/epoch_<k>/` files) and, with `dirpath`, to
    `<dirpath>/epoch_<k>/<tag with / as _>.png`. Nothing here draws from the global RNG (the
    noise comes from its own generator, `latent.geometry.fixed_noise`; codes and reconstructions use the
    posterior mean), so training is the same with and without this callback; only the global-zero
    process draws.

    `samplers` are config entries without `latent_dim` (conf/sampler_set/), built at setup for the
    model's latent size; the model's own prior is added unless one of them is its distribution.
    """

    def __init__(self, samplers: Mapping[str, Any] | None = None, dirpath: str | None = None,
                 every_n_epochs: int = 1, latent_every_n_epochs: int = 5, n_samples: int = 64, nrow: int = 8,
                 seed: int = 0, n_reconstructions: int = 32, manifold_size: int = 20,
                 scatter_points: int = 5000, region_mass: float = 0.9) -> None:
        for key, value in (("every_n_epochs", every_n_epochs), ("latent_every_n_epochs", latent_every_n_epochs),
                           ("n_samples", n_samples), ("nrow", nrow), ("n_reconstructions", n_reconstructions),
                           ("manifold_size", manifold_size), ("scatter_points", scatter_points)):
            COUNT.check(key, value)
        PROBABILITY_OPEN.check("region_mass", region_mass)
        # every sampler's grid of decoded digits at once (with the comparison figure's pixels), and the manifold
        n_grids = len(samplers or {}) + 1
        check_fits("n_samples", n_samples, n_grids * FLOAT_BYTES * (64 + 784 + 2 * 3 * 30 * 30),
                   what=f"for {n_grids} samplers' grids ")
        check_fits("manifold_size", manifold_size, FLOAT_BYTES * (784 + 3 * 30 * 30), what="for its decoded grid ",
                   power=2)
        self.sampler_configs = dict(samplers or {})
        self.dirpath = Path(dirpath) if dirpath else None
        self.every_n_epochs, self.latent_every_n_epochs = every_n_epochs, latent_every_n_epochs
        self.n_samples, self.nrow, self.seed = n_samples, nrow, seed
        self.n_reconstructions, self.manifold_size = n_reconstructions, manifold_size
        self.scatter_points, self.region_mass = scatter_points, region_mass
        self.samplers: list[LatentDistribution] = []
        self.noise: dict[str, Tensor] = {}  # sampler name -> fixed latents [n_samples, latent_dim] (CPU)
        self._val: list[tuple[Tensor, Tensor]] = []  # the first validation images and labels
        self._epoch_start = time.perf_counter()

    # -- setup and data -------------------------------------------------------------------------

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.samplers:
            return
        self.samplers = build_samplers(self.sampler_configs, pl_module.latent_dim, pl_module.prior)
        # quantile-matched noise of fixed distributions is computed once (a Beta's quantiles are numerical);
        # learned priors and fitted samplers draw theirs from the same seed whenever they are drawn
        self.noise = {s.name: fixed_noise(s, self.n_samples, self.seed) for s in self.samplers
                      if has_quantiles(s) and not any(True for _ in s.parameters())}
        if pl_module.latent_dim != 2:
            log.info("latent manifold and scatter skipped: they need a 2-D latent, this model's is %d-D",
                     pl_module.latent_dim)

    def _val_needed(self, pl_module: L.LightningModule) -> int:
        return max(self.n_reconstructions, self.scatter_points if pl_module.latent_dim == 2 else 0)

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._val = []

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                                batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Keep the first validation images of each validation run (the loader is not shuffled,
        so they are the same images every epoch). References only: no copy, no computation."""
        missing = self._val_needed(pl_module) - sum(len(x) for x, _ in self._val)
        if trainer.sanity_checking or not trainer.is_global_zero or missing <= 0:
            return
        images, labels = batch
        self._val.append((images[:missing], labels[:missing]))

    def _validation_images(self) -> tuple[Tensor, Tensor] | None:
        if not self._val:
            return None
        return torch.cat([x for x, _ in self._val]), torch.cat([y for _, y in self._val])

    # -- pictures -------------------------------------------------------------------------------

    @staticmethod
    def _training_images(trainer: L.Trainer) -> Callable[[], Tensor]:
        """The training images of the trainer's data module, read only if a sampler fitted to the model asks."""
        def images() -> Tensor:
            datamodule = trainer.datamodule
            if datamodule is None or not hasattr(datamodule, "fit_images"):
                raise UserError("a sampler of callbacks.prior_grid.samplers is fitted to the training images: train "
                                "with vae_lightning's data module, or remove it from the samplers")
            return datamodule.fit_images()
        return images

    def current_noise(self, pl_module: VAEModule) -> dict[str, Tensor]:
        """Sampler name -> its fixed noise [n_samples, latent_dim] under the current weights (see `setup`)."""
        return {s.name: self.noise[s.name] if s.name in self.noise else fixed_noise(s, self.n_samples, self.seed)
                for s in self.samplers}

    def sample_grids(self, pl_module: VAEModule) -> dict[str, Tensor]:
        """Tag -> grid of each sampler's fixed noise decoded by the current weights."""
        noise = self.current_noise(pl_module)
        # one decoder pass for all samplers
        images = pl_module.decode(torch.cat([z.to(pl_module.device) for z in noise.values()]))
        return {f"samples/{name}": image_grid(chunk, self.nrow)
                for name, chunk in zip(noise, images.split(self.n_samples), strict=True)}

    def _title(self, sampler: LatentDistribution, pl_module: VAEModule) -> str:
        return f"{sampler.label} (prior)" if same_distribution(sampler, pl_module.prior) else sampler.label

    def _sample_images(self, pl_module: VAEModule) -> dict[str, Tensor]:
        grids = self.sample_grids(pl_module)
        panels = [(self._title(s, pl_module), grids[f"samples/{s.name}"]) for s in self.samplers]
        images = {**grids, "samples/comparison": panel_figure(panels, ncols=min(len(panels), 2))}
        val = self._validation_images()
        if val is not None:
            x = val[0][: self.n_reconstructions]
            decoded = pl_module.decode(pl_module.encode(x).mean)
            images["space/reconstructions"] = reconstruction_grid(x, decoded, self.nrow)
        return images

    def manifold_axes(self, prior: LatentDistribution) -> Tensor:
        """[manifold_size, 2] latent values along each axis of the manifold: the prior's quantiles at the
        centres of equal-mass bins, or, without quantiles, equal steps between the marginal quantiles of
        the first and last bin centre (estimated from seeded draws)."""
        centres = grid_quantiles(self.manifold_size)
        if has_quantiles(prior):
            return prior.icdf(centres.unsqueeze(1).expand(self.manifold_size, 2)).cpu()
        ends = torch.quantile(prior.sample(20_000, torch.Generator().manual_seed(self.seed)).float().cpu(),
                              centres[[0, -1]], dim=0)
        return ends[0] + (ends[1] - ends[0]) * torch.linspace(0, 1, self.manifold_size).unsqueeze(1)

    def _region(self, sampler: LatentDistribution, pl_module: VAEModule) -> tuple[str, Tensor]:
        box = central_box(sampler, self.region_mass, self.seed)
        title = self._title(sampler, pl_module)
        if not has_quantiles(sampler):  # the box of marginal quantiles: say what it really holds
            title += f" ({box_mass(sampler, box, self.seed):.0%})"
        return title, box.cpu()

    def _latent_images(self, pl_module: VAEModule) -> dict[str, Tensor]:
        prior, size = pl_module.prior, self.manifold_size
        axes = self.manifold_axes(prior)
        z0, z1 = axes[:, 0], axes[:, 1]
        lattice = torch.stack([z0.repeat(size), z1.flip(0).repeat_interleave(size)], dim=1)  # rows: z1 falling
        grid_kind = "the quantiles" if has_quantiles(prior) else "the central region"
        images = {"space/manifold": manifold_figure(decoded_grid(pl_module, lattice, size, padding=0), z0, z1,
                                                     f"decoded over {grid_kind} of the prior {prior.label}")}
        val = self._validation_images()
        if val is not None:
            x, labels = val[0][: self.scatter_points], val[1][: self.scatter_points]
            codes = pl_module.encode(x).mean.cpu()
            regions = [self._region(s, pl_module) for s in self.samplers]
            images["space/scatter"] = scatter_figure(
                codes, labels.cpu(), regions,
                f"posterior means of {len(x)} validation images; boxes: {self.region_mass:.0%} of each sampler")
        return images

    # -- hook and output ------------------------------------------------------------------------

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch
        last = trainer.max_epochs is not None and epoch + 1 == trainer.max_epochs  # the final pictures, always
        grids_due = last or (epoch + 1) % self.every_n_epochs == 0
        latent_due = pl_module.latent_dim == 2 and (last or (epoch + 1) % self.latent_every_n_epochs == 0)
        if not trainer.is_global_zero or not (grids_due or latent_due):
            return
        start = time.perf_counter()
        epoch_seconds = start - self._epoch_start
        images: dict[str, Tensor] = {}
        with evaluating(pl_module):
            fit_samplers(self.samplers, pl_module, self._training_images(trainer))
            if grids_due:
                images.update(self._sample_images(pl_module))
            if latent_due:
                images.update(self._latent_images(pl_module))
        self._write(trainer, images, epoch)
        seconds = time.perf_counter() - start
        log.info("prior grid: %d images for epoch %d in %.2f s (%.1f%% of the epoch's %.2f s of training and "
                 "validation)", len(images), epoch, seconds, 100 * seconds / epoch_seconds, epoch_seconds)

    def _write(self, trainer: L.Trainer, images: dict[str, Tensor], epoch: int) -> None:
        subdir = f"epoch_{epoch:03d}"
        folder = self.dirpath / subdir if self.dirpath is not None else None
        log_images(trainer.loggers, images, trainer.global_step, f"samples/{subdir}", folder)
