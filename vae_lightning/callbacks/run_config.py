"""The config sections that define a model, stored in every checkpoint (the checkpoint contract,
runs/checkpoint.py; `runs.training` always installs this callback)."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from vae_lightning.runs.checkpoint import CHECKPOINT_KEY


class RunConfig(Callback):
    """Stores the config sections that define the model (STORED_SECTIONS) in every checkpoint, so
    that a checkpoint can be rebuilt without its run folder and checked against the config of a
    resumed run."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = self.config
