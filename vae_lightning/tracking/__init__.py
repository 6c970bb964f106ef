"""Tracking: what a run writes to its experiment trackers (the configured Lightning loggers: TensorBoard,
CSV, MLflow, any of them at once), so that no command or callback writes to one tracker's API directly.

- `policy`: what is logged, the same for every tracker: scalars through Lightning, pictures
  (`log_images`, `log_pngs`), hyperparameters with the final metrics (`log_hyperparameters`), an
  evaluation (`log_evaluation`: a plain mapping of scalar name -> value, the run's hyperparameters, figures);
- `base`: the tracker interface (`Tracker`: pictures, hyperparameters, evaluation, close) and the adapter
  of a Lightning logger that has none (`LoggerTracker`);
- `choose`: the tracker of a Lightning logger (the only place that asks a logger's class);
- `tensorboard`, `csv`, `mlflow`: one module per tracker (with the loggers that a run folder continues
  across resumes and evaluations, and where a run's TensorBoard events are).

A run folder is one run in every tracker, continued by a resume and by evaluate. Adding a tracker: a
Lightning logger class with the `Tracker` methods plus its YAML in conf/logger/; or, for a Lightning logger
class that exists already, an adapter module and its line in `choose.ADAPTERS`. Imports only core and
pictures.
"""

from vae_lightning.tracking.base import LoggerTracker, Tracker
from vae_lightning.tracking.choose import tracker_for
from vae_lightning.tracking.policy import (
    hyperparameters,
    log_evaluation,
    log_hyperparameters,
    log_images,
    log_pngs,
)
from vae_lightning.tracking.tensorboard import event_folder

__all__ = ["LoggerTracker", "Tracker", "event_folder", "hyperparameters", "log_evaluation",
           "log_hyperparameters", "log_images", "log_pngs", "tracker_for"]
