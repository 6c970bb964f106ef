"""`python -m vae_lightning.report <multirun folder> [<multirun folder> ...]`: sweeps as one report.

Reads every job folder of the multiruns (`<folder>/<job>/`): its command-line overrides
(`.hydra/overrides.yaml`), its outcome and final metrics (`status.json`, written by the job: the last
`val/*` and `diagnostics/*` values and the `test/*` ones), and evaluate's metrics when
`<job>/eval/metrics.json` exists (the `eval/...` scalars that evaluate logs: elbo, nll_iwae, nll_exact,
active units, and fid, clarity, diversity, classes_90 per sampler). `--evaluate` first runs evaluate on
every completed job that has none. Writes into the first folder (or `--out`):

- `report.md`: one row per job, sorted by a metric, with the overrides that differ between jobs, the
  validation/test ELBO, the last epoch's diagnostics and the likelihoods; failed jobs last, marked
  failed with their error line; jobs without `status.json` marked unfinished; then a sample-quality
  table (fid / clarity / diversity of every sampler evaluate scored, per job);
- `report.csv`: the same rows with every validation, test, diagnostics and eval metric;
- `report.png`: the sort metric (or val/elbo and test/elbo) of every completed job, one line per job;
- `report_curves.png`: `val/elbo` and `diagnostics/active_units` per epoch, one line per job (TensorBoard);
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
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from vae_lightning import cli
from vae_lightning.errors import UserError
from vae_lightning.evaluation_report import scalars
from vae_lightning.sweep import job_dirs, read_status

log = logging.getLogger(__name__)

SUMMARY_METRICS = ("val/elbo", "test/elbo")
# the report.md columns after them, when present
DETAIL_METRICS = ("diagnostics/active_units", "diagnostics/mutual_information", "eval/elbo", "eval/nll_iwae",
                  "eval/nll_exact", "eval/active_units")
QUALITY_METRICS = ("fid", "clarity", "diversity")
CURVES = ("val/elbo", "diagnostics/active_units")
STATUS_ORDER = {"completed": 0, "unfinished": 1, "failed": 2}
UNFINISHED = "no status.json: still running, or stopped before the end (see the job's train.log)"


@dataclass
class Row:
    """One job of the sweep."""

    job: str  # its folder name; `<multirun folder name>/<job>` when the report covers several multiruns
    path: Path
    status: str  # completed | failed | unfinished
    overrides: list[str]
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""
    varying: list[str] = field(default_factory=list)  # the overrides not shared by every job


def eval_metrics(job: Path) -> dict[str, float]:
    """evaluate's `eval/...` scalars (evaluate.scalars) of `<job>/eval/metrics.json`."""
    path = job / "eval" / "metrics.json"
    if not path.is_file():
        return {}
    try:
        return scalars(json.loads(path.read_text()))
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        log.warning("%s is not an evaluation's metrics.json (%s: %s); its metrics are left out", path,
                    type(err).__name__, err)
        return {}


def read_job(job: Path, name: str) -> Row:
    overrides = [str(o) for o in OmegaConf.load(job / ".hydra" / "overrides.yaml")]
    status = read_status(job)
    if status is None:
        return Row(name, job, "unfinished", overrides, eval_metrics(job), UNFINISHED)
    metrics = {k: float(v) for k, v in status.get("metrics", {}).items()}
    return Row(name, job, status["status"], overrides, {**metrics, **eval_metrics(job)}, status.get("error", ""))


def collect(sweep_dirs: Sequence[Path]) -> list[Row]:
    """Every job of the multirun folders, with `varying` set to the overrides that tell jobs apart."""
    rows = []
    for sweep_dir in sweep_dirs:
        if not sweep_dir.is_dir():
            raise UserError(f"{sweep_dir} is not a folder; give a multirun folder such as "
                            "logs/train/multiruns/<timestamp>")
        jobs = job_dirs(sweep_dir)
        if not jobs:
            raise UserError(f"{sweep_dir} has no job folders (<job>/.hydra/config.yaml); give a multirun folder "
                            "such as logs/train/multiruns/<timestamp>")
        prefix = f"{sweep_dir.name}/" if len(sweep_dirs) > 1 else ""
        rows += [read_job(job, prefix + job.name) for job in jobs]
    shared = set.intersection(*(set(r.overrides) for r in rows)) if len(rows) > 1 else set()
    for row in rows:
        row.varying = [o for o in row.overrides if o not in shared]
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


def write_markdown(rows: list[Row], metric: str, ascending: bool, path: Path, sweep_dirs: Sequence[Path]) -> None:
    cols = columns(rows, full=False)
    shared = [o for o in rows[0].overrides if o not in rows[0].varying]  # `collect` set `varying`
    counts = {s: sum(r.status == s for r in rows) for s in ("completed", "failed", "unfinished")}
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
    path.write_text("\n".join(lines) + "\n")


def write_csv(rows: list[Row], path: Path) -> None:
    cols = columns(rows, full=True)
    with open(path, "w", newline="") as f:
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
    fig.savefig(path, dpi=120)


