"""A run's hyperparameters in TensorBoard's HPARAMS tab: the same few names for every run, recorded
with its final validation and test metrics."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.loggers import Logger, TensorBoardLogger
from omegaconf import DictConfig, OmegaConf
from torch.utils.tensorboard.summary import hparams

from vae_lightning.annealing import Schedule
from vae_lightning.module import VAEModule


def hyperparameters(cfg: DictConfig, module: VAEModule, schedule: Schedule) -> dict[str, Any]:
    """The run's hyperparameters for TensorBoard's HPARAMS tab: the prior and the KL schedule with their
    parameters, the networks (kind, sizes, activation), the likelihood, latent size, learning rate, seed.

    The same seven names for every run: TensorBoard takes the table's columns from the first run it
    reads, so a per-family name such as `prior.alpha` would be missing whenever a normal-prior run
    came first. The prior is its label (`Beta(4, 3)`), the schedule its repr with every parameter, the
    model its networks' labels (`mlp 784-400-200-2 leaky_relu / mlp 2-200-400-784 leaky_relu`).
    """
    return {"prior": module.prior.label, "model": module.architecture, "likelihood": module.likelihood.name,
            "annealing": repr(schedule), "latent_dim": cfg.model.latent_dim,
            "lr": OmegaConf.select(cfg, "model.optimizer.lr"), "seed": cfg.seed}


def log_hyperparameters(loggers: list[Logger], params: dict[str, Any], metrics: dict[str, float],
                        step: int) -> None:
    """Record `params` with the run's final validation and test metrics.

    TensorBoard's HPARAMS tab reads the hyperparameters from the session summary written here and
    each metric's value from the last point of the scalar with the same tag (`val/elbo`, ...),
    which training already logged: no scalar point is written here (a repeated point would give a
    resumed run's curves extra values). Called after training, so the logger's writer is closed
    again afterwards.
    """
    final = {k: v for k, v in metrics.items() if k.startswith(("val/", "test/"))}
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            writer = logger.experiment._get_file_writer()  # the run's own events file, no subfolder
            for summary in hparams(params, final):
                writer.add_summary(summary, step)
        else:
            logger.log_hyperparams(params)
        logger.finalize("success")
