"""Training as a config says (the library half of `python -m vae_lightning.train`, which `bench` times
too): build data, model, KL schedule, callbacks, loggers and Trainer from the composed config, fit,
then test the best checkpoint. Resuming a run folder's checkpoint uses that run's own saved config
plus the command's overrides (`resume_config`).

This module sits at the top of the library: it puts the callbacks (callbacks/) and the run policies
(runs/) together.
"""

from __future__ import annotations

import errno
import logging
import shlex
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from functools import partial
from pathlib import Path

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.accelerators import CPUAccelerator
from omegaconf import DictConfig, OmegaConf

from vae_lightning import tracking
from vae_lightning.callbacks import KLAnnealing, NonFiniteGuard, RandomState, RunConfig
from vae_lightning.core import rng
from vae_lightning.core.building import build
from vae_lightning.core.checks import SEED, Check, check_settings, integer, is_integer
from vae_lightning.core.errors import ResourcesExhausted, WriteFailed
from vae_lightning.core.files import EXHAUSTED, causes, resource_error
from vae_lightning.explorer import PageSettings
from vae_lightning.explorer.sources import PAGE_NAME, write_run_page
from vae_lightning.launchers import slurm
from vae_lightning.model.likelihoods import check_targets
from vae_lightning.runs import console, sweep, threads
from vae_lightning.runs.checkpoint import (
    CKPT_PATH,
    STORED_SECTIONS,
    build_module,
    check_compatible,
    load_checkpoint,
)
from vae_lightning.runs.checkpoint_io import AtomicCheckpointIO
from vae_lightning.runs.folders import apply_overrides, latest_run_config, run_dir_of
from vae_lightning.runs.lock import other_rank, run_lock

log = logging.getLogger(__name__)

_BATCHES = Check(lambda v: (is_integer(v) and v >= 0) or (isinstance(v, float) and 0 <= v <= 1),
                 "a fraction in [0, 1] or a number of batches >= 0")
# Lightning Trainer arguments checked before anything is built: Lightning itself finds a bad value
# late (after data and model exist) or only as an assertion inside its loops.
TRAINER_SETTINGS: dict[str, Check] = {
    "trainer.max_epochs": integer(-1, note=" (-1: no limit)").or_null(),
    "trainer.min_epochs": integer(0).or_null(),
    "trainer.max_steps": integer(-1, note=" (-1: no limit)"),
    "trainer.devices": Check(lambda v: v == "auto" or (is_integer(v) and (v >= 1 or v == -1))
                             or (isinstance(v, list) and len(v) > 0 and all(is_integer(i) and i >= 0 for i in v)),
                             "an integer >= 1, -1 (all), auto, or a list of device indices such as [0,1]"),
    "trainer.num_nodes": integer(1),
    "trainer.limit_train_batches": _BATCHES,
    "trainer.limit_val_batches": _BATCHES,
    "trainer.limit_test_batches": _BATCHES,
    "trainer.check_val_every_n_epoch": integer(1).or_null(),
    "trainer.log_every_n_steps": integer(0),
    "trainer.accumulate_grad_batches": integer(1),
    "seed": SEED,
    "ckpt_path": CKPT_PATH.or_null("a new run"),
    "explore": Check(lambda v: isinstance(v, bool), "true or false"),
}


