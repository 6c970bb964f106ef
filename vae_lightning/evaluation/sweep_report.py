"""A sweep's report: every job of one or more multirun folders as one table, with figures (the
library half of `python -m vae_lightning.report`).

Reads every job folder of the multiruns (`<folder>/<job>/`): its command-line overrides
(`.hydra/overrides.yaml`), its outcome and final metrics (`status.json`, written by the job: the last
`val/*` and `diagnostics/*` values and the `test/*` ones), and evaluate's metrics when
`<job>/eval/metrics.json` exists (the `eval/...` scalars that evaluate logs: elbo, nll_iwae, nll_exact,
active units, and fid, clarity, diversity, classes_90 per sampler). `evaluate_jobs` first runs evaluate on
every completed job that has none. `write_report` writes into the first folder (or `out`):

- `report.md`: one row per job, sorted by a metric, with the overrides that differ between jobs, the
  validation/test ELBO, the last epoch's diagnostics and the likelihoods; failed jobs last, marked
  failed with their error line; jobs that SLURM cancelled (or requeued, and that have not run again yet)
  marked so, with the signal and the checkpoint; jobs without `status.json` marked unfinished; then a sample-quality
  table (fid / clarity / diversity of every sampler evaluate scored, per job);
- `report.csv`: the same rows with every validation, test, diagnostics and eval metric;
- `report.png`: the sort metric (or val/elbo and test/elbo) of every completed job, one line per job;
- `report_curves.png`: `val/elbo` and `diagnostics/active_units` per epoch, one line per job (TensorBoard,
  or the CSV logger's metrics.csv for a sweep logged with logger=csv);
- `report_grids.png`: each job's last `samples_comparison.png` (the prior-comparison figure), side by side.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib import colormaps
from matplotlib.figure import Figure
from omegaconf import OmegaConf
from PIL import Image

from vae_lightning.core.errors import UserError
from vae_lightning.core.files import atomic_text, save_figure, write_text_atomically
from vae_lightning.evaluation.results import scalars
from vae_lightning.evaluation.seed_groups import (
    CONTRAST_METRICS,
    VERDICT_WORDS,
    ContrastRow,
    Family,
    Group,
    compare,
    contrasts_markdown,
    group_rows,
    groups_markdown,
    metric_names,
    plot_groups,
    write_contrasts_csv,
    write_groups_csv,
)
from vae_lightning.runs.folders import SEED, configuration, split_override
from vae_lightning.runs.sweep import STATUS_FILE, job_dirs, member_dirs, read_status

log = logging.getLogger(__name__)

SUMMARY_METRICS = ("val/elbo", "test/elbo")
# the report.md columns after them, when present
DETAIL_METRICS = ("diagnostics/active_units", "diagnostics/mutual_information", "eval/elbo", "eval/nll_iwae",
                  "eval/nll_exact", "eval/active_units")
QUALITY_METRICS = ("fid", "clarity", "diversity")
CURVES = ("val/elbo", "diagnostics/active_units")
STATUS_ORDER = {"completed": 0, "incomplete": 1, "unfinished": 2, "requeued": 3, "cancelled": 4, "failed": 5}
UNFINISHED = "no status.json: still running, or stopped before the end (see the job's train.log)"
# the configuration table's metrics, when present
GROUP_METRICS = ("val/elbo", "test/elbo", "eval/nll_exact", "eval/nll_iwae", "eval/active_units",
                 "diagnostics/mutual_information", "eval/fid/own_prior", "eval/clarity/own_prior",
                 "eval/diversity/own_prior", "eval/fid/aggregate_posterior", "eval/precision/own_prior",
                 "eval/recall/own_prior", "eval/surgery/mutual_information", "eval/surgery/marginal_kl",
                 "eval/prior_holes/mass", "eval/bound_gaps/amortization_gap", "eval/bound_gaps/approximation_gap")


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
    if member_dirs(folder):  # one run of K members: a report over its members, as over a sweep of seeds
        return member_dirs(folder)
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
    for row in rows:  # what tells jobs apart: not where they were written (seed_groups.NOT_CONFIGURATION)
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


def columns(rows: list[Row], full: bool) -> list[str]:
    """Metric columns: val/elbo, test/elbo, the diagnostics and the likelihoods (with `full`: every val/, test/,
    diagnostics/ and eval/ metric)."""
    names = {k for r in rows for k in r.metrics}
    if full:
        return sorted(k for k in names if k.startswith(("val/", "test/", "diagnostics/", "eval/")))
    return [k for k in (*SUMMARY_METRICS, *DETAIL_METRICS) if k in names]


def samplers_scored(rows: list[Row]) -> list[str]:
    """The sampler names evaluate scored in any job, in first-seen order (the test set's row last)."""
    names = dict.fromkeys(k.split("/", 2)[2] for r in rows for k in r.metrics if k.startswith("eval/fid/"))
    return sorted(names, key=lambda n: n == "test")


def _cell(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3g}"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def write_markdown(rows: list[Row], metric: str, ascending: bool, path: Path, sweep_dirs: Sequence[Path],
                   groups: Sequence[Group], contrasts: Sequence[ContrastRow]) -> None:
    cols = columns(rows, full=False)
    common = set.intersection(*(set(r.overrides) for r in rows)) if len(rows) > 1 else set()
    shared = [o for o in rows[0].overrides if o in common]
    counts = {s: sum(r.status == s for r in rows) for s in STATUS_ORDER}
    lines = [
        f"# Sweep report: {', '.join(map(str, sweep_dirs))}",
        "",
        f"{len(rows)} jobs: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n) + ". "
        f"Sorted by `{metric}` ({'ascending' if ascending else 'descending'}). "
        "`val/elbo` and `diagnostics/*`: last epoch; `test/elbo`: the best checkpoint by val/elbo; `eval/*`: "
        "evaluate on the last checkpoint; nats per image.",
        "",
        f"Overrides shared by every job: `{' '.join(shared)}`" if shared else "No override is shared by every job.",
        "",
        "| job | status | overrides | " + " | ".join(cols) + " | error |",
        "|---|---|---|" + "---:|" * len(cols) + "---|",
    ]
    for row in rows:
        cells = [_cell(row.metrics.get(c)) for c in cols]
        lines.append(f"| {row.job} | {row.status} | {_md_escape(' '.join(row.varying))} | " + " | ".join(cells)
                     + f" | {_md_escape(row.error)} |")
    names = samplers_scored(rows)
    if names:
        lines += ["", "Sample quality per sampler (evaluate): fid / clarity / diversity; fid lower is better, "
                  "diversity at most ln 10 = 2.303.", "",
                  "| job | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for row in rows:
            cells = [" / ".join(_cell(row.metrics.get(f"eval/{m}/{n}")) for m in QUALITY_METRICS)
                     if f"eval/fid/{n}" in row.metrics else "" for n in names]
            lines.append(f"| {row.job} | " + " | ".join(cells) + " |")
    if any(len(g.jobs) > 1 for g in groups):
        shared_set = set(shared)
        lines += ["", "## Configurations over seeds", "",
                  "Jobs whose overrides differ only in `seed` are one configuration: mean over its seeds and 95 % "
                  "Student-t interval [low, high] (completed jobs only; `own_prior`: the model's own prior as "
                  "sampler).", "", *groups_markdown(groups, GROUP_METRICS, shared_set.__contains__)]
    if contrasts:
        lines += ["", "## Contrasts", "", *VERDICT_WORDS, "", *contrasts_markdown(contrasts)]
    write_text_atomically(path, "\n".join(lines) + "\n")


def write_csv(rows: list[Row], path: Path) -> None:
    cols = columns(rows, full=True)
    with atomic_text(path) as f:
        writer = csv.writer(f)
        writer.writerow(["job", "status", "overrides", *cols, "error"])
        for row in rows:
            writer.writerow([row.job, row.status, " ".join(row.varying),
                             *(repr(row.metrics[c]) if c in row.metrics else "" for c in cols), row.error])


def plot(rows: list[Row], metric: str, path: Path) -> None:
    """One line per completed job, in table order (best at the top), with a dot at its `metric`
    (and at both val/elbo and test/elbo when sorting by one of them)."""
    shown = [r for r in rows if r.status == "completed" and not math.isnan(r.metrics.get(metric, math.nan))]
    hidden = len(rows) - len(shown)
    metrics = SUMMARY_METRICS if metric in SUMMARY_METRICS else (metric,)
    fig = Figure(figsize=(7, 1.4 + 0.35 * max(len(shown), 1)))
    ax = fig.subplots()
    for name, marker in zip(metrics, "ox", strict=False):
        points = [(r.metrics[name], i) for i, r in enumerate(shown) if name in r.metrics]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker, linestyle="", label=name)
    ax.set_yticks(range(len(shown)), [f"{r.job}: {' '.join(r.varying)}" for r in shown], fontsize=8)
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel(" / ".join(metrics))
    ax.legend(fontsize=8)
    ax.set_title(f"{len(shown)} jobs by {metric}" + (f"; {hidden} failed, unfinished or without it: not shown"
                                                     if hidden else ""), fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def event_curves(job: Path, tags: Sequence[str]) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(global step, value)] of the job's TensorBoard scalars (all its event files, a resume included);
    empty for a job without TensorBoard events (logger=none, or killed before it logged)."""
    if not (job / "tensorboard").is_dir():
        return {}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from vae_lightning.tracking import event_folder

    accumulator = EventAccumulator(str(event_folder(job)), size_guidance={"scalars": 0})
    accumulator.Reload()
    present = set(accumulator.Tags()["scalars"])
    return {tag: sorted({e.step: e.value for e in accumulator.Scalars(tag)}.items()) for tag in tags if tag in present}


def csv_curves(job: Path, tags: Sequence[str]) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(global step, value)] from the job's CSV logger (`<job>/csv/metrics.csv`, logger=csv: one row
    per logging call, a metric's column empty in the rows of others); empty for a job without one."""
    path = job / "csv" / "metrics.csv"
    if not path.is_file():
        return {}
    points: dict[str, dict[int, float]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            for tag in tags:
                if row.get(tag):
                    points.setdefault(tag, {})[int(row["step"])] = float(row[tag])
    return {tag: sorted(values.items()) for tag, values in points.items()}


def plot_curves(rows: list[Row], path: Path) -> None:
    """`val/elbo` and `diagnostics/active_units` against the training step, one line per job (from its
    TensorBoard events, else from its CSV logger's metrics.csv)."""
    columns = 1 if len(rows) <= 12 else 2  # many jobs: the legend goes under the panels, in two columns
    fig = Figure(figsize=(13, 5 + (0.0 if columns == 1 else 0.13 * math.ceil(len(rows) / columns))),
                 layout="constrained")
    axes = fig.subplots(1, len(CURVES))
    for k, row in enumerate(rows):
        curves = event_curves(row.path, CURVES) or csv_curves(row.path, CURVES)
        style = {"color": colormaps["tab20"](k % 20), "linestyle": ("-", "--", ":")[k // 20 % 3], "linewidth": 1.2}
        for ax, tag in zip(axes, CURVES, strict=True):
            if tag in curves:
                steps, values = zip(*curves[tag], strict=True)
                ax.plot(steps, values, label=f"{row.job}: {' '.join(row.varying)}", **style)
    for ax, tag in zip(axes, CURVES, strict=True):
        ax.set(title=tag, xlabel="training step")
        ax.grid(alpha=0.3)
    if axes[0].lines and columns == 1:  # jobs without TensorBoard events or metrics.csv draw nothing
        axes[0].legend(fontsize=6, loc="lower right")
    elif axes[0].lines:
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=columns, fontsize=6)
    save_figure(fig, path, dpi=110)


def last_comparison(job: Path) -> Path | None:
    """The job's last epoch's prior-comparison figure, if it drew one."""
    figures = sorted((job / "samples").glob("epoch_*/samples_comparison.png"))
    return figures[-1] if figures else None


def plot_grids(rows: list[Row], path: Path, ncols: int = 4) -> bool:
    """Every job's last comparison figure side by side, titled with its overrides; False when none has one."""
    shown = [(row, figure) for row in rows if (figure := last_comparison(row.path)) is not None]
    if not shown:
        return False
    nrows = -(-len(shown) // ncols)
    with Image.open(shown[0][1]) as image:
        aspect = image.height / image.width
    # a panel is 5 inches wide, as tall as the first figure's aspect asks, plus three lines of title
    fig = Figure(figsize=(5 * ncols, (5 * aspect + 0.6) * nrows), layout="constrained")
    for k, (row, figure) in enumerate(shown):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        with Image.open(figure) as image:
            ax.imshow(image.convert("RGB"))
        ax.set_axis_off()
        title = f"{row.job}: {' '.join(row.varying)} ({figure.parent.name})"
        ax.set_title(textwrap.fill(title, width=60, max_lines=3), fontsize=9)
    save_figure(fig, path, dpi=100)
    return True


def needs_evaluation(row: Row) -> bool:
    """A completed job without a complete evaluation."""
    return row.status == "incomplete" or (row.status == "completed"
                                          and not (row.path / "eval" / "metrics.json").is_file())


def evaluate_jobs(rows: list[Row], overrides: Sequence[str], jobs: int = 1) -> None:
    """Run evaluate (with these command-line `overrides`) on every completed job without a complete evaluation,
    `jobs` at a time (each in its own process, with cores / jobs torch threads). The classifier, the test set
    and its classifier features and each data config's training images are made once per process and shared
    by its evaluations (pipeline.SharedInputs)."""
    paths = [row.path for row in rows if needs_evaluation(row)]
    if jobs <= 1 or len(paths) <= 1:
        evaluate_paths(paths, list(overrides))
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from vae_lightning.runs.threads import cpu_count

    chunks = [paths[i::jobs] for i in range(jobs)]
    threads = max(1, cpu_count() // jobs)
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        for done in [pool.submit(evaluate_paths, chunk, list(overrides), threads) for chunk in chunks if chunk]:
            done.result()


def evaluate_paths(paths: Sequence[Path], overrides: list[str], threads: int | None = None) -> None:
    """Evaluate each job folder in turn, sharing what their evaluations have in common."""
    import torch

    from vae_lightning.evaluation.pipeline import SharedInputs, evaluate_checkpoint  # heavy: only when asked for
    from vae_lightning.runs.folders import compose_config

    if threads is not None:
        torch.set_num_threads(threads)
    shared = SharedInputs()
    for path in paths:
        log.info("evaluating %s", path)
        cfg = compose_config("evaluate", [f"ckpt_path={path}", *overrides], path / "eval")
        evaluate_checkpoint(cfg, shared)


def write_report(sweep_dirs: Sequence[Path], metric: str = "val/elbo", ascending: bool = False,
                 out: Path | None = None, evaluate_overrides: Sequence[str] | None = None,
                 families: Sequence[Family] = (), contrast_metrics: Sequence[str] = CONTRAST_METRICS,
                 jobs: int = 1, adjustment: str = "holm") -> list[Row]:
    """Write the report files into `out` (default: the first folder); returns the rows in table order.
    With `evaluate_overrides` (a list, possibly empty), evaluate the jobs that have no evaluation first
    (`jobs` at a time). `families`: the contrasts (seed_groups.Family), adjusted within each family by
    `adjustment` (statistics.ADJUSTMENTS)."""
    rows = collect(sweep_dirs)
    groups = group_rows(rows)
    for family in families:  # a contrast naming what no job has is refused before any evaluation
        for contrast in family.contrasts:
            contrast.check(groups)
    if evaluate_overrides is not None:
        evaluate_jobs(rows, evaluate_overrides, jobs)
        rows = collect(sweep_dirs)
    rows = sort_rows(rows, metric, ascending)
    groups = group_rows(rows)
    compared = compare(groups, families, contrast_metrics, adjustment)
    out = out if out is not None else sweep_dirs[0]
    out.mkdir(parents=True, exist_ok=True)
    write_markdown(rows, metric, ascending, out / "report.md", sweep_dirs, groups, compared)
    write_csv(rows, out / "report.csv")
    plot(rows, metric, out / "report.png")
    shared = set.intersection(*(set(r.overrides) for r in rows)) if len(rows) > 1 else set()
    if any(len(g.jobs) > 1 for g in groups):
        write_groups_csv(groups, metric_names(groups, ("val/", "test/", "diagnostics/", "eval/")),
                         out / "report_groups.csv")
        plot_groups(groups, GROUP_METRICS, shared.__contains__, out / "report_groups.png")
    if compared:
        write_contrasts_csv(compared, out / "report_contrasts.csv")
    plot_curves(rows, out / "report_curves.png")
    if plot_grids(rows, out / "report_grids.png"):
        with open(out / "report.md", "a") as f:
            f.write("\n![val/elbo and active units per job](report_curves.png)\n\n"
                    "![each job's last prior-comparison figure](report_grids.png)\n")
    return rows
