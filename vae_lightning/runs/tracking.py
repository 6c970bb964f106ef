"""The logging policy: what a run writes to its experiment trackers (the configured Lightning loggers:
TensorBoard, CSV, MLflow, any of them at once), in one place, so that no command or callback writes to
one tracker's API directly.

- Scalars go through Lightning (`LightningModule.log`), under slash namespaces (`train/...`,
  `val/...`, `test/...`, `diagnostics/...`), the same names and steps in every logger; evaluate's go
  under `eval/...` at the checkpoint's step (`log_evaluation`), into the loggers the run trained with
  (`run_loggers`).
- Pictures (`log_images`, `log_pngs`): each image encoded once as PNG, the same bytes into every
  TensorBoard event file, the CSV logger's folder (`<csv>/<subdir>/<name>.png`, listed in
  `<csv>/images.csv`) and the MLflow run (artifacts `<subdir>/<name>.png`, and `log_image` by tag and
  step for MLflow's image charts); with a folder, into a PNG file.
- Hyperparameters (`hyperparameters`, `log_hyperparameters`): the same few names for every run and for
  its evaluation, recorded with the final metrics (TensorBoard's HPARAMS session; CSV's hparams.yaml;
  MLflow's params).

A run folder is one run in every tracker, continued by a resume and by evaluate: TensorBoard appends
event files; `CSVLogger` keeps and appends to its metrics.csv; `MLFlowLogger` records its run in
`<run>/mlflow.json` and continues that run. A resumed run re-logs from its checkpoint's step; both keep
one value per metric and step.

This is the only module that touches TensorBoard's writer below `SummaryWriter` (its file writer takes
ready-made summaries: encoded images, HPARAMS sessions) and the only one that imports MLflow.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import struct
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.fabric.utilities.logger import _convert_params
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.loggers import MLFlowLogger as LightningMLFlowLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from omegaconf import OmegaConf
from torch import Tensor

from vae_lightning.core.building import build
from vae_lightning.core.errors import UserError
from vae_lightning.core.files import write_atomically, write_text_atomically
from vae_lightning.evaluation.metrics import HPARAMS, columns
from vae_lightning.pictures import png_bytes
from vae_lightning.runs.folders import latest_run_config
from vae_lightning.runs.sweep import in_multirun

if TYPE_CHECKING:
    from vae_lightning.model import Schedule, VAEModule

log = logging.getLogger(__name__)

MLFLOW_RECORD = "mlflow.json"  # in the run folder: the MLflow run that this run folder is
CSV_IMAGES = "images.csv"  # in the CSV logger's folder: step, tag, file of every picture
_TAG_KEY = re.compile(r"[^\w\-./ ]")  # what MLflow refuses in a tag or image key
MISSING_MLFLOW = ('logger.mlflow needs the optional extra mlflow: pip install -e ".[mlflow]" '
                  "(or choose logger=tensorboard, csv or none)")


def event_folder(run: Path) -> Path:
    """The folder of a run's TensorBoard events: <run>/tensorboard/<its label> (runs.folders.run_label), or
    <run>/tensorboard itself for a run written before runs were named."""
    base = run / "tensorboard"
    if not base.is_dir() or any(base.glob("events.out.tfevents.*")):
        return base
    named = sorted({p.parent for p in base.glob("*/events.out.tfevents.*")})
    return named[0] if named else base


def hyperparameters(module: VAEModule, schedule: Schedule | str, lr: float | None, seed: int | None) -> dict[str, Any]:
    """The run's hyperparameters for TensorBoard's HPARAMS tab: the prior and the KL schedule with their
    parameters, the model (networks, likelihood, learning rate), the latent size and the seed.

    The same five names for every run: TensorBoard takes the table's columns from the first run it reads,
    so a per-family name such as `prior.alpha` would be missing whenever a normal-prior run came first; and
    it shows the first five columns without being asked. The prior is its label (`Beta(4, 3)`), the
    schedule its repr with every parameter, the model its networks' labels with the likelihood and the
    learning rate (`mlp 784-400-200-2 leaky_relu / mlp 2-200-400-784 leaky_relu, bernoulli, lr 0.001`).
    """
    model = f"{module.architecture}, {module.likelihood.name}" + (f", lr {lr:g}" if lr is not None else "")
    return {"prior": module.prior.label, "annealing": schedule if isinstance(schedule, str) else repr(schedule),
            "model": model, "latent_dim": module.latent_dim, "seed": seed}


# The metrics HPARAMS shows first (it shows five without being asked): evaluate's are filled in when it runs


def _file_writer(logger: TensorBoardLogger) -> Any:
    """The FileWriter behind a TensorBoard logger's SummaryWriter (torch and tensorboardX alike): the run's
    own events file, which takes ready-made summaries; None in a process that does not write (a DDP rank
    other than 0 gets Lightning's dummy experiment)."""
    return getattr(logger.experiment, "_get_file_writer", lambda: None)()


def log_hyperparameters(loggers: Sequence[Logger], params: dict[str, Any], metrics: dict[str, float],
                        step: int) -> None:
    """Record `params` with the run's final validation and test metrics, then close the loggers.

    TensorBoard's HPARAMS tab reads the hyperparameters from the session summary written here and
    each metric's value from the last point of the scalar with the same tag (`val/elbo`, ...),
    which training already logged: no scalar point is written here (a repeated point would give a
    resumed run's curves extra values). CSV and MLflow show a metric's last value themselves: they get
    the params. Called after training, so the logger's writer is closed again afterwards.
    """
    from torch.utils.tensorboard.summary import hparams

    final = {k: metrics.get(k, 0.0) for k in columns(HPARAMS)}  # the values are read from the scalars of these tags
    final.update({k: v for k, v in metrics.items() if k.startswith(("val/", "test/", "diagnostics/"))})
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            writer = _file_writer(logger)
            for summary in hparams(params, final) if writer is not None else ():
                writer.add_summary(summary, step)
        else:
            logger.log_hyperparams(params)
        logger.finalize("success")


def _file_name(tag: str) -> str:
    return f"{tag.replace('/', '_')}.png"


def log_images(loggers: Sequence[Logger], images: Mapping[str, Tensor], step: int, subdir: str,
               folder: Path | None = None) -> dict[str, bytes]:
    """Each image [3, H, W] in [0, 1] encoded once as PNG and written to every logger at `step`
    (`log_pngs`, under `subdir` where a tracker keeps files), and with `folder` to
    `<folder>/<tag with / as _>.png`. Returns tag -> PNG bytes."""
    pngs = {tag: png_bytes(image) for tag, image in images.items()}
    log_pngs(loggers, pngs, step, subdir)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        for tag, png in pngs.items():
            write_atomically(folder / _file_name(tag), lambda f, png=png: f.write(png), size=len(png))
    return pngs


def log_pngs(loggers: Sequence[Logger], pngs: Mapping[str, bytes], step: int, subdir: str) -> None:
    """PNG images (tag -> bytes) to every logger at `step`: TensorBoard image summaries (as `add_image`
    would write them, without its resize and second encoding); the CSV logger's
    `<csv>/<subdir>/<tag with / as _>.png`, listed in `<csv>/images.csv`; MLflow artifacts
    `<subdir>/<tag with / as _>.png` and images by tag and step (MLflow's image charts)."""
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            writer = _file_writer(logger)
            if writer is not None:
                writer.add_summary(_image_summary(pngs), step)
        elif isinstance(logger, LightningCSVLogger):
            _csv_images(Path(logger.log_dir), pngs, step, subdir)
        elif isinstance(logger, LightningMLFlowLogger):
            _mlflow_images(logger, pngs, step, subdir)


def _image_summary(pngs: Mapping[str, bytes]) -> Any:
    from tensorboard.compat.proto.summary_pb2 import Summary

    values = []
    for tag, png in pngs.items():
        width, height, _, color_type = struct.unpack(">IIBB", png[16:26])  # the PNG header chunk
        values.append(Summary.Value(tag=tag, image=Summary.Image(
            height=height, width=width, colorspace={0: 1, 4: 2, 2: 3, 6: 4}.get(color_type, 3),
            encoded_image_string=png)))
    return Summary(value=values)


def _csv_images(log_dir: Path, pngs: Mapping[str, bytes], step: int, subdir: str) -> None:
    """The files, and their rows in images.csv; a picture drawn again at the same step replaces its row."""
    index = log_dir / CSV_IMAGES
    rows = []
    if index.is_file():
        with open(index, newline="") as f:
            rows = [r for r in csv.DictReader(f) if not (int(r["step"]) == step and r["tag"] in pngs)]
    for tag, png in pngs.items():
        path = log_dir / subdir / _file_name(tag)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda f, png=png: f.write(png), size=len(png))
        rows.append({"step": step, "tag": tag, "file": path.relative_to(log_dir).as_posix()})
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=["step", "tag", "file"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomically(index, text.getvalue())


def _mlflow_images(logger: LightningMLFlowLogger, pngs: Mapping[str, bytes], step: int, subdir: str) -> None:
    from PIL import Image

    client, run_id = logger.experiment, logger.run_id
    with tempfile.TemporaryDirectory() as tmp:
        for tag, png in pngs.items():
            (Path(tmp) / _file_name(tag)).write_bytes(png)
            with Image.open(io.BytesIO(png)) as image:
                client.log_image(run_id, image.convert("RGB"), key=_TAG_KEY.sub("_", tag), step=step)
        client.log_artifacts(run_id, tmp, subdir)


def run_loggers(run: Path | None, fallback: Path) -> list[Logger]:
    """The loggers a run folder trained with: its last saved config's `logger` section, built with the run
    folder as `paths.output_dir` (so a copied or moved run folder finds its own files); the MLflow logger
    continues the run's MLflow run. For a checkpoint outside a run folder: TensorBoard in `fallback`."""
    if run is None:
        return [TensorBoardLogger(save_dir=str(fallback), name="tensorboard", version="", default_hp_metric=False)]
    cfg = latest_run_config(run)
    OmegaConf.update(cfg, "paths.output_dir", str(run), force_add=True)
    return [build(c, f"logger.{k}") for k, c in (cfg.get("logger") or {}).items() if c is not None]


def log_evaluation(loggers: Sequence[Logger], step: int, values: dict[str, float], params: dict[str, Any],
                   figures: Sequence[Path]) -> None:
    """An evaluation's `eval/...` scalars at the checkpoint's global step, its figures (PNG files, tagged
    `eval/<name>`; `log_pngs` under `eval/`) and the run's hyperparameters (`hyperparameters`), in every logger.

    TensorBoard: the run's HPARAMS row (written by training, which lists evaluate's key metrics) reads its
    `eval/` columns from these scalars; a checkpoint evaluated outside its run folder gets an HPARAMS
    session of its own, without an experiment summary.
    MLflow: the scalars added to the run's history as they are (an evaluation repeated at the same step
    adds a point; MLflow shows the latest), the run's status left as training left it. CSV: the scalars
    replace those of an earlier evaluation at the same step.
    """
    from torch.utils.tensorboard.summary import hparams

    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            trained_here = any(Path(logger.log_dir).glob("events.out.tfevents.*"))
            writer = logger.experiment
            for tag, value in values.items():
                writer.add_scalar(tag, value, step)
            if not trained_here:  # the run's own HPARAMS row lists evaluate's key metrics already
                _, session_start, session_end = hparams({k: v for k, v in params.items() if v is not None}, values)
                writer._get_file_writer().add_summary(session_start, step)
                writer._get_file_writer().add_summary(session_end, step)
        elif isinstance(logger, LightningMLFlowLogger):
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            logger.experiment.log_batch(logger.run_id, metrics=[Metric(k, v, now, step) for k, v in values.items()])
            logger.log_hyperparams(params)
        else:
            logger.log_metrics(values, step)
            logger.log_hyperparams(params)
    log_pngs(loggers, {f"eval/{path.stem}": path.read_bytes() for path in figures}, step, "eval")
    for logger in loggers:
        if not isinstance(logger, LightningMLFlowLogger):  # MLflow's finalize would mark the run finished
            logger.finalize("success")


# --- the loggers that a config chooses: Lightning's, continued across resumes ----------------------------


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
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=self.metrics_keys, lineterminator="\n")
        writer.writeheader()
        writer.writerows([*kept, *self.metrics])
        write_text_atomically(Path(self.metrics_file_path), text.getvalue())
        self.metrics = []


