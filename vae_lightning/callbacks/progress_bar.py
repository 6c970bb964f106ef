"""The training progress bar, short enough to read: the loss, its KL term and weight, and the last
validation ELBO, in nats, fit in 100 columns (Lightning's own bar shows every logged name in full)."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar

# logged name -> (shown name, format)
SHOWN = {"train/loss": ("loss", "{:.1f}"), "train/kl": ("kl", "{:.2f}"), "train/kl_weight": ("w", "{:.2f}"),
         "val/elbo": ("val elbo", "{:.2f}")}


class ProgressBar(TQDMProgressBar):
    """Lightning's TQDM bar with the values of SHOWN only, under short names."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        logged = trainer.progress_bar_metrics
        return {name: fmt.format(float(logged[key])) for key, (name, fmt) in SHOWN.items() if key in logged}
