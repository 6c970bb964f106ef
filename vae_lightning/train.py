"""Train a VAE: `python -m vae_lightning.train [overrides]`.

Composes `conf/train.yaml`, instantiates data, prior, module, KL schedule, callbacks, logger and
trainer from it, fits, then tests the best checkpoint. With `ckpt_path=<run>/checkpoints/x.ckpt`
it resumes that run: the run's own saved config plus this command's overrides, same folder.

Errors that are the user's to fix are one line `error: ...` and exit status 2; an interrupted run
prints the command that resumes it and exits 130 (SIGINT) or 143 (SIGTERM).
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.accelerators import CPUAccelerator
from omegaconf import DictConfig, OmegaConf

from vae_lightning import sweep
from vae_lightning.callbacks import KLAnnealing, RunConfig
from vae_lightning.checkpoint import check_compatible, load_checkpoint, run_dir_of
from vae_lightning.config import apply_overrides, latest_run_config, register_resolvers
from vae_lightning.errors import Interrupted, RunStopped, build, exit_on_user_error, require, run_hydra_main
from vae_lightning.reliability import AtomicCheckpointIO, NonFiniteGuard, RandomState

log = logging.getLogger(__name__)
T = TypeVar("T")
register_resolvers()

# Config sections that define what a checkpoint is; stored in it (see callbacks.RunConfig).
STORED_SECTIONS = ("model", "prior", "likelihood", "annealing", "data")


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
    written: the checkpoint file, every parameter (by building its object), whether the
    checkpoint fits the config, and the data files.
    """
    checkpoint = load_checkpoint(cfg.ckpt_path) if cfg.get("ckpt_path") else None
    require(isinstance(cfg.model.latent_dim, int) and cfg.model.latent_dim >= 1, "model.latent_dim",
            cfg.model.latent_dim, "an integer >= 1")
    stored = {s: OmegaConf.to_container(cfg[s], resolve=True) for s in STORED_SECTIONS}

    sweep.set_threads(cfg.get("threads", "auto"))
    L.seed_everything(cfg.seed, workers=True)
    datamodule = build(cfg.data, "data")
    prior = build(cfg.prior, "prior")
    module = build(cfg.model, "model", prior=prior, likelihood=build(cfg.likelihood, "likelihood"))
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
    sweep.check_strategy(trainer)

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
    hparams = sweep.hyperparameters(cfg, module, annealing.schedule)
    sweep.log_hyperparameters(trainer.loggers, hparams, metrics, trainer.global_step)
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


def discard_unstarted_run() -> None:
    """After a bad-input error: remove what Hydra created for this command (a new run folder, or
    this resume's `.hydra/resume_*`), unless training already wrote checkpoints into it."""
    hydra_cfg = HydraConfig.get()
    output = Path(hydra_cfg.runtime.output_dir)
    resumed = hydra_cfg.output_subdir != ".hydra"
    target = output / hydra_cfg.output_subdir if resumed else output
    if resumed or not (output / "checkpoints").exists():
        logging.shutdown()  # release the job's log file before its folder goes
        shutil.rmtree(target, ignore_errors=True)


def resume_command(ckpt_path: str) -> str:
    """The command that resumes a checkpoint of a run folder (the folder holds the run's config)."""
    return f"python -m vae_lightning.train {shlex.quote(f'ckpt_path={Path(ckpt_path).absolute()}')}"


def run_or_exit(task: Callable[[], T]) -> T:
    """Run a command's `task`; bad input ends it with one `error: ...` line and exit status 2
    (the traceback only with HYDRA_FULL_ERROR=1), leaving no new run folder behind; an interrupted
    or stopped run prints one line (with the command that resumes it) and exits non-zero."""
    try:
        with exit_on_user_error(cleanup=discard_unstarted_run):
            return task()
    except Interrupted as err:
        print(f"{err}; resume with: {resume_command(err.ckpt_path)}", file=sys.stderr)
        raise SystemExit(err.exit_code) from None
    except RunStopped as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(err.exit_code) from None


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Returns the configured `optimized_metric` for Hydra's sweepers (NaN for a failed sweep job)."""
    if sweep.in_multirun():  # a failure is recorded in the job's folder and the sweep goes on
        return sweep.optimized_value(sweep.run_job(lambda: train(resume_config(cfg))), cfg.get("optimized_metric"))
    metrics = run_or_exit(lambda: train(resume_config(cfg)))
    metric = cfg.get("optimized_metric")
    return metrics.get(metric) if metric else None


if __name__ == "__main__":
    run_hydra_main(main)