class CSVLogger(LightningCSVLogger):
    """Lightning's CSVLogger, one metrics.csv per run folder across resumes (`_ContinuedWriter`): every
    scalar the run logs, one row per logging call, and hparams.yaml. Pictures: `log_pngs`."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuedWriter(log_dir=self.log_dir)
        return self._experiment


@contextmanager
def _store_lock(tracking_uri: str) -> Iterator[None]:
    """Processes that start together (a parallel sweep's jobs) take turns at opening a local SQLite store
    and finding or creating their experiment: MLflow creates a new database's tables without a lock, and
    an experiment's name is unique."""
    if not tracking_uri.startswith("sqlite:///"):
        yield
        return
    import fcntl  # POSIX; a local database is opened one process at a time

    database = Path(tracking_uri.removeprefix("sqlite:///"))
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(database.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _override_tags(run_dir: Path) -> dict[str, str]:
    """The run's command-line overrides as MLflow tags: `overrides` (the whole line) and one
    `override.<key>` per override (its value; a deletion `~key` is its own value), so that runs of a
    sweep can be told apart, sorted and filtered by what their command set."""
    path = run_dir / ".hydra" / "overrides.yaml"
    overrides = [str(o) for o in OmegaConf.load(path)] if path.is_file() else []
    tags = {"run_dir": str(run_dir), "overrides": " ".join(overrides)[:5000]}
    for override in overrides:
        key, sep, value = override.partition("=")
        tags["override." + _TAG_KEY.sub("", key)] = (value if sep else override)[:5000]
    return tags


class MLFlowLogger(LightningMLFlowLogger):
    """Lightning's MLFlowLogger, one MLflow run per run folder (`run_dir`).

    A new run is named by the run folder (a sweep job by `<multirun folder>/<job>`), tagged with the run's
    overrides (`_override_tags`), and recorded in `<run_dir>/mlflow.json` (tracking URI, experiment and run
    id); a resume or an evaluation of the folder continues that run in that store. A metric point at a
    step the run already has (a resume re-logs from its checkpoint's step) is not recorded again, and a
    parameter keeps its first value (MLflow refuses to change one; a changed value is a warning).

    `tracking_uri`: a local SQLite database by default (conf/logger/mlflow.yaml), or a lab's server.
    `artifact_location` (used when the experiment is created): null puts a local database's artifacts in
    `mlartifacts/` beside it and leaves a server's to the server.
    """

    def __init__(self, run_dir: str, experiment_name: str = "train", tracking_uri: str | None = None,
                 artifact_location: str | None = None, **kwargs: Any) -> None:
        try:
            import mlflow  # noqa: F401
        except ModuleNotFoundError as err:
            if err.name != "mlflow":
                raise
            raise UserError(MISSING_MLFLOW) from err
        self.run_dir = Path(run_dir)
        record_file = self.run_dir / MLFLOW_RECORD
        record = json.loads(record_file.read_text()) if record_file.is_file() else {}
        tracking_uri = record.get("tracking_uri", tracking_uri)
        if artifact_location is None and tracking_uri and tracking_uri.startswith("sqlite:///"):
            artifact_location = str(Path(tracking_uri.removeprefix("sqlite:///")).parent.absolute() / "mlartifacts")
        name = f"{self.run_dir.parent.name}/{self.run_dir.name}" if in_multirun() else self.run_dir.name
        super().__init__(experiment_name=experiment_name, run_name=name, tracking_uri=tracking_uri,
                         tags=_override_tags(self.run_dir), artifact_location=artifact_location,
                         run_id=record.get("run_id"), **kwargs)
        self._last_steps: dict[str, int] | None = None  # metric -> the last step the run has

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        if self._initialized:
            return self._mlflow_client
        from mlflow.exceptions import MlflowException

        new = self._run_id is None
        with _store_lock(self._tracking_uri):
            try:
                client = super().experiment
            except MlflowException as err:
                if new:
                    raise
                raise UserError(f"{self.run_dir / MLFLOW_RECORD}: its MLflow run {self._run_id} is not in "
                                f"{self._tracking_uri} ({err.message}); move the store back, or delete the file "
                                "to start a new MLflow run") from err
        if new:
            record = {"tracking_uri": self._tracking_uri, "experiment_id": self._experiment_id, "run_id": self._run_id}
            text = json.dumps(record, indent=2) + "\n"
            write_text_atomically(self.run_dir / MLFLOW_RECORD, text)
        return client

    def _recorded_steps(self) -> dict[str, int]:
        if self._last_steps is None:
            client = self.experiment
            metrics = client.get_run(self.run_id).data.metrics
            self._last_steps = {k: max(m.step for m in client.get_metric_history(self.run_id, k)) for k in metrics}
        return self._last_steps

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        step = step or 0
        last = self._recorded_steps()
        new = {k: v for k, v in metrics.items() if step > last.get(k, -1)}
        last.update(dict.fromkeys(new, step))
        if new:
            super().log_metrics(new, step)

    @rank_zero_only
    def log_hyperparams(self, params: Any) -> None:
        params = _convert_params(params)
        recorded = self.experiment.get_run(self.run_id).data.params
        changed = sorted(k for k, v in params.items() if k in recorded and str(v)[:250] != recorded[k])
        if changed:
            log.warning("MLflow keeps a run's first value of a parameter: %s not changed in run %s (the run "
                        "folder's .hydra/ has each segment's config)", ", ".join(changed), self.run_id)
        super().log_hyperparams({k: v for k, v in params.items() if k not in changed})
