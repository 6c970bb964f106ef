"""`last.ckpt` kept current between epoch ends, and a clean stop on SIGINT/SIGTERM/SIGUSR2 (a config
callback: `callbacks.last_checkpoint` in conf/callbacks/default.yaml)."""

from __future__ import annotations

import signal
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from vae_lightning.core.checks import Check, integer, list_of
from vae_lightning.core.errors import Interrupted

SIGNAL_NAME = Check(lambda v: isinstance(v, str) and f"SIG{v}" in signal.Signals.__members__
                    and v not in ("KILL", "STOP"), "a signal name")


class LastCheckpoint(Callback):
    """Keeps `<dirpath>/last.ckpt` current between the epoch-end saves of ModelCheckpoint: every
    `every_n_train_steps` optimizer steps (0: never), and on one of `signals` (default SIGINT, SIGTERM and
    SIGUSR2, the signal that submitit asks SLURM to send ahead of a job's time limit), after which the run
    stops with `Interrupted` (the entry point prints the command that resumes it; a SLURM job requeues
    itself, launchers.slurm).

    A signal only sets a flag. The save happens at the end of the current training batch, where
    model, optimizer, loops, data position and RNG agree (where Lightning takes its own mid-epoch
    checkpoints), or, for the last batch of an epoch, after that epoch's validation. Lightning's
    SIGTERM handler, which would leave mid-validation without saving, is replaced from the first
    training step on; Lightning puts the previous handlers back when fitting ends. A signal that
    arrives before training starts (setup, sanity check) gets Lightning's default handling, or, in a
    SLURM job, stops the job at once (launchers.slurm.stop_signals).
    """

    def __init__(self, dirpath: str | Path, every_n_train_steps: int = 0,
                 signals: Sequence[str] = ("INT", "TERM", "USR2")) -> None:
        integer(0, note=" (0: only at epoch ends)").check("every_n_train_steps", every_n_train_steps)
        list_of(SIGNAL_NAME, least=0, what="a list of signal names without SIG, such as [INT,TERM,USR2]").check(
            "signals", signals)
        self.path = Path(dirpath) / "last.ckpt"
        self.every_n_train_steps = every_n_train_steps
        self.signals = [signal.Signals[f"SIG{name}"] for name in signals]
        self.signal: int | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.signal = signal.SIGTERM if trainer.received_sigterm else None
        for signum in self.signals:
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
