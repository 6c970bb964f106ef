"""MLflow: one MLflow run per run folder, recorded in `<run>/mlflow.json` so that a resume and an evaluation
continue it; pictures as artifacts and as images by tag and step. The only module that imports MLflow (an
optional extra: pip install -e ".[mlflow]")."""

from __future__ import annotations

import io
import json
import logging
import re
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.fabric.utilities.logger import _convert_params
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.loggers import MLFlowLogger as LightningMLFlowLogger
from omegaconf import OmegaConf

from vae_lightning.core.errors import UserError
from vae_lightning.core.files import write_text_atomically
from vae_lightning.tracking.base import LoggerTracker, png_name

log = logging.getLogger(__name__)

MLFLOW_RECORD = "mlflow.json"  # in the run folder: the MLflow run that this run folder is
_TAG_KEY = re.compile(r"[^\w\-./ ]")  # what MLflow refuses in a tag or image key
MISSING_MLFLOW = ('logger.mlflow needs the optional extra mlflow: pip install -e ".[mlflow]" '
                  "(or choose logger=tensorboard, csv or none)")


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


def _run_name(run_dir: Path) -> str:
    """The run folder's name; a sweep job's `<multirun folder>/<job>`, so that a sweep's runs read apart."""
    in_sweep = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    return f"{run_dir.parent.name}/{run_dir.name}" if in_sweep else run_dir.name


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
        super().__init__(experiment_name=experiment_name, run_name=_run_name(self.run_dir), tracking_uri=tracking_uri,
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


class MLflowTracker(LoggerTracker):
    """An MLflow logger's tracker (Lightning's or the project's): pictures as artifacts `<subdir>/<name>.png`
    and as images by tag and step (MLflow's image charts); an evaluation's scalars added to the run's history
    as they are (an evaluation repeated at the same step adds a point; MLflow shows the latest), and the run's
    status left as training left it."""

    logger: LightningMLFlowLogger

    def pictures(self, pngs: Mapping[str, bytes], step: int, subdir: str) -> None:
        from PIL import Image

        client, run_id = self.logger.experiment, self.logger.run_id
        with tempfile.TemporaryDirectory() as tmp:
            for tag, png in pngs.items():
                (Path(tmp) / png_name(tag)).write_bytes(png)
                with Image.open(io.BytesIO(png)) as image:
                    client.log_image(run_id, image.convert("RGB"), key=_TAG_KEY.sub("_", tag), step=step)
            client.log_artifacts(run_id, tmp, subdir)

    def evaluation(self, values: Mapping[str, float], params: Mapping[str, Any], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v in values.items()]
        self.logger.experiment.log_batch(self.logger.run_id, metrics=metrics)
        self.logger.log_hyperparams(dict(params))

    def close(self, trained: bool) -> None:
        """After an evaluation the run is left as it is: MLflow's finalize would mark it finished."""
        if trained:
            super().close(trained)
