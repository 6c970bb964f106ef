"""Choosing a tracker for a Lightning logger: the one place that asks what class a logger is.

A logger that has the tracker methods itself (tracking.base.Tracker) is its own tracker. Lightning's own
logger classes get an adapter from `ADAPTERS`, by the nearest class in the logger's class hierarchy (the
project's CSV and MLflow loggers are Lightning's, continued across resumes). Any other Lightning logger gets
`LoggerTracker`: scalars and hyperparameters through Lightning's logger API, no pictures.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from lightning.pytorch.loggers import CSVLogger, Logger, MLFlowLogger, TensorBoardLogger

from vae_lightning.tracking.base import LoggerTracker, Tracker
from vae_lightning.tracking.csv import CSVTracker
from vae_lightning.tracking.mlflow import MLflowTracker
from vae_lightning.tracking.tensorboard import TensorBoardTracker

# Lightning logger class -> its tracker adapter
ADAPTERS: dict[type[Logger], Callable[[Logger], Tracker]] = {
    TensorBoardLogger: TensorBoardTracker,
    CSVLogger: CSVTracker,
    MLFlowLogger: MLflowTracker,
}


def tracker_for(logger: Logger) -> Tracker:
    """The tracker that writes to `logger`: itself, its class's adapter, or `LoggerTracker`."""
    if isinstance(logger, Tracker):
        return logger
    for cls in type(logger).__mro__:
        if cls in ADAPTERS:
            return ADAPTERS[cls](logger)
    return LoggerTracker(logger)


def trackers(loggers: Sequence[Logger]) -> list[Tracker]:
    """The trackers of a run's loggers, in their order."""
    return [tracker_for(logger) for logger in loggers]
