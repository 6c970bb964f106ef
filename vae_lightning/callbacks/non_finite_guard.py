"""A guard against NaN and inf: training stops at the first non-finite loss, and no checkpoint with
non-finite weights is written (part of what a checkpoint means: chosen first in conf/callbacks/)."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor

from vae_lightning.core.errors import NonFiniteError


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
        terms = ", ".join(f"{k}={float(v):.6g}" for k, v in outputs.items() if not k.startswith("member_"))
        if "member_loss" in outputs:  # a K-member run (model/members.py): name the members; all of them stop
            seeds = outputs.get("member_seeds", torch.arange(len(outputs["member_loss"])))
            losses = outputs["member_loss"]
            bad = [str(int(s)) for s, loss in zip(seeds, losses, strict=True) if not torch.isfinite(loss)]
            terms += f" (the member{'s' if len(bad) > 1 else ''} at seed {', '.join(bad)}; every member stops)"
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
