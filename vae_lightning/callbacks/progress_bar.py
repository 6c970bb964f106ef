"""The training progress bar, short enough to read: the loss, its KL term and weight, and the last
validation ELBO, in nats, fit in 100 columns (Lightning's own bar shows every logged name in full).

Where the output is not a terminal (a log file, a SLURM job's output, CI) a bar's redraws would pile up as
carriage-return updates; there the bar is off and each epoch ends with one line instead, on the console and in
the run's log."""

from __future__ import annotations

import sys
import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar

# logged name -> (shown name, format)
SHOWN = {"train/loss": ("loss", "{:.1f}"), "train/kl": ("kl", "{:.2f}"), "train/kl_weight": ("w", "{:.2f}"),
         "val/elbo": ("val elbo", "{:.2f}")}


class ProgressBar(TQDMProgressBar):
    """Lightning's TQDM bar with the values of SHOWN only, under short names; one line per epoch instead when
    standard output is not a terminal (`lines`; a bar with refresh_rate=0 shows neither)."""

    def __init__(self, refresh_rate: int = 1, process_position: int = 0, leave: bool = False) -> None:
        super().__init__(refresh_rate=refresh_rate, process_position=process_position, leave=leave)
        self.lines = refresh_rate > 0 and not sys.stdout.isatty()
        self._epoch_start = time.perf_counter()
        if self.lines:
            self.disable()

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        logged = trainer.progress_bar_metrics
        return {name: fmt.format(float(logged[key])) for key, (name, fmt) in SHOWN.items() if key in logged}

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_start = time.perf_counter()
        super().on_train_epoch_start(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self.lines and trainer.is_global_zero:
            from vae_lightning.core.console import say

            values = ", ".join(f"{name} {value}" for name, value in self.get_metrics(trainer, pl_module).items())
            epochs = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
            say("epoch %d%s: %s (%.1f s)", trainer.current_epoch + 1, epochs, values,
                time.perf_counter() - self._epoch_start)