def resume_config(cfg: DictConfig) -> DictConfig:
    """For a checkpoint inside a run folder: that run's config with this command's overrides.

    Saves the result as this resume's `config.yaml` (replacing Hydra's composition of today's
    files), so the run folder records what each segment of training really used.
    """
    check_settings(cfg, {"ckpt_path": TRAINER_SETTINGS["ckpt_path"]})
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
    written: the Trainer's settings (TRAINER_SETTINGS), the checkpoint file, every parameter
    (by building its object), whether the checkpoint fits the config, and the data files.
    """
    start = time.perf_counter()
    console.route_library_logs()
    console.quiet_warnings(console.is_verbose(cfg.get("verbose")))
    check_settings(cfg, TRAINER_SETTINGS)
    checkpoint = load_checkpoint(cfg.ckpt_path) if cfg.get("ckpt_path") else None
    stored = {s: OmegaConf.to_container(cfg[s], resolve=True) for s in STORED_SECTIONS}
    # first: a logger whose package is missing (logger=mlflow without the extra) is bad input too
    loggers = [build(c, f"logger.{k}") for k, c in (cfg.get("logger") or {}).items() if c is not None]

    threads.set_threads(cfg.get("threads", "auto"))
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = build(cfg.data, "data")
    module = build_module(cfg, seed=cfg.seed)
    # RandomState and NonFiniteGuard are part of what a checkpoint means, like the KL schedule
    annealing = KLAnnealing(build(cfg.annealing, "annealing"))
    callbacks = [annealing, RunConfig(stored), RandomState(), NonFiniteGuard()]
    with rng.stream(cfg.seed, "callbacks"):  # samplers that pictures draw (a flow's weights) shift no other stream
        callbacks += [build(c, f"callbacks.{k}") for k, c in (cfg.get("callbacks") or {}).items() if c is not None]
    check_targets(module.likelihood, datamodule.binarize)
    if checkpoint is not None:
        check_compatible(checkpoint, stored, cfg.ckpt_path)
    datamodule.prepare_data()
    datamodule.setup("fit")  # reads and checks the data files; Lightning's later calls find them loaded

    output = Path(HydraConfig.get().runtime.output_dir if HydraConfig.initialized()
                  else cfg.trainer.get("default_root_dir") or Path.cwd())
    trainer: L.Trainer | None = None
    with machine_faults(output, cfg, lambda: trainer):  # a full disk, a read-only folder, memory: one line
        # one writer per run folder (runs/lock.py): the process of global rank 0 holds it (DDP's other ranks run
        # this function too, in processes of their own)
        writer = run_lock(output, shlex.join(["python", "-m", "vae_lightning.train", *sys.argv[1:]]))
        with nullcontext() if other_rank() else writer:
            trainer = build(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers,
                            plugins=[AtomicCheckpointIO(), *slurm.cluster_plugins()])
            threads.check_strategy(trainer)
            console.say("%s: %s", "resuming" if checkpoint is not None else "run",
                        run_line(output, module, annealing, cfg, trainer))

            with threads.cached_cuda_check(isinstance(trainer.accelerator, CPUAccelerator)):
                if cfg.get("train"):
                    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
                metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
                if cfg.get("test"):
                    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
                    if not cfg.get("train"):
                        best = cfg.get("ckpt_path") or ""
                    log.info("Testing %s", best or "the current weights")
                    trainer.test(module, datamodule=datamodule, ckpt_path=best or None, verbose=False)
                    metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
            params = tracking.hyperparameters(module, annealing.schedule, OmegaConf.select(cfg, "model.optimizer.lr"),
                                              cfg.get("seed"))
            tracking.log_hyperparameters(trainer.loggers, params, metrics, trainer.global_step)
            best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
            page = explorer_page(output, cfg, datamodule) if cfg.get("explore") and not other_rank() else None
            for line in summary_lines(output, metrics, best, time.perf_counter() - start, cfg, page):
                console.say("%s", line)
            return metrics


@contextmanager
def machine_faults(output: Path, cfg: DictConfig, trainer: Callable[[], L.Trainer | None]) -> Iterator[None]:
    """Training (a run's or a run of members') inside it ends, when the machine stops it (a full disk or quota, a
    read-only folder, memory: `stopped_by_the_machine`), with that one line; `trainer()` is the trainer by then, if
    any. A line that train.log cannot take stops it too (`raise_log_write_errors`)."""
    raise_log_write_errors()
    try:
        yield
    except Exception as err:
        stopped = stopped_by_the_machine(err, output, trainer(), cfg)
        if stopped is None:
            raise
        raise stopped from err


def raise_log_write_errors() -> None:
    """A line that the run's log file (train.log) cannot take for want of space or permission stops the run like a
    checkpoint that cannot be written (logging itself would print a traceback on stderr for every line, and go on)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handleError = partial(_log_write_failed, handler)  # type: ignore[method-assign]


def _log_write_failed(handler: logging.FileHandler, record: logging.LogRecord) -> None:
    cause = resource_error(sys.exc_info()[1])
    if cause is None:
        logging.FileHandler.handleError(handler, record)
        return
    raise WriteFailed(Path(handler.baseFilename), EXHAUSTED[cause.errno]) from cause


def stopped_by_the_machine(err: Exception, output: Path, trainer: L.Trainer | None,
                           cfg: DictConfig) -> ResourcesExhausted | None:
    """Training stopped by the machine (a full disk or quota, a read-only folder, memory), in one line: what failed
    where, the last good checkpoint and its step (intact: checkpoints are written atomically) and how to go on;
    None for any other error."""
    cause = resource_error(err)
    failed = next((e for e in causes(err) if isinstance(e, WriteFailed)), None)  # Hydra's instantiate wraps it
    if failed is not None:
        what = str(failed)
    elif cause is not None:
        what = f"{EXHAUSTED[cause.errno]} in {output}: writing {cause.filename or written_by(cause)} failed"
    elif isinstance(err, torch.OutOfMemoryError) or (isinstance(err, RuntimeError) and any(
            words in str(err) for words in ("can't allocate memory", "out of memory"))):
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        what = f"out of memory {moment(trainer)} ({first[:200]})"
    else:
        return None
    last = output / "checkpoints" / "last.ckpt"
    kept = (f"the last good checkpoint {last} (step {saved_step(last)}) is intact" if last.is_file()
            else "no checkpoint had been written yet")
    again = f"resume with: python -m vae_lightning.train ckpt_path={last}" if last.is_file() else "run it again"
    if cause is None:
        batch = OmegaConf.select(cfg, "data.batch_size")
        smaller = f" data.batch_size={max(1, batch // 2)}" if isinstance(batch, int) and last.is_file() else ""
        how = f"{again}{smaller} (a smaller batch)" if last.is_file() else "use a smaller data.batch_size"
    elif cause.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        how = f"make {output} writable (or copy the run folder where you can write), then {again}"
    else:
        how = f"free some space on that device, then {again}"
    return ResourcesExhausted(f"{what}; {kept}, and nothing half-written is left; {how}")


