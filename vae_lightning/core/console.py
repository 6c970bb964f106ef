"""What a command shows on the console: its own lines (the run it starts, what it wrote, what to do next)
and warnings, not the chatter of the libraries it runs on; the log file keeps everything.

- `say(...)`: a line for the console and the log file (the `vae_lightning.console` logger);
- `Quiet`: the console handler's filter (conf/hydra/job_logging/quiet.yaml): the console's own lines,
  the model summary when one is asked for (`trainer.enable_model_summary=true`), and warnings or worse;
  with `verbose=true` (or `hydra.verbose=true`) every record, Lightning's device lines and tips included;
- `quiet_warnings()`: Python warnings of our dependencies that say nothing to a user of this project
  (known deprecations inside Lightning, hints that do not apply to in-memory batches) are not shown unless
  verbose (Lightning's `srun` hint on a machine that merely has SLURM installed: launchers/slurm.py).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

CONSOLE = "vae_lightning.console"
# loggers whose INFO records are shown too: what the user asked to see
SHOWN = (CONSOLE, "lightning.pytorch.callbacks.model_summary", "lightning.pytorch.utilities.model_summary")
# (message regex, category) of warnings that are noise for this project's runs
KNOWN_WARNINGS: tuple[tuple[str, type[Warning]], ...] = (
    (r".*isinstance\(treespec, LeafSpec\)` is deprecated.*", Warning),
    (r".*does not have many workers.*", Warning),
    (r".*Checkpoint directory .* exists and is not empty.*", Warning),
    (r".*Consider setting `persistent_workers=True`.*", Warning),
)


def say(message: str, *args: Any) -> None:
    """A line for the console and the log file."""
    logging.getLogger(CONSOLE).info(message, *args)


def is_verbose(setting: Any = None) -> bool:
    """Whether the command runs verbose: its `verbose` setting, or Hydra's `hydra.verbose`."""
    if setting:
        return True
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.initialized() and bool(HydraConfig.get().verbose)


class Quiet(logging.Filter):
    """Passes the console's own lines, the model summary, and records of level WARNING or more (everything
    when verbose)."""

    def __init__(self, verbose: Any = False) -> None:
        super().__init__()
        self.verbose = is_verbose(bool(verbose) and str(verbose).lower() not in ("false", "0", "none"))

    def filter(self, record: logging.LogRecord) -> bool:
        return self.verbose or record.levelno >= logging.WARNING or record.name.startswith(SHOWN)


# Lightning's loggers that get a console handler of their own (and stop propagating) when Lightning is imported
# before logging is configured: always `lightning`; `lightning.pytorch` and `lightning.fabric` in a process that
# imported them first (a joblib or submitit worker, a process that runs several commands)
LIBRARY_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric")


def route_library_logs() -> None:
    """Lightning gives its loggers (LIBRARY_LOGGERS) console handlers of their own at import; in a command, whose
    root logger has the console filter and the log file, those handlers go, so Lightning's records are
    filtered and logged like every other (and not printed twice)."""
    if not logging.getLogger().handlers:  # not a configured command: leave Lightning's own console alone
        return
    for name in LIBRARY_LOGGERS:
        library = logging.getLogger(name)
        for handler in list(library.handlers):
            library.removeHandler(handler)
        library.propagate = True


def quiet_warnings(verbose: bool = False) -> None:
    """Hide the known warnings of our dependencies (KNOWN_WARNINGS) unless verbose."""
    if verbose:
        return
    for message, category in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
