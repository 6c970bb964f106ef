"""TensorBoard: pictures and HPARAMS sessions written as ready-made summaries into the run's own events
file, and where a run's events are.

This is the only module that touches TensorBoard's writer below `SummaryWriter` (its file writer takes
ready-made summaries: encoded images, HPARAMS sessions). A resumed run or an evaluation appends event files
to the same folder; a resumed run re-logs from its checkpoint's step.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import TensorBoardLogger

from vae_lightning.tracking.base import LoggerTracker


def event_folder(run: Path) -> Path:
    """The folder of a run's TensorBoard events: <run>/tensorboard/<its label> (runs.folders.run_label), or
    <run>/tensorboard itself for a run written before runs were named."""
    base = run / "tensorboard"
    if not base.is_dir() or any(base.glob("events.out.tfevents.*")):
        return base
    named = sorted({p.parent for p in base.glob("*/events.out.tfevents.*")})
    return named[0] if named else base


def _file_writer(logger: TensorBoardLogger) -> Any:
    """The FileWriter behind a TensorBoard logger's SummaryWriter (torch and tensorboardX alike): the run's
    own events file, which takes ready-made summaries; None in a process that does not write (a DDP rank
    other than 0 gets Lightning's dummy experiment)."""
    return getattr(logger.experiment, "_get_file_writer", lambda: None)()


def _image_summary(pngs: Mapping[str, bytes]) -> Any:
    """Image summaries as `add_image` would write them, without its resize and second encoding."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    values = []
    for tag, png in pngs.items():
        width, height, _, color_type = struct.unpack(">IIBB", png[16:26])  # the PNG header chunk
        values.append(Summary.Value(tag=tag, image=Summary.Image(
            height=height, width=width, colorspace={0: 1, 4: 2, 2: 3, 6: 4}.get(color_type, 3),
            encoded_image_string=png)))
    return Summary(value=values)


class TensorBoardTracker(LoggerTracker):
    """A TensorBoardLogger's tracker: image summaries, and HPARAMS sessions whose metric columns TensorBoard
    reads from the last point of the scalars with the same tags."""

    logger: TensorBoardLogger

    def pictures(self, pngs: Mapping[str, bytes], step: int, subdir: str) -> None:
        writer = _file_writer(self.logger)
        if writer is not None:
            writer.add_summary(_image_summary(pngs), step)

    def hyperparameters(self, params: Mapping[str, Any], metrics: Mapping[str, float], step: int) -> None:
        """The HPARAMS session only: each metric's value is the last point of its scalar, which training
        already logged (a repeated point would give a resumed run's curves extra values)."""
        from torch.utils.tensorboard.summary import hparams

        writer = _file_writer(self.logger)
        for summary in hparams(dict(params), dict(metrics)) if writer is not None else ():
            writer.add_summary(summary, step)

    def evaluation(self, values: Mapping[str, float], params: Mapping[str, Any], step: int) -> None:
        """The scalars; and an HPARAMS session of its own (without an experiment summary) for a checkpoint
        evaluated outside its run folder: the run's own HPARAMS row, written by training, lists evaluate's
        key metrics already."""
        from torch.utils.tensorboard.summary import hparams

        trained_here = any(Path(self.logger.log_dir).glob("events.out.tfevents.*"))
        for tag, value in values.items():
            self.logger.experiment.add_scalar(tag, value, step)
        writer = _file_writer(self.logger)
        if not trained_here and writer is not None:
            _, session_start, session_end = hparams({k: v for k, v in params.items() if v is not None}, dict(values))
            writer.add_summary(session_start, step)
            writer.add_summary(session_end, step)
