"""Train a VAE: `python -m vae_lightning.train [overrides]`.

Composes `conf/train.yaml`, instantiates data, prior, module, KL schedule, callbacks, logger and
trainer from it, fits, then tests the best checkpoint. With `ckpt_path=<run>/checkpoints/x.ckpt`
it resumes that run: the run's own saved config plus this command's overrides, same folder.

Errors that are the user's to fix are one line `error: ...` and exit status 2; an interrupted run
prints the command that resumes it and exits 130 (SIGINT) or 143 (SIGTERM) (see cli.py).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.accelerators import CPUAccelerator
from omegaconf import DictConfig, OmegaConf

from vae_lightning import cli, hparams, parallelism, sweep
from vae_lightning.callbacks import KLAnnealing
from vae_lightning.checkpoint import (
    STORED_SECTIONS,
    RunConfig,
    build_module,
    check_compatible,
    load_checkpoint,
    run_dir_of,
)
from vae_lightning.config import apply_overrides, latest_run_config, register_resolvers
from vae_lightning.errors import build
from vae_lightning.reliability import AtomicCheckpointIO, NonFiniteGuard, RandomState

log = logging.getLogger(__name__)
register_resolvers()

EXAMPLES = (
    "python -m vae_lightning.train",
    "python -m vae_lightning.train prior=beta prior.alpha=4 prior.beta=3 annealing=linear trainer.max_epochs=30",
    "python -m vae_lightning.train experiment=study data.root=/data/mnist",
    "python -m vae_lightning.train -m prior=normal,gaussian,beta seed=1,2,3",
    f"python -m vae_lightning.train ckpt_path={cli.EXAMPLE_RUN}/checkpoints/last.ckpt trainer.max_epochs=40",
)


def resume_config(cfg: DictConfig) -> DictConfig:
    """For a checkpoint inside a run folder: that run's config with this command's overrides.

    Saves the result as this resume's `config.yaml` (replacing Hydra's composition of today's
    files), so the run folder records what each segment of training really used.
    """
    run = run_dir_of(cfg.ckpt_path) if cfg.get("ckpt_path") else None
    if run is None or not HydraConfig.initialized():
        return cfg
    hydra_cfg = HydraConfig.get()
    this_resume = Path(hydra_cfg.runtime.output_dir) / hydra_cfg.output_subdir
    merged = apply_overrides(latest_run_config(run, exclude=this_resume), cfg, list(hydra_cfg.overrides.task))
    OmegaConf.save(merged, this_resume / "config.yaml")
    log.info("Resuming %s from %s with its own config", run, cfg.ckpt_path)
    return merged


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit (and test) as `cfg` says; returns the final callback metrics as floats.

    Everything the user can get wrong is checked before the trainer exists and anything is
    written: the Trainer's settings (cli.TRAINER_SETTINGS), the checkpoint file, every parameter
    (by building its object), whether the checkpoint fits the config, and the data files.
    """
    cli.check_settings(cfg, cli.TRAINER_SETTINGS)
    checkpoint = load_checkpoint(cfg.ckpt_path) if cfg.get("ckpt_path") else None
    stored = {s: OmegaConf.to_container(cfg[s], resolve=True) for s in STORED_SECTIONS}

    parallelism.set_threads(cfg.get("threads", "auto"))
    L.seed_everything(cfg.seed, workers=True)
    datamodule = build(cfg.data, "data")
    module = build_module(cfg)
    # RandomState and NonFiniteGuard are part of what a checkpoint means, like the KL schedule
    annealing = KLAnnealing(build(cfg.annealing, "annealing"))
    callbacks = [annealing, RunConfig(stored), RandomState(), NonFiniteGuard()]
    callbacks += [build(c, f"callbacks.{k}") for k, c in (cfg.get("callbacks") or {}).items() if c is not None]
    loggers = [build(c, f"logger.{k}") for k, c in (cfg.get("logger") or {}).items() if c is not None]
    if checkpoint is not None:
        check_compatible(checkpoint, stored, cfg.ckpt_path)
    datamodule.prepare_data()
    datamodule.setup("fit")  # reads and checks the data files; Lightning's later calls find them loaded

    trainer: L.Trainer = build(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers,
                               plugins=[AtomicCheckpointIO()])
    parallelism.check_strategy(trainer)

    with cached_cuda_check(isinstance(trainer.accelerator, CPUAccelerator)):
        if cfg.get("train"):
            trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        if cfg.get("test"):
            best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
            if not cfg.get("train"):
                best = cfg.get("ckpt_path") or ""
            log.info("Testing %s", best or "the current weights")
            trainer.test(module, datamodule=datamodule, ckpt_path=best or None)
            metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    params = hparams.hyperparameters(cfg, module, annealing.schedule)
    hparams.log_hyperparameters(trainer.loggers, params, metrics, trainer.global_step)
    return metrics


@contextmanager
def cached_cuda_check(active: bool = True) -> Iterator[None]:
    """With `active`: torch's own, cached answer to `torch.cuda.is_available()` for the block.

    Importing Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1, so that probing for GPUs does not
    initialise CUDA in a process that may fork. torch's Adam asks `torch.cuda.is_available()` at
    every step (its graph-capture check), and with that variable each answer loads the NVML
    library through ctypes again: about 2.5% of a training step of the study's model on this
    CPU (py-spy; README, "Speed"). A CPU run never uses CUDA, so `train` unsets the variable
    during its fit and test; it is put back afterwards.
    """
    name = "PYTORCH_NVML_BASED_CUDA_CHECK"
    saved = os.environ.get(name)
    if active:
        os.environ.pop(name, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[name] = saved


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Returns the configured `optimized_metric` for Hydra's sweepers (NaN for a failed sweep job)."""
    if sweep.in_multirun():  # a failure is recorded in the job's folder and the sweep goes on
        return sweep.optimized_value(sweep.run_job(lambda: train(resume_config(cfg))), cfg.get("optimized_metric"))
    metrics = cli.run_task(lambda: train(resume_config(cfg)))
    metric = cfg.get("optimized_metric")
    return metrics.get(metric) if metric else None


if __name__ == "__main__":
    cli.run(main, __doc__, EXAMPLES)
