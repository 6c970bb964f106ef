"""tracking.choose: a logger with the tracker methods is its own tracker; Lightning's loggers and the project's
subclasses get their adapter by class; any other logger gets scalars and hyperparameters through Lightning's API."""

from __future__ import annotations

import pytest
from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers import Logger, TensorBoardLogger

from vae_lightning.tracking import LoggerTracker, tracker_for
from vae_lightning.tracking.csv import CSVLogger, CSVTracker
from vae_lightning.tracking.tensorboard import TensorBoardTracker


class PlainLogger(Logger):
    """A Lightning logger with no tracker: records what Lightning's API received."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple] = []

    name = "plain"
    version = "0"

    def log_metrics(self, metrics, step=None):
        self.calls.append(("metrics", dict(metrics), step))

    def log_hyperparams(self, params, *args, **kwargs):
        self.calls.append(("params", dict(params)))

    def finalize(self, status):
        self.calls.append(("finalize", status))


class OwnTracker(PlainLogger):
    def pictures(self, pngs, step, subdir): ...
    def hyperparameters(self, params, metrics, step): ...
    def evaluation(self, values, params, step): ...
    def close(self, trained): ...


@pytest.mark.parametrize(("make", "adapter"), [
    (lambda d: TensorBoardLogger(save_dir=d), TensorBoardTracker),
    (lambda d: LightningCSVLogger(save_dir=d), CSVTracker),
    (lambda d: CSVLogger(save_dir=d), CSVTracker),  # the project's, by its base class
])
def test_lightnings_loggers_get_their_adapter(tmp_path, make, adapter):
    logger = make(str(tmp_path))
    tracker = tracker_for(logger)
    assert type(tracker) is adapter and tracker.logger is logger


def test_a_logger_with_the_tracker_methods_is_its_own_tracker():
    logger = OwnTracker()
    assert tracker_for(logger) is logger


def test_any_other_logger_gets_scalars_and_hyperparameters_but_no_pictures():
    logger = PlainLogger()
    tracker = tracker_for(logger)
    assert type(tracker) is LoggerTracker
    tracker.pictures({"a": b"\x89PNG"}, 1, "samples")
    tracker.evaluation({"eval/elbo": -90.0}, {"seed": 0}, 4)
    tracker.close(trained=False)
    assert logger.calls == [("metrics", {"eval/elbo": -90.0}, 4), ("params", {"seed": 0}), ("finalize", "success")]
