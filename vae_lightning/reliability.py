"""Not losing work: atomic checkpoint writes, the RNG state in checkpoints, a clean stop on
SIGINT/SIGTERM, mid-epoch checkpoints, and a guard against NaN/inf.

`train.py` always installs `AtomicCheckpointIO`, `RandomState` and `NonFiniteGuard` (they are
part of what a checkpoint means); `LastCheckpoint` is a config callback
(`conf/callbacks/default.yaml`: `callbacks.last_checkpoint.every_n_train_steps`).
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, BinaryIO

import lightning as L
import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import Tensor

from vae_lightning.errors import Interrupted, NonFiniteError, require

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint to `.<name>.tmp-<pid>` in the target's folder, flushes it to the disk,
    then renames it over the target. A rename within a folder is atomic (`os.replace`), so a crash
    or SIGKILL at any moment leaves either the previous complete file or the new complete one,
    never a truncated one. (Lightning's own writer serializes in memory first but then writes the
    target file in place.) The temporary file of a killed writer is removed by the next save of
    the same file. Remote (fsspec) paths are written by Lightning's writer.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path,
                        storage_options: Any | None = None) -> None:
        if not isinstance(get_filesystem(path), LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        target = Path(path)
        write_atomically(target, lambda f: torch.save(checkpoint, f), sync=True)
        remove_stale_temporaries(target)


def write_atomically(path: Path, write: Callable[[BinaryIO], None], sync: bool = False) -> None:
    """Write `path` by `write(file)` into `.<name>.tmp-<pid>` beside it, then rename that over
    `path` (atomic within a folder): readers and crashes see the previous complete file or the new
    one, never a part of it. The temporary file is removed on any failure. `sync`: flush it to the
    disk before the rename (for files whose loss would lose work: checkpoints)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_stale_temporaries(target: Path) -> None:
    """Delete temporary files of `target` left by writers that no longer run (killed mid-save).

    Only on POSIX, where `os.kill(pid, 0)` tells whether a process exists (on Windows it would
    terminate it)."""
    if os.name != "posix":
        return
    for tmp in target.parent.glob(f".{target.name}.tmp-*"):
        pid = tmp.name.rpartition("-")[2]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
            log.info("removed %s, left by a writer that was killed", tmp)
        except PermissionError:  # alive, another user's
            continue


class RandomState(Callback):
    """Saves the global torch RNG state (CPU, and CUDA when in use) in every checkpoint and restores
    it when a resumed run starts training, so that the reparameterization noise and the dynamic
    binarization draws continue as in an uninterrupted run.

    Restored in `on_train_start` rather than at load time: Lightning builds the model and the
    dataloaders after loading, and those must not shift the stream. (Data order does not use this
    RNG: `data.EpochShuffle` is a function of (seed, epoch) and the loaders have their own generators.)
    """

    def __init__(self) -> None:
        self._to_restore: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._to_restore = state_dict

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._to_restore is None:
            return
        torch.set_rng_state(self._to_restore["cpu"])
        cuda = self._to_restore.get("cuda", [])
        if cuda and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
        self._to_restore = None


def first_non_finite(tree: Any, key: str = "") -> str | None:
    """The dotted key of the first floating-point tensor in nested dicts/lists holding a NaN or inf."""
    if isinstance(tree, Tensor):
        return key if tree.is_floating_point() and not bool(torch.isfinite(tree).all()) else None
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, (list, tuple)):
        items = enumerate(tree)
    else:
        return None
    for k, value in items:
        found = first_non_finite(value, f"{key}.{k}" if key else str(k))
        if found is not None:
            return found
    return None


