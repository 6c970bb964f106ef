"""`last.ckpt` kept current between epoch ends, and a clean stop on SIGINT/SIGTERM (a config
callback: `callbacks.last_checkpoint.every_n_train_steps` in conf/callbacks/default.yaml)."""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from vae_lightning.core.checks import integer
from vae_lightning.core.errors import Interrupted


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
        integer(0, note=" (0: only at epoch ends)").check("every_n_train_steps", every_n_train_steps)
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
