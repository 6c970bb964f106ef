"""The config sections that define a model, stored in every checkpoint (the checkpoint contract, checkpoints/).
Chosen in conf/callbacks/ like every callback; training gives it the sections (`checkpoints.stored_sections`)
and refuses a run without it, whose checkpoints could not be loaded."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from vae_lightning.checkpoints.contract import CHECKPOINT_KEY


class RunConfig(Callback):
    """Stores the config sections that define the model (STORED_SECTIONS) in every checkpoint, so
    that a checkpoint can be rebuilt without its run folder and checked against the config of a
    resumed run."""

    def __init__(self, sections: dict[str, Any] | None = None) -> None:
        # set by training once the config chose this callback (runs.training.build_callbacks): Hydra would build
        # the sections' own `_target_`s if they were passed to the constructor
        self.sections = sections

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        if self.sections is None:
            raise RuntimeError("RunConfig saves a checkpoint before it was given the config sections")
        checkpoint[CHECKPOINT_KEY] = self.sections
