"""The report's figures: report.png (the sort metric per job), report_curves.png (`val/elbo` and active units
per epoch, from TensorBoard events or the CSV logger), report_grids.png (each job's last prior-comparison figure)
and report_groups.png (each configuration's mean over seeds with its interval)."""

from __future__ import annotations

import csv
import math
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path

from matplotlib import colormaps
from matplotlib.figure import Figure
from PIL import Image

from vae_lightning.core.files import save_figure
from vae_lightning.reporting.groups import Group
from vae_lightning.reporting.jobs import Row

SUMMARY_METRICS = ("val/elbo", "test/elbo")  # drawn together in report.png when the report is sorted by one

CURVES = ("val/elbo", "diagnostics/active_units")


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


def plot_groups(groups: Sequence[Group], metrics: Sequence[str], shared: Callable[[str], bool], path: Path) -> bool:
    """One panel per metric: each configuration's mean over seeds with its 95 % interval as an error bar
    (a single seed: a hollow marker without a bar). False when no metric has values."""
    from matplotlib.ticker import MaxNLocator

    shown = [m for m in metrics if any(g.values(m) for g in groups)]
    if not shown:
        return False
    labels = [" ".join(o for o in g.overrides if not shared(o)) or "(all)" for g in groups]
    fig = Figure(figsize=(4.2 * len(shown), 1.6 + 0.32 * len(groups)), layout="constrained")
    axes = fig.subplots(1, len(shown), sharey=True, squeeze=False)[0]
    for ax, metric in zip(axes, shown, strict=True):
        for i, group in enumerate(groups):
            interval = group.interval(metric)
            if interval.n == 0:
                continue
            if interval.n < 2:
                ax.plot([interval.mean], [i], "o", mfc="none", color="C0")
            else:
                error = [[interval.mean - interval.low], [interval.high - interval.mean]]
                ax.errorbar([interval.mean], [i], xerr=error, fmt="o", color="C0", capsize=3)
        ax.set_title(metric, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))  # a narrow panel's tick labels do not run together
        ax.tick_params(axis="x", labelsize=8)
    axes[0].set_yticks(range(len(groups)), labels, fontsize=7)
    axes[0].invert_yaxis()
    fig.suptitle("mean over seeds with 95 % t interval (hollow: one seed, no interval)", fontsize=10)
    save_figure(fig, path, dpi=110)
    return True

