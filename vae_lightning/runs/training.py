"""Training as a config says (the library half of `python -m vae_lightning.train`, which `bench` times
too): build data, model, KL schedule, callbacks, loggers and Trainer from the composed config, fit,
then test the best checkpoint. Resuming a run folder's checkpoint uses that run's own saved config
plus the command's overrides (`resume_config`).

This module sits at the top of the runs: it puts the callbacks (callbacks/, every one chosen in
conf/callbacks/) and the run policies (runs/) together. What comes after training on a floor above it (the
explorer's page of the run) is passed in by the train command (`train(cfg, page)`).
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
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_class
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig, OmegaConf

from vae_lightning import tracking
from vae_lightning.callbacks import KLAnnealing, RunConfig
from vae_lightning.checkpoints import CKPT_PATH, AtomicCheckpointIO, check_compatible, load_checkpoint, stored_sections
from vae_lightning.core import console, rng
from vae_lightning.core.building import build
from vae_lightning.core.checks import SEED, Check, check_settings, integer, is_integer
from vae_lightning.core.errors import ResourcesExhausted, UserError, WriteFailed
from vae_lightning.core.files import EXHAUSTED, causes, resource_error
from vae_lightning.evaluation.metrics import HPARAMS, columns
from vae_lightning.launchers import slurm
from vae_lightning.model.building import build_module
from vae_lightning.model.likelihoods import check_targets
from vae_lightning.runs import sweep, threads
from vae_lightning.runs.folders import CONF_DIR, apply_overrides, latest_run_config, run_dir_of
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
# What comes after training on a floor above the runs: (run folder, config, data module) -> the page written, if
# any (the train command passes the explorer's, explorer.sources.write_trained_page)
PageWriter = Callable[[Path, DictConfig, L.LightningDataModule], "Path | None"]
# The callbacks every run needs, with why: a run without one is refused in one line (conf/callbacks/none.yaml, the
# set without any optional callback, keeps them). The others may be removed (`callbacks.<name>=null`).
REQUIRED_CALLBACKS: dict[type[Callback], tuple[str, str]] = {
    KLAnnealing: ("kl_annealing", "the KL weight of every step is part of the objective"),
    RunConfig: ("run_config", "a checkpoint without the config sections that define its model cannot be loaded"),
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
    merged = apply_overrides(with_checkpoint_callbacks(latest_run_config(run, exclude=this_resume)), cfg,
                             list(hydra_cfg.overrides.task))
    OmegaConf.save(merged, this_resume / "config.yaml")
    log.info("Resuming %s from %s with its own config", run, cfg.ckpt_path)
    return merged


def with_checkpoint_callbacks(saved: DictConfig) -> DictConfig:
    """A run folder's saved config, with the callbacks of conf/callbacks/none.yaml put first when it has no
    `callbacks.kl_annealing` (a config written before those callbacks were chosen in YAML, when training built
    them itself), so that it resumes with the callbacks it was trained with, in the same order."""
    callbacks = saved.get("callbacks")
    if callbacks is None or "kl_annealing" in callbacks:
        return saved
    saved.callbacks = {**OmegaConf.load(CONF_DIR / "callbacks" / "none.yaml"), **callbacks}
    return saved


def build_callbacks(cfg: DictConfig, stored: dict[str, Any], keep: Callable[[str], bool] = lambda _: True,
                    ) -> list[Callback]:
    """The callbacks of `cfg.callbacks` (conf/callbacks/) whose name `keep` accepts, in their order. Two get what
    only the run knows, once the config chose them: KLAnnealing the schedule built from `annealing` (an argument),
    RunConfig the config sections a checkpoint stores (`stored`, set on it after it is built). One of
    REQUIRED_CALLBACKS missing: a one-line UserError."""
    schedule = build(cfg.annealing, "annealing")
    callbacks = []
    with rng.stream(cfg.seed, "callbacks"):  # samplers that pictures draw (a flow's weights) shift no other stream
        for name, node in (cfg.get("callbacks") or {}).items():
            if node is not None and keep(name):
                args = {"schedule": schedule} if _builds(node, KLAnnealing) else {}
                callbacks.append(build(node, f"callbacks.{name}", **args))
    for callback in callbacks:
        if isinstance(callback, RunConfig):
            callback.sections = stored
    for cls, (name, why) in REQUIRED_CALLBACKS.items():
        if not any(isinstance(c, cls) for c in callbacks):
            raise UserError(f"the callbacks lack {cls.__name__} ({why}): put back callbacks.{name} "
                            "(conf/callbacks/none.yaml has it), or use callbacks=none for no optional callbacks")
    return callbacks


def _builds(node: Any, cls: type) -> bool:
    """Whether a config node's `_target_` is `cls` or a subclass of it."""
    try:
        return issubclass(get_class(node["_target_"]), cls)
    except Exception:  # noqa: BLE001 - no or a bad _target_: building it says what is wrong
        return False


def train(cfg: DictConfig, page: PageWriter | None = None) -> dict[str, float]:
    """Fit (and test) as `cfg` says; returns the final callback metrics as floats. With `cfg.explore`, `page` writes
    the run's page after training (the train command gives the explorer's).

    Everything the user can get wrong is checked before the trainer exists and anything is
    written: the Trainer's settings (TRAINER_SETTINGS), the checkpoint file, every parameter
    (by building its object), whether the checkpoint fits the config, and the data files.
    """
    start = time.perf_counter()
    console.route_library_logs()
    console.quiet_warnings(console.is_verbose(cfg.get("verbose")))
    check_settings(cfg, TRAINER_SETTINGS)
    checkpoint = load_checkpoint(cfg.ckpt_path) if cfg.get("ckpt_path") else None
    stored = stored_sections(cfg)
    # first: a logger whose package is missing (logger=mlflow without the extra) is bad input too
    loggers = [build(c, f"logger.{k}") for k, c in (cfg.get("logger") or {}).items() if c is not None]

    threads.set_threads(cfg.get("threads", "auto"))
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = build(cfg.data, "data")
    module = build_module(cfg, seed=cfg.seed)
    callbacks = build_callbacks(cfg, stored)
    annealing = next(c for c in callbacks if isinstance(c, KLAnnealing))
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
            tracking.log_hyperparameters(trainer.loggers, params, metrics, trainer.global_step,
                                         columns(HPARAMS))
            best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
            written = page(output, cfg, datamodule) if page and cfg.get("explore") and not other_rank() else None
            for line in summary_lines(output, metrics, best, time.perf_counter() - start, cfg, written):
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
