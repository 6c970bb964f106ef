"""CSV: one metrics.csv per run folder across resumes and evaluations, hparams.yaml, and the pictures as PNG
files listed in images.csv (`<csv>/<subdir>/<tag with / as _>.png`).

Lightning's CSVLogger deletes an existing metrics.csv and appends a row per logging call; the project's
`CSVLogger` keeps the file and keeps one value per metric and step (`_ContinuedWriter`), so a resumed run
that re-logs from its checkpoint's step, or an evaluation repeated at the same checkpoint, replaces values
instead of adding them.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from vae_lightning.core.files import atomic_text, write_atomically
from vae_lightning.tracking.base import LoggerTracker, png_name

CSV_IMAGES = "images.csv"  # in the CSV logger's folder: step, tag, file of every picture


class _ContinuedWriter(ExperimentWriter):
    """Lightning's CSV writer, minus deleting an existing metrics.csv, plus one value per metric and step.

    Rows are appended as Lightning appends them while their steps are past the file's last step; rows
    at a step the file already has (a resume re-logging from its checkpoint's step, an evaluation
    repeated at the same checkpoint) rewrite it: the new values replace the old ones of the same metric
    and step, and an old row left without a value goes.
    """

    INDEX = ("epoch", "step")  # columns of every row, not metrics

    def __init__(self, log_dir: str) -> None:
        super().__init__(log_dir)
        self._last_step = -1
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                reader = csv.DictReader(f)
                self.metrics_keys = sorted(reader.fieldnames or [])
                self._last_step = max((int(r["step"]) for r in reader), default=-1)

    def _check_log_dir_exists(self) -> None:
        """Keep the run's metrics.csv (Lightning's writer deletes it)."""

    def save(self) -> None:
        if not self.metrics:
            return
        last = max(int(m["step"]) for m in self.metrics)
        if self._fs.isfile(self.metrics_file_path) and min(int(m["step"]) for m in self.metrics) <= self._last_step:
            self._merge()
        else:
            super().save()
        self._last_step = max(self._last_step, last)

    def _merge(self) -> None:
        self._record_new_keys()
        replaced = {(int(m["step"]), k) for m in self.metrics for k in m if k not in self.INDEX}
        with self._fs.open(self.metrics_file_path, "r", newline="") as f:
            old = list(csv.DictReader(f))
        kept = []
        for row in old:
            step = int(row["step"])
            cells = {k: v for k, v in row.items() if k in self.INDEX or (v != "" and (step, k) not in replaced)}
            if set(cells) - set(self.INDEX):
                kept.append(cells)
        with atomic_text(Path(self.metrics_file_path)) as f:
            writer = csv.DictWriter(f, fieldnames=self.metrics_keys, lineterminator="\n")
            writer.writeheader()
            writer.writerows([*kept, *self.metrics])
        self.metrics = []


class CSVLogger(LightningCSVLogger):
    """Lightning's CSVLogger, one metrics.csv per run folder across resumes (`_ContinuedWriter`): every
    scalar the run logs, one row per logging call, and hparams.yaml. Pictures: `CSVTracker`."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuedWriter(log_dir=self.log_dir)
        return self._experiment


class CSVTracker(LoggerTracker):
    """A CSV logger's tracker (Lightning's or the project's): pictures as files listed in images.csv; an
    evaluation's scalars replace those of an earlier evaluation at the same step."""

    logger: LightningCSVLogger

    def pictures(self, pngs: Mapping[str, bytes], step: int, subdir: str) -> None:
        """The files, and their rows in images.csv; a picture drawn again at the same step replaces its row."""
        log_dir = Path(self.logger.log_dir)
        index = log_dir / CSV_IMAGES
        rows: list[dict[str, Any]] = []
        if index.is_file():
            with open(index, newline="") as f:
                rows = [r for r in csv.DictReader(f) if not (int(r["step"]) == step and r["tag"] in pngs)]
        for tag, png in pngs.items():
            path = log_dir / subdir / png_name(tag)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, lambda f, png=png: f.write(png), size=len(png))
            rows.append({"step": step, "tag": tag, "file": path.relative_to(log_dir).as_posix()})
        with atomic_text(index) as f:
            writer = csv.DictWriter(f, fieldnames=["step", "tag", "file"], lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
