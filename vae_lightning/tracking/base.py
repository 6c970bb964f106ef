"""The tracker interface: what the logging policy (tracking.policy) asks of every tracker, beside the
scalars that Lightning itself sends to every logger during training (`Logger.log_metrics`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from lightning.pytorch.loggers import Logger


def png_name(tag: str) -> str:
    """The file name of a picture's PNG: its tag with `/` as `_`."""
    return f"{tag.replace('/', '_')}.png"


@runtime_checkable
class Tracker(Protocol):
    """One experiment tracker of a run: pictures, hyperparameters, an evaluation, and closing.

    A Lightning logger class that has these four methods is its own tracker (one class plus one YAML in
    conf/logger/); a logger class that does not gets its adapter from tracking.choose.
    """

    def pictures(self, pngs: Mapping[str, bytes], step: int, subdir: str) -> None:
        """PNG images (tag -> bytes) at `step`; `subdir`: where a tracker that keeps files puts them."""

    def hyperparameters(self, params: Mapping[str, Any], metrics: Mapping[str, float], step: int) -> None:
        """The run's hyperparameters with its final metrics, after training (TensorBoard's HPARAMS)."""

    def evaluation(self, values: Mapping[str, float], params: Mapping[str, Any], step: int) -> None:
        """An evaluation's scalars (name -> value) at the checkpoint's `step`, and the run's hyperparameters."""

    def close(self, trained: bool) -> None:
        """Done writing: after training (`trained`) or after an evaluation wrote into the run."""


class LoggerTracker:
    """The adapter for a Lightning logger with no tracker of its own: scalars and hyperparameters through
    Lightning's logger API, no pictures."""

    def __init__(self, logger: Logger) -> None:
        self.logger = logger

    def pictures(self, pngs: Mapping[str, bytes], step: int, subdir: str) -> None:
        """Lightning's logger API has no pictures."""

    def hyperparameters(self, params: Mapping[str, Any], metrics: Mapping[str, float], step: int) -> None:
        self.logger.log_hyperparams(dict(params))

    def evaluation(self, values: Mapping[str, float], params: Mapping[str, Any], step: int) -> None:
        self.logger.log_metrics(dict(values), step)
        self.logger.log_hyperparams(dict(params))

    def close(self, trained: bool) -> None:
        self.logger.finalize("success")