class NonFiniteGuard(Callback):
    """Stops training at the first non-finite training loss, naming the step and the loss terms,
    and refuses to write any checkpoint whose weights or optimizer state hold a NaN or inf.

    The losses are checked in groups, not at every step: asking whether a GPU tensor is finite
    waits for the step to finish (a device-to-host copy per step). Each step's loss terms are
    kept by reference, and every `trainer.log_every_n_steps` steps (when Lightning reads the
    logged values anyway), at the end of training and before any checkpoint is written, they are
    checked with one transfer; the first non-finite one is reported with its own step, epoch,
    batch and KL weight. Training may run up to that many steps past a NaN, but nothing is saved
    after it: the save check runs before the checkpoint is written, and it also catches weights
    that became non-finite with a finite loss.
    """

    def __init__(self) -> None:
        # (global step, epoch, batch index, KL weight, step outputs) of the steps not yet checked
        self._pending: list[tuple[int, int, int, float, dict[str, Tensor]]] = []

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step - 1  # the optimizer step that this loss was computed for
        self._pending.append((step, trainer.current_epoch, batch_idx, pl_module.kl_weight, outputs))
        every = max(1, trainer.log_every_n_steps or 1)
        if trainer.global_step % every == 0:
            self.check_losses()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check_losses()

    def check_losses(self) -> None:
        """Raise NonFiniteError for the first pending non-finite loss; forget the checked ones."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        finite = torch.isfinite(torch.stack([outputs["loss"] for *_, outputs in pending]))
        if bool(finite.all()):
            return
        step, epoch, batch_idx, kl_weight, outputs = pending[int((~finite).nonzero()[0])]
        terms = ", ".join(f"{k}={float(v):.6g}" for k, v in outputs.items())
        raise NonFiniteError(
            f"non-finite training loss at step {step} (epoch {epoch}, batch {batch_idx}): {terms}, "
            f"kl_weight={kl_weight:.6g}; training stopped, no checkpoint written after the previous one")

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        self.check_losses()
        bad = first_non_finite({"state_dict": checkpoint["state_dict"],
                                "optimizer_states": checkpoint.get("optimizer_states", [])})
        if bad is not None:
            raise NonFiniteError(f"not writing a checkpoint at step {trainer.global_step}: {bad} holds NaN or inf; "
                                 "training stopped, the checkpoints already written are unchanged")


class LastCheckpoint(Callback):
    """Keeps `<dirpath>/last.ckpt` current between the epoch-end saves of ModelCheckpoint: every
    `every_n_train_steps` optimizer steps (0: never), and on SIGINT or SIGTERM, after which the run
    stops with `Interrupted` (the entry point prints the command that resumes it).

    A signal only sets a flag. The save happens at the end of the current training batch, where
    model, optimizer, loops, data position and RNG agree (where Lightning takes its own mid-epoch
    checkpoints), or, for the last batch of an epoch, after that epoch's validation. Lightning's
    SIGTERM handler, which would leave mid-validation without saving, is replaced from the first
    training step on; Lightning puts the previous handlers back when fitting ends. A signal that
    arrives before training starts (setup, sanity check) gets Lightning's default handling.
    """

    def __init__(self, dirpath: str | Path, every_n_train_steps: int = 0) -> None:
        require(isinstance(every_n_train_steps, int) and every_n_train_steps >= 0, "every_n_train_steps",
                every_n_train_steps, "an integer >= 0 (0: only at epoch ends)")
        self.path = Path(dirpath) / "last.ckpt"
        self.every_n_train_steps = every_n_train_steps
        self.signal: int | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.signal = signal.SIGTERM if trainer.received_sigterm else None
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._request_stop)

    def _request_stop(self, signum: int, frame: FrameType | None) -> None:
        self.signal = signum  # acted on at the next save point; a repeated Ctrl-C does not cut the save short

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        # A checkpoint taken at the epoch's last batch would resume past that epoch's validation.
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return
        if self.signal is not None:
            self._save_and_stop(trainer)
        if self.every_n_train_steps and trainer.global_step % self.every_n_train_steps == 0:
            trainer.save_checkpoint(self.path, weights_only=False)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.signal is not None:
            self._save_and_stop(trainer)

    def _save_and_stop(self, trainer: L.Trainer) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)
        raise Interrupted(self.signal, trainer.current_epoch, trainer.global_step, str(self.path))
