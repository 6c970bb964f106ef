"""A sweep's whole report (what `python -m vae_lightning.report` writes): its jobs collected (jobs.py), evaluated
first when asked (runs/evaluation.evaluate_jobs, the one way to evaluate many checkpoints), grouped over seeds and
contrasted (groups.py), written as tables (tables.py) and figures (figures.py)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from vae_lightning.evaluation.metrics import CONTRASTS, GROUPS, columns
from vae_lightning.reporting.figures import plot, plot_curves, plot_grids, plot_groups
from vae_lightning.reporting.groups import Family, compare, group_rows, metric_names
from vae_lightning.reporting.jobs import Row, collect, needs_evaluation, sort_rows
from vae_lightning.reporting.tables import write_contrasts_csv, write_csv, write_groups_csv, write_markdown


def write_report(sweep_dirs: Sequence[Path], metric: str = "val/elbo", ascending: bool = False,
                 out: Path | None = None, evaluate_overrides: Sequence[str] | None = None,
                 families: Sequence[Family] = (), contrast_metrics: Sequence[str] | None = None,
                 jobs: int = 1, adjustment: str = "holm") -> list[Row]:
    """Write the report files into `out` (default: the first folder); returns the rows in table order.
    With `evaluate_overrides` (a list, possibly empty), evaluate the completed jobs that have no complete
    evaluation first (`jobs` at a time). `families`: the contrasts (groups.Family) of `contrast_metrics` (default:
    the metric table's CONTRASTS), adjusted within each family by `adjustment` (statistics.ADJUSTMENTS)."""
    rows = collect(sweep_dirs)
    groups = group_rows(rows)
    for family in families:  # a contrast naming what no job has is refused before any evaluation
        for contrast in family.contrasts:
            contrast.check(groups)
    if evaluate_overrides is not None:
        from vae_lightning.runs.evaluation import evaluate_jobs  # heavy: only when asked for

        evaluate_jobs([row.path for row in rows if needs_evaluation(row)], evaluate_overrides, jobs)
        rows = collect(sweep_dirs)
    rows = sort_rows(rows, metric, ascending)
    groups = group_rows(rows)
    compared = compare(groups, families, columns(CONTRASTS) if contrast_metrics is None else contrast_metrics,
                       adjustment)
    out = out if out is not None else sweep_dirs[0]
    out.mkdir(parents=True, exist_ok=True)
    write_markdown(rows, metric, ascending, out / "report.md", sweep_dirs, groups, compared)
    write_csv(rows, out / "report.csv")
    plot(rows, metric, out / "report.png")
    shared = set.intersection(*(set(r.overrides) for r in rows)) if len(rows) > 1 else set()
    if any(len(g.jobs) > 1 for g in groups):
        write_groups_csv(groups, metric_names(groups, ("val/", "test/", "diagnostics/", "eval/")),
                         out / "report_groups.csv")
        plot_groups(groups, columns(GROUPS), shared.__contains__, out / "report_groups.png")
    if compared:
        write_contrasts_csv(compared, out / "report_contrasts.csv")
    plot_curves(rows, out / "report_curves.png")
    if plot_grids(rows, out / "report_grids.png"):
        with open(out / "report.md", "a") as f:
            f.write("\n![val/elbo and active units per job](report_curves.png)\n\n"
                    "![each job's last prior-comparison figure](report_grids.png)\n")
    return rows