def written_by(err: OSError) -> str:
    """What a failed write without a file name was writing, from the code it failed in."""
    files = [frame.f_code.co_filename for frame, _ in traceback.walk_tb(err.__traceback__)]
    if any("tensorboard" in f for f in files):
        return "TensorBoard events"
    if any("csv" in f for f in files):
        return "the CSV log"
    return "a file"


def moment(trainer: L.Trainer | None) -> str:
    """When in training an error came, in words."""
    if trainer is None:
        return "before training"
    if trainer.sanity_checking:
        return "in the sanity check before training"
    if trainer.validating:
        return f"in the validation after step {trainer.global_step} (epoch {trainer.current_epoch})"
    if trainer.testing:
        return "in the test"
    return f"in training step {trainer.global_step + 1} (epoch {trainer.current_epoch})"


def saved_step(checkpoint: Path) -> int | str:
    """The global step a checkpoint file holds (read lazily: memory-mapped)."""
    try:
        return int(torch.load(checkpoint, map_location="cpu", weights_only=False, mmap=True).get("global_step", 0))
    except Exception:  # noqa: BLE001 - a line about another error must not fail
        return "unknown"


def explorer_page(output: Path, cfg: DictConfig, datamodule: L.LightningDataModule) -> Path | None:
    """`<run>/explore.html`, the explorer's page of the run's last checkpoint (as `python -m vae_lightning.explore
    ckpt_path=<run>` writes it, from the test images already in memory); None for a run without a last checkpoint
    (debug=fdr) or with a 1-D latent."""
    last = output / "checkpoints" / "last.ckpt"
    if not last.is_file() or cfg.model.latent_dim < 2:  # no plane to show in a 1-D latent
        return None
    settings = PageSettings()
    test = datamodule.splits["test"]
    images = (test.images[: settings.n_points].unsqueeze(1).float().div(255), test.labels[: settings.n_points])
    return write_run_page(output, last, cfg.get("samplers") or {}, settings, lambda _: images, output / PAGE_NAME)


def shown(path: Path | str) -> str:
    """A path as the user would type it: relative to the current folder when it is inside it."""
    path = Path(path).absolute()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def run_line(output: Path, module: L.LightningModule, annealing: KLAnnealing, cfg: DictConfig,
             trainer: L.Trainer) -> str:
    """The run folder and the settings that matter, in one line."""
    return (f"{shown(output)}  prior {module.prior.label}, {module.architecture}, annealing "
            f"{type(annealing.schedule).__name__}, seed {cfg.seed}, device {trainer.strategy.root_device}, "
            f"{torch.get_num_threads()} thread{'s' if torch.get_num_threads() > 1 else ''}")


def summary_lines(output: Path, metrics: dict[str, float], best: str, seconds: float, cfg: DictConfig,
                  page: Path | None = None) -> list[str]:
    """What the run gave and, for a single run, what to do next, with its paths filled in (`page`: the run's
    explorer page)."""
    minutes, rest = divmod(round(seconds), 60)
    took = f"{minutes} min {rest} s" if minutes else f"{rest} s"
    stage = "test" if "test/elbo" in metrics else "val"
    lines = [f"done in {took}"]
    if f"{stage}/elbo" in metrics:
        terms = ", ".join(f"{k} {metrics[f'{stage}/{k}']:.2f}" for k in ("recon", "kl") if f"{stage}/{k}" in metrics)
        lines[0] += f": {stage} elbo {metrics[f'{stage}/elbo']:.2f} nats per image ({terms})"
    if best:
        lines.append(f"best checkpoint (val/elbo): {shown(best)}")
    if sweep.in_multirun():  # a sweep's jobs: the sweep's own closing line says what to open next, once
        return lines
    run = shown(output)
    last = output / "checkpoints" / "last.ckpt"
    lines += ["next:", *([f"  open {shown(page)} in a browser   # the latent-space explorer"] if page else []),
              f"  tensorboard --logdir {run}",
              f"  python -m vae_lightning.evaluate ckpt_path={run}",
              f"  python -m vae_lightning.sample ckpt_path={run}"]
    if last.is_file():
        longer = (cfg.trainer.get("max_epochs") or 0) * 2 or 40
        lines.append(f"  python -m vae_lightning.train ckpt_path={shown(last)} trainer.max_epochs={longer}   # resume, "
                     "train longer")
    return lines
