"""`python -m vae_lightning.report <multirun folder>`: a sweep as one table and one figure.

Reads every job folder of a multirun (`<folder>/<job>/`): its command-line overrides
(`.hydra/overrides.yaml`), its outcome and final metrics (`status.json`, written by the job), and
evaluate's metrics when `<job>/eval/metrics.json` exists (its top-level numeric entries, as
`eval/<key>`). Writes into the folder:

- `report.md`: one row per job, sorted by a metric, with the overrides that differ between jobs,
  `val/elbo` (last epoch), `test/elbo` (best checkpoint) and the `eval/...` metrics; failed jobs
  last, marked failed with their error line; jobs without `status.json` marked unfinished;
- `report.csv`: the same rows with every validation, test and eval metric;
- `report.png`: the sort metric (or val/elbo and test/elbo) of every completed job, one line per job.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.figure import Figure
from omegaconf import OmegaConf

from vae_lightning import cli
from vae_lightning.errors import UserError
from vae_lightning.sweep import job_dirs, read_status

log = logging.getLogger(__name__)

SUMMARY_METRICS = ("val/elbo", "test/elbo")
STATUS_ORDER = {"completed": 0, "unfinished": 1, "failed": 2}
UNFINISHED = "no status.json: still running, or stopped before the end (see the job's train.log)"


@dataclass
class Row:
    """One job of the sweep."""

    job: str
    status: str  # completed | failed | unfinished
    overrides: list[str]
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""
    varying: list[str] = field(default_factory=list)  # the overrides not shared by every job


def eval_metrics(job: Path) -> dict[str, float]:
    """evaluate's top-level numeric entries of `<job>/eval/metrics.json`, as `eval/<key>`."""
    path = job / "eval" / "metrics.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        log.warning("%s is not valid JSON (%s); its metrics are left out", path, err)
        return {}
    return {f"eval/{k}": float(v) for k, v in data.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def read_job(job: Path) -> Row:
    overrides = [str(o) for o in OmegaConf.load(job / ".hydra" / "overrides.yaml")]
    status = read_status(job)
    if status is None:
        return Row(job.name, "unfinished", overrides, eval_metrics(job), UNFINISHED)
    metrics = {k: float(v) for k, v in status.get("metrics", {}).items()}
    return Row(job.name, status["status"], overrides, {**metrics, **eval_metrics(job)}, status.get("error", ""))


def collect(sweep_dir: Path) -> list[Row]:
    """Every job of a multirun folder, with `varying` set to the overrides that tell jobs apart."""
    if not sweep_dir.is_dir():
        raise UserError(f"{sweep_dir} is not a folder; give a multirun folder such as "
                        "logs/train/multiruns/<timestamp>")
    rows = [read_job(job) for job in job_dirs(sweep_dir)]
    if not rows:
        raise UserError(f"{sweep_dir} has no job folders (<job>/.hydra/config.yaml); give a multirun folder "
                        "such as logs/train/multiruns/<timestamp>")
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
    """Metric columns: val/elbo, test/elbo and eval/* (with `full`: every val/, test/ and eval/ metric)."""
    names = {k for r in rows for k in r.metrics}
    if full:
        chosen = sorted(k for k in names if k.startswith(("val/", "test/")))
    else:
        chosen = [k for k in SUMMARY_METRICS if k in names]
    return chosen + sorted(k for k in names if k.startswith("eval/"))


def _cell(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3g}"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def write_markdown(rows: list[Row], metric: str, ascending: bool, path: Path, sweep_dir: Path) -> None:
    cols = columns(rows, full=False)
    shared = [o for o in rows[0].overrides if o not in rows[0].varying]  # `collect` set `varying`
    counts = {s: sum(r.status == s for r in rows) for s in ("completed", "failed", "unfinished")}
    lines = [
        f"# Sweep report: {sweep_dir}",
        "",
        f"{len(rows)} jobs: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n) + ". "
        f"Sorted by `{metric}` ({'ascending' if ascending else 'descending'}). "
        "`val/elbo`: last epoch; `test/elbo`: the best checkpoint by val/elbo; nats per image.",
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


def write_report(sweep_dir: Path, metric: str = "val/elbo", ascending: bool = False) -> list[Row]:
    """Write report.md, report.csv and report.png into `sweep_dir`; returns the rows in table order."""
    rows = sort_rows(collect(sweep_dir), metric, ascending)
    write_markdown(rows, metric, ascending, sweep_dir / "report.md", sweep_dir)
    write_csv(rows, sweep_dir / "report.csv")
    plot(rows, metric, sweep_dir / "report.png")
    return rows


EXAMPLES = (
    "python -m vae_lightning.report logs/train/multiruns/2026-01-31_09-30-00_000000",
    "python -m vae_lightning.report logs/train/multiruns/2026-01-31_09-30-00_000000 --sort test/elbo",
    "python -m vae_lightning.report logs/train/multiruns/2026-01-31_09-30-00_000000 --sort eval/nll_iwae --ascending",
)


def argument_parser() -> cli.ArgumentParser:
    parser = cli.ArgumentParser("python -m vae_lightning.report", __doc__, EXAMPLES)
    parser.add_argument("sweep_dir", type=Path, help="a multirun folder, e.g. logs/train/multiruns/<timestamp>")
    parser.add_argument("--sort", default="val/elbo", help="metric to sort by (default: val/elbo)")
    parser.add_argument("--ascending", action="store_true", help="lower is better (e.g. eval/nll_iwae, eval/fid)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = argument_parser().parse_args(argv)
    rows = cli.run_plain(lambda: write_report(args.sweep_dir, args.sort, args.ascending))
    print((args.sweep_dir / "report.md").read_text())
    failed = sum(r.status == "failed" for r in rows)
    print(f"wrote report.md, report.csv, report.png in {args.sweep_dir} ({len(rows)} jobs, {failed} failed)")


if __name__ == "__main__":
    main()
