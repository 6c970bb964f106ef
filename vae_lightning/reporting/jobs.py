"""A sweep's job folders, read: each job's overrides, its outcome and final metrics (`status.json`, written by the
job: the last `val/*` and `diagnostics/*` values and the `test/*` ones) and evaluate's `eval/...` scalars when
`<job>/eval/metrics.json` exists (read off the metric table, evaluation/metrics.py), as one `Row` per job."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from vae_lightning.core.errors import UserError
from vae_lightning.runs.folders import SEED, configuration, split_override
from vae_lightning.runs.sweep import STATUS_FILE, job_dirs, member_dirs, read_status

STATUS_ORDER = {"completed": 0, "incomplete": 1, "unfinished": 2, "requeued": 3, "cancelled": 4, "failed": 5}


UNFINISHED = "no status.json: still running, or stopped before the end (see the job's train.log)"


@dataclass
class Row:
    """One job of the sweep."""

    job: str  # its folder name; `<multirun folder name>/<job>` when the report covers several multiruns
    path: Path
    status: str  # completed | incomplete (its evaluation is) | unfinished | requeued (by SLURM: runs again) |
    # cancelled (by SLURM, its last.ckpt saved) | failed
    overrides: list[str]
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""
    varying: list[str] = field(default_factory=list)  # the overrides not shared by every job


def eval_metrics(job: Path) -> tuple[dict[str, float], str]:
    """evaluate's `eval/...` scalars (evaluation.results.scalars) of `<job>/eval/metrics.json`, and why they
    are left out when they are (a metrics.json that does not parse, or whose per-image file does not have
    its row count: an evaluation killed while it rewrote them); "" when they are there."""
    from vae_lightning.evaluation.results import scalars  # torch: not for `report --help`

    path = job / "eval" / "metrics.json"
    if not path.is_file():
        return {}, ""
    try:
        results = json.loads(path.read_text())
        values = scalars(results)
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        return {}, f"{path} is not an evaluation's metrics.json ({type(err).__name__}: {err})"
    per_image = results.get("per_image")
    if per_image is not None:
        rows = per_image_rows(path.parent / per_image["file"])
        if rows != per_image["rows"]:
            return {}, (f"incomplete evaluation: {per_image['file']} has {rows} rows, metrics.json says "
                        f"{per_image['rows']}; evaluate the job again")
    return values, ""


def per_image_rows(path: Path) -> int | None:
    """The number of data rows of a per-image CSV file, None when it is missing."""
    if not path.is_file():
        return None
    with open(path) as f:
        return max(0, sum(1 for line in f if line.strip()) - 1)


def read_job(job: Path, name: str) -> Row:
    overrides = [str(o) for o in OmegaConf.load(job / ".hydra" / "overrides.yaml")]
    status = read_status(job)
    evaluation, problem = eval_metrics(job)
    if status is None:
        return Row(name, job, "unfinished", overrides, evaluation, UNFINISHED)
    metrics = {k: float(v) for k, v in status.get("metrics", {}).items()}
    state = "incomplete" if problem and status["status"] == "completed" else status["status"]
    return Row(name, job, state, overrides, {**metrics, **evaluation}, problem or status.get("error", ""))


def sweep_jobs(folder: Path) -> list[Path]:
    """The job folders of a multirun folder; a UserError naming what `folder` is when it is not one (a run folder,
    whose eval/ is no job; a folder of separate runs, none of which a sweep started)."""
    form = "give a multirun folder such as logs/train/multiruns/<timestamp>"
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder; {form}")
    members = member_dirs(folder)
    if members:  # one run of K members: a report over its members, as over a sweep of seeds
        return members
    if (folder / ".hydra" / "config.yaml").is_file():
        raise UserError(f"{folder} is a run folder, not a sweep: report compares the jobs of multirun folders "
                        f"(logs/train/multiruns/<timestamp>); one run's results: python -m vae_lightning.evaluate "
                        f"ckpt_path={folder}, its curves: tensorboard --logdir {folder}")
    jobs = job_dirs(folder)
    if not jobs:
        raise UserError(f"{folder} has no job folders (<job>/.hydra/config.yaml); {form}")
    if not (folder / "multirun.yaml").is_file() and not any((job / STATUS_FILE).is_file() for job in jobs):
        raise UserError(f"{folder} holds separate runs, not a sweep's jobs (no multirun.yaml, no job's "
                        f"{STATUS_FILE}); {form}, or compare runs in TensorBoard: tensorboard --logdir {folder}")
    return jobs


def collect(sweep_dirs: Sequence[Path]) -> list[Row]:
    """Every job of the multirun folders, with `varying` set to the overrides that tell jobs apart."""
    rows = []
    for sweep_dir in sweep_dirs:
        jobs = sweep_jobs(sweep_dir)
        prefix = f"{sweep_dir.name}/" if len(sweep_dirs) > 1 else ""
        rows += [read_job(job, prefix + job.relative_to(sweep_dir).as_posix()) for job in jobs]
    shared = set.intersection(*(set(r.overrides) for r in rows)) if len(rows) > 1 else set()
    for row in rows:  # what tells jobs apart: not where they were written (runs/folders.configuration)
        kept = set(configuration(row.overrides))
        row.varying = [o for o in row.overrides if o not in shared and (o in kept or split_override(o)[0] == SEED)]
    return rows


def sort_rows(rows: list[Row], metric: str, ascending: bool) -> list[Row]:
    """Completed jobs first, then unfinished, then failed; within each, best `metric` first, jobs
    without it last."""
    def key(row: Row) -> tuple[int, bool, float]:
        value = row.metrics.get(metric, math.nan)
        missing = math.isnan(value)
        return STATUS_ORDER.get(row.status, len(STATUS_ORDER)), missing, 0.0 if missing else (
            value if ascending else -value)

    return sorted(rows, key=key)


def needs_evaluation(row: Row) -> bool:
    """A completed job without a complete evaluation."""
    return row.status == "incomplete" or (row.status == "completed"
                                          and not (row.path / "eval" / "metrics.json").is_file())

