"""The global RNG state in every checkpoint, restored on resume (part of what a checkpoint means: chosen
first in conf/callbacks/; without it a resume is not bit-identical)."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback


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
