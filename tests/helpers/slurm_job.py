"""A test instrument for sweep jobs that SLURM runs, added to the config as a callback (the job's process is
submitit's, so it cannot be wrapped like tests/helpers/instrumented_train.py wraps `train`):

    +callbacks.instrument._target_=helpers.slurm_job.Instrument +callbacks.instrument.marker=<path> ...

It slows the training steps of a job's first `slow_runs` runs (SLURM_RESTART_COUNT below it; the steps before
`slow_until`, 0: all), so that a test can requeue, cancel or time out the job in the middle of training, and
tells the test where the job is:
`<marker>.<restart>` appears once that run has reached `marker_step`, holding the cluster environment that
Lightning uses (written whole: renamed into place, so that a test can read it as soon as it exists). Sleeping
touches no random state, so the job trains exactly as without the instrument.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback


class Instrument(Callback):
    def __init__(self, marker: str, seconds: float = 0.0, slow_runs: int = 0, slow_until: int = 0,
                 marker_step: int = 0) -> None:
        self.marker, self.seconds, self.slow_runs, self.slow_until = marker, seconds, slow_runs, slow_until
        self.marker_step = marker_step
        self.restart = int(os.environ.get("SLURM_RESTART_COUNT", "0"))

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self.restart < self.slow_runs and (not self.slow_until or trainer.global_step < self.slow_until):
            time.sleep(self.seconds)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        marker = Path(f"{self.marker}.{self.restart}")
        if trainer.global_step >= self.marker_step and not marker.exists():
            environment = type(trainer._accelerator_connector.cluster_environment).__name__
            partial = marker.with_name(f".{marker.name}.partial")
            partial.write_text(f"{environment} {trainer.global_step}\n")
            os.replace(partial, marker)
