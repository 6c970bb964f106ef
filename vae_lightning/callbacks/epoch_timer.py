"""Wall time of each training epoch of a Lightning run (the benchmark's clock)."""

from __future__ import annotations

import time

import lightning as L
from lightning.pytorch.callbacks import Callback


class EpochTimer(Callback):
    """Wall time of each training epoch, validation and checkpointing included, appended to the class's
    `durations` (a config callback is built by the Trainer's config, so the benchmark reads the class)."""

    durations: list[float] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._lap()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._lap()

    def _lap(self) -> None:
        now = time.perf_counter()
        if getattr(self, "_start", None) is not None:
            EpochTimer.durations.append(now - self._start)
        self._start = now
