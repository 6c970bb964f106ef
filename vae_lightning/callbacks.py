"""Lightning callbacks: the KL-weight schedule and the prior-comparison pictures (the run's config
inside its checkpoints is checkpoint.RunConfig)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.compat.proto.summary_pb2 import Summary
from torch import Tensor, nn

from vae_lightning import metrics
from vae_lightning.annealing import Schedule
from vae_lightning.errors import UserError, require
from vae_lightning.module import VAEModule
from vae_lightning.plots import (
    decoded_grid,
    image_grid,
    manifold_figure,
    panel_figure,
    png_bytes,
    reconstruction_grid,
    scatter_figure,
)
from vae_lightning.priors import LatentDistribution, has_quantiles, seeded
from vae_lightning.samplers import (
    box_mass,
    build_samplers,
    central_box,
    fixed_noise,
    grid_quantiles,
    needs_fit,
    same_distribution,
)

log = logging.getLogger(__name__)


class KLAnnealing(Callback):
    """Sets `module.kl_weight = schedule(t)` before every training step, t from the global step.

    Epoch-unit schedules need the number of optimizer steps per epoch; it is fixed at the first
    fit and saved in the checkpoint, together with the schedule's parameters, so that a resumed
    run continues the very same curve (also when, e.g., `trainer.max_epochs` was raised and a
    cyclical schedule's `total` follows it by interpolation).
    """

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule
        self.steps_per_epoch: int | None = None

    def progress(self, global_step: int) -> float:
        """Training progress in the schedule's unit."""
        if self.schedule.unit == "step":
            return float(global_step)
        assert self.steps_per_epoch is not None, "steps_per_epoch is set in on_train_start"
        return global_step / self.steps_per_epoch

    def weight_at(self, global_step: int) -> float:
        return self.schedule(self.progress(global_step))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.steps_per_epoch is None:
            batches = trainer.num_training_batches
            if not math.isfinite(batches):
                raise ValueError("epoch-unit KL schedules need a sized training dataloader")
            self.steps_per_epoch = max(1, math.ceil(batches / trainer.accumulate_grad_batches))
        pl_module.kl_weight = self.weight_at(trainer.global_step)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        pl_module.kl_weight = self.weight_at(trainer.global_step)

    def state_dict(self) -> dict[str, Any]:
        return {"steps_per_epoch": self.steps_per_epoch, "schedule": type(self.schedule).__name__,
                "params": dict(vars(self.schedule))}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.steps_per_epoch = state_dict["steps_per_epoch"]
        if state_dict["schedule"] != type(self.schedule).__name__:
            raise UserError(f"the checkpoint was trained with the {state_dict['schedule']} KL schedule, "
                            f"not {type(self.schedule).__name__}; resume it with its own annealing config")
        if state_dict["params"] != vars(self.schedule):
            log.warning("KL schedule: continuing the checkpoint's %s, not the config's %s",
                        state_dict["params"], vars(self.schedule))
            vars(self.schedule).update(state_dict["params"])


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


class Diagnostics(Callback):
    """Posterior-collapse diagnostics, once per validation epoch, on the first `n_images` validation images
    (the loader is not shuffled: the same images every epoch), logged as epoch metrics:

    - `diagnostics/active_units`: dimensions whose posterior mean varies over the images by more than
      `active_units_threshold` (evaluate's threshold, metrics.ACTIVE_UNITS_THRESHOLD, by default);
    - `diagnostics/mutual_information`: I(x; z) under q in nats (metrics.mutual_information; at most
      log n_images);
    - `diagnostics/kl/<i>`: the KL of dimension i, for the first `max_kl_dims` dimensions, when the
      prior's KL is analytic per dimension (a Monte Carlo KL of the whole vector, mog and vamp, has no
      per-dimension split). Above the cap the other dimensions are not logged (one log line says so);
      evaluate reports every dimension.

    The latent draw behind the estimate comes from a forked global RNG reseeded with `seed`, so training
    is the same with and without this callback. Each process computes on its own validation images and
    the values are averaged over processes.
    """

    def __init__(self, n_images: int = 1000, active_units_threshold: float = metrics.ACTIVE_UNITS_THRESHOLD,
                 max_kl_dims: int = 16, seed: int = 0) -> None:
        for key, value in (("n_images", n_images), ("max_kl_dims", max_kl_dims)):
            require(isinstance(value, int) and value >= 1, key, value, "an integer >= 1")
        require(active_units_threshold > 0, "active_units_threshold", active_units_threshold, "a number > 0")
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
            count, _ = metrics.active_units(q.mean, self.threshold)
            out = {"diagnostics/active_units": float(count),
                   "diagnostics/mutual_information": metrics.mutual_information(q, z)}
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


class PriorGrid(Callback):
    """The study's comparison, drawn while training: the model decoded under several samplers.

    Every `every_n_epochs` epochs: one grid per sampler (tag `samples/<name>`) decoded from fixed
    noise, all of them in one labelled figure (`samples/comparison`), and fixed validation images
    above their reconstructions (`reconstructions`, from the posterior mean). Every
    `latent_every_n_epochs` epochs, for a 2-D latent: the decoder over a grid of the prior's
    quantiles, or of its central region when it has none (`latent/manifold`), and the validation
    codes coloured by digit with each sampler's central `region_mass` box (`latent/scatter`). Both
    sets are also drawn at the last epoch. Samplers fitted to the model (`samplers.needs_fit`) are
    refitted to the training images of the trainer's data module before each drawing.

    Images go to every TensorBoard logger (step = global step) and, with `dirpath`, to
    `<dirpath>/epoch_<k>/<tag with / as _>.png`. Nothing here draws from the global RNG (the
    noise comes from its own generator, `samplers.fixed_noise`; codes and reconstructions use the
    posterior mean), so training is the same with and without this callback; only the global-zero
    process draws.

    `samplers` are config entries without `latent_dim` (conf/samplers/), built at setup for the
    model's latent size; the model's own prior is added unless one of them is its distribution.
    """

    def __init__(self, samplers: Mapping[str, Any] | None = None, dirpath: str | None = None,
                 every_n_epochs: int = 1, latent_every_n_epochs: int = 5, n_samples: int = 64, nrow: int = 8,
                 seed: int = 0, n_reconstructions: int = 32, manifold_size: int = 20,
                 scatter_points: int = 5000, region_mass: float = 0.9) -> None:
        for key, value in (("every_n_epochs", every_n_epochs), ("latent_every_n_epochs", latent_every_n_epochs),
                           ("n_samples", n_samples), ("nrow", nrow), ("n_reconstructions", n_reconstructions),
                           ("manifold_size", manifold_size), ("scatter_points", scatter_points)):
            require(isinstance(value, int) and value >= 1, key, value, "an integer >= 1")
        require(0 < region_mass < 1, "region_mass", region_mass, "a number in (0, 1)")
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

    def _fit(self, trainer: L.Trainer, pl_module: VAEModule) -> None:
        """Fit the samplers that are fitted to the model (aggregate posterior, GMM) to its current weights."""
        fitted = [s for s in self.samplers if needs_fit(s)]
        if not fitted:
            return
        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "fit_images"):
            raise UserError(f"samplers {', '.join(s.name for s in fitted)} are fitted to the training images: "
                            "train with vae_lightning's data module, or remove them from samplers")
        images = datamodule.fit_images()
        for sampler in fitted:
            sampler.to(pl_module.device).fit(pl_module, images)

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
        images = {**grids, "samples/comparison": panel_figure(panels, ncols=min(len(panels), 4))}
        val = self._validation_images()
        if val is not None:
            x = val[0][: self.n_reconstructions]
            images["reconstructions"] = reconstruction_grid(x, pl_module.decode(pl_module.encode(x).mean), self.nrow)
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
        images = {"latent/manifold": manifold_figure(decoded_grid(pl_module, lattice, size, padding=0), z0, z1,
                                                     f"decoded over {grid_kind} of the prior {prior.label}")}
        val = self._validation_images()
        if val is not None:
            x, labels = val[0][: self.scatter_points], val[1][: self.scatter_points]
            codes = pl_module.encode(x).mean.cpu()
            regions = [self._region(s, pl_module) for s in self.samplers]
            images["latent/scatter"] = scatter_figure(
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
            self._fit(trainer, pl_module)
            if grids_due:
                images.update(self._sample_images(pl_module))
            if latent_due:
                images.update(self._latent_images(pl_module))
        self._write(trainer, images, epoch)
        seconds = time.perf_counter() - start
        log.info("prior grid: %d images for epoch %d in %.2f s (%.1f%% of the epoch's %.2f s of training and "
                 "validation)", len(images), epoch, seconds, 100 * seconds / epoch_seconds, epoch_seconds)

    def _write(self, trainer: L.Trainer, images: dict[str, Tensor], epoch: int) -> None:
        """Each image encoded once; the same PNG goes into every TensorBoard event file (as
        `add_image` would write it, without its resize and second encoding) and the epoch's folder."""
        pngs = {tag: png_bytes(image) for tag, image in images.items()}
        summary = Summary(value=[
            Summary.Value(tag=tag, image=Summary.Image(height=images[tag].shape[1], width=images[tag].shape[2],
                                                       colorspace=3, encoded_image_string=png))
            for tag, png in pngs.items()])
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                # the FileWriter behind SummaryWriter (torch and tensorboardX alike): it takes summaries
                logger.experiment._get_file_writer().add_summary(summary, trainer.global_step)
        if self.dirpath is not None:
            folder = self.dirpath / f"epoch_{epoch:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            for tag, png in pngs.items():
                (folder / f"{tag.replace('/', '_')}.png").write_bytes(png)
