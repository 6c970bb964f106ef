"""The KL weight of every training step, from the configured schedule (model.annealing) and the
global step; part of what a checkpoint means. Chosen in conf/callbacks/ like every callback; training gives it the
schedule built from `annealing` and refuses a run without it."""

from __future__ import annotations

import logging
import math
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from vae_lightning.core.errors import UserError
from vae_lightning.model.annealing import Schedule

log = logging.getLogger(__name__)


class KLAnnealing(Callback):
    """Sets `module.kl_weight = schedule(t)` before every training step, t from the global step.

    Epoch-unit schedules need the number of optimizer steps per epoch; it is fixed at the first
    fit and saved in the checkpoint, together with the schedule's parameters, so that a resumed
    run continues the very same curve (also when, e.g., `trainer.max_epochs` was raised and a
    cyclical schedule's `total` follows it by interpolation).
    """

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule
        self.steps_per_epoch: int | None = None

    def progress(self, global_step: int) -> float:
        """Training progress in the schedule's unit."""
        if self.schedule.unit == "step":
            return float(global_step)
        assert self.steps_per_epoch is not None, "steps_per_epoch is set in on_train_start"
        return global_step / self.steps_per_epoch

    def weight_at(self, global_step: int) -> float:
        return self.schedule(self.progress(global_step))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.steps_per_epoch is None:
            batches = trainer.num_training_batches
            if not math.isfinite(batches):
                raise ValueError("epoch-unit KL schedules need a sized training dataloader")
            self.steps_per_epoch = max(1, math.ceil(batches / trainer.accumulate_grad_batches))
        pl_module.kl_weight = self.weight_at(trainer.global_step)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        pl_module.kl_weight = self.weight_at(trainer.global_step)

    def state_dict(self) -> dict[str, Any]:
        return {"steps_per_epoch": self.steps_per_epoch, "schedule": type(self.schedule).__name__,
                "params": dict(vars(self.schedule))}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.steps_per_epoch = state_dict["steps_per_epoch"]
        if state_dict["schedule"] != type(self.schedule).__name__:
            raise UserError(f"the checkpoint was trained with the {state_dict['schedule']} KL schedule, "
                            f"not {type(self.schedule).__name__}; resume it with its own annealing config")
        if state_dict["params"] != vars(self.schedule):
            log.warning("KL schedule: continuing the checkpoint's %s, not the config's %s",
                        state_dict["params"], vars(self.schedule))
            vars(self.schedule).update(state_dict["params"])