def event_curves(job: Path, tags: Sequence[str]) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(global step, value)] of the job's TensorBoard scalars (all its event files, a resume included);
    empty for a job without TensorBoard events (logger=none, or killed before it logged)."""
    if not (job / "tensorboard").is_dir():
        return {}
    accumulator = EventAccumulator(str(job / "tensorboard"), size_guidance={"scalars": 0})
    accumulator.Reload()
    present = set(accumulator.Tags()["scalars"])
    return {tag: sorted({e.step: e.value for e in accumulator.Scalars(tag)}.items()) for tag in tags if tag in present}


def plot_curves(rows: list[Row], path: Path) -> None:
    """`val/elbo` and `diagnostics/active_units` against the training step, one line per job."""
    fig = Figure(figsize=(13, 5), layout="constrained")
    axes = fig.subplots(1, len(CURVES))
    for k, row in enumerate(rows):
        curves = event_curves(row.path, CURVES)
        style = {"color": colormaps["tab20"](k % 20), "linestyle": ("-", "--", ":")[k // 20 % 3], "linewidth": 1.2}
        for ax, tag in zip(axes, CURVES, strict=True):
            if tag in curves:
                steps, values = zip(*curves[tag], strict=True)
                ax.plot(steps, values, label=f"{row.job}: {' '.join(row.varying)}", **style)
    for ax, tag in zip(axes, CURVES, strict=True):
        ax.set(title=tag, xlabel="training step")
        ax.grid(alpha=0.3)
    if axes[0].lines:  # jobs without TensorBoard events draw nothing
        axes[0].legend(fontsize=6, loc="lower right")
    fig.savefig(path, dpi=110)


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
    fig.savefig(path, dpi=100)
    return True


def evaluate_jobs(rows: list[Row], overrides: Sequence[str]) -> None:
    """Run evaluate (with these command-line `overrides`) on every completed job without eval/metrics.json."""
    from vae_lightning.config import compose_config
    from vae_lightning.evaluate import evaluate  # heavy: the classifier and the data only when asked for

    for row in rows:
        if row.status != "completed" or (row.path / "eval" / "metrics.json").is_file():
            continue
        log.info("evaluating %s", row.path)
        cfg = compose_config("evaluate", [f"ckpt_path={row.path}", *overrides], row.path / "eval")
        evaluate(cfg)


def write_report(sweep_dirs: Sequence[Path], metric: str = "val/elbo", ascending: bool = False,
                 out: Path | None = None, evaluate_overrides: Sequence[str] | None = None) -> list[Row]:
    """Write the report files into `out` (default: the first folder); returns the rows in table order.
    With `evaluate_overrides` (a list, possibly empty), evaluate the jobs that have no evaluation first."""
    rows = collect(sweep_dirs)
    if evaluate_overrides is not None:
        evaluate_jobs(rows, evaluate_overrides)
        rows = collect(sweep_dirs)
    rows = sort_rows(rows, metric, ascending)
    out = out if out is not None else sweep_dirs[0]
    out.mkdir(parents=True, exist_ok=True)
    write_markdown(rows, metric, ascending, out / "report.md", sweep_dirs)
    write_csv(rows, out / "report.csv")
    plot(rows, metric, out / "report.png")
    plot_curves(rows, out / "report_curves.png")
    if plot_grids(rows, out / "report_grids.png"):
        with open(out / "report.md", "a") as f:
            f.write("\n![val/elbo and active units per job](report_curves.png)\n\n"
                    "![each job's last prior-comparison figure](report_grids.png)\n")
    return rows


EXAMPLES = (
    "python -m vae_lightning.report logs/train/multiruns/2026-01-31_09-30-00_000000",
    "python -m vae_lightning.report logs/train/multiruns/2026-01-31_09-30-00_000000 --sort test/elbo",
    "python -m vae_lightning.report logs/train/multiruns/2026-01-31_09-30-00_000000 --sort eval/nll_iwae --ascending",
    "python -m vae_lightning.report logs/train/multiruns/2026-01-31_09-30-00_000000 "
    "logs/train/multiruns/2026-01-31_11-00-00_000000 --evaluate iwae.k=100 --out logs/study_report",
)


def argument_parser() -> cli.ArgumentParser:
    parser = cli.ArgumentParser("python -m vae_lightning.report", __doc__, EXAMPLES)
    parser.add_argument("sweep_dirs", type=Path, nargs="+",
                        help="multirun folders, e.g. logs/train/multiruns/<timestamp>")
    parser.add_argument("--sort", default="val/elbo", help="metric to sort by (default: val/elbo)")
    parser.add_argument("--ascending", action="store_true", help="lower is better (e.g. eval/nll_iwae, eval/fid)")
    parser.add_argument("--out", type=Path, help="folder for the report files (default: the first multirun folder)")
    parser.add_argument("--evaluate", nargs="*", metavar="OVERRIDE",
                        help="first run evaluate on every completed job without eval/metrics.json, with these "
                             "evaluate overrides (e.g. --evaluate iwae.k=100)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = argument_parser().parse_args(argv)
    rows = cli.run_plain(lambda: write_report(args.sweep_dirs, args.sort, args.ascending, args.out, args.evaluate))
    out = args.out or args.sweep_dirs[0]
    print((out / "report.md").read_text())
    failed = sum(r.status == "failed" for r in rows)
    print(f"wrote report.md, report.csv, report.png, report_curves.png, report_grids.png in {out} "
          f"({len(rows)} jobs, {failed} failed)")


if __name__ == "__main__":
    main()
