"""The report's tables: report.md (the jobs, sample quality per sampler, the configurations over seeds, the
contrasts) and the CSV files (report.csv, report_groups.csv, report_contrasts.csv). Which metric columns the
markdown shows, in which order and with how many decimals, is read off the metric table (evaluation/metrics.py)."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from pathlib import Path

from vae_lightning.core.files import atomic_text, write_text_atomically
from vae_lightning.evaluation import metrics
from vae_lightning.reporting.groups import ContrastRow, Group
from vae_lightning.reporting.jobs import STATUS_ORDER, Row
from vae_lightning.reporting.statistics import MOST_SEEDS, Interval

QUALITY_METRICS = ("fid", "clarity", "diversity")  # the sample-quality table's cell per job and sampler

def interval_text(interval: Interval, digits: int = 2) -> str:
    """`mean [low, high]`, or `mean (n = 1, no interval)`."""
    if interval.n == 0:
        return ""
    if interval.n < 2:
        return f"{interval.mean:.{digits}f} (n = 1, no interval)"
    return f"{interval.mean:.{digits}f} [{interval.low:.{digits}f}, {interval.high:.{digits}f}]"


def groups_markdown(groups: Sequence[Group], names: Sequence[str], shared: Callable[[str], bool]) -> list[str]:
    """The configurations table: overrides that differ (`shared` tells which overrides every job has), the
    number of seeds and every metric's mean with its 95 % interval."""
    shown = [m for m in names if any(g.values(m) for g in groups)]
    lines = ["| configuration | seeds | " + " | ".join(shown) + " |", "|---|---|" + "---|" * len(shown)]
    for group in groups:
        label = " ".join(o for o in group.overrides if not shared(o)) or "(all)"
        seeds = ",".join(str(s) for s in group.seeds if s >= 0)
        cells = [interval_text(group.interval(m), metrics.digits(m)) for m in shown]
        lines.append(f"| {label} | {len(group.jobs)} ({seeds}) | " + " | ".join(cells) + " |")
    return lines


VERDICT_WORDS = [
    "Each contrast is `treatment - baseline`, paired by seed, with its 95 % t interval. Its verdict: "
    "**equivalent** when the whole interval lies inside ±margin (the family's equivalence margin for the metric), "
    "**higher** or **lower** when it excludes 0, **inconclusive** otherwise (a difference and none are both "
    "still possible), **n < 2** without an interval. The contrasts of one family are adjusted together "
    "(*adjusted*: the same words read off p-values adjusted by the method named, Holm by default, over the "
    "family's size *m*). *MDE* is the minimum detectable effect: the difference the paired t test at this n and "
    "the observed spread finds with 80 % power; *seeds for δ* the seeds it would need to find the margin so.",
]


def _p_text(p: float | None) -> str:
    return "" if p is None or math.isnan(p) else f"{p:.3g}"


def contrasts_markdown(rows: Sequence[ContrastRow]) -> list[str]:
    lines = ["| family (m) | contrast | metric | paired seeds | difference [95 % interval] | p | verdict | "
             "adjusted p | adjusted verdict | margin | MDE | seeds for δ |", "|---" * 12 + "|"]
    for row in rows:
        c = row.comparison
        digits = metrics.digits(row.metric)
        unpaired = (len(row.treatment.jobs) + len(row.baseline.jobs)) // 2 - len(c.seeds)
        seeds = f"{len(c.seeds)}" + (f" (of {len(row.treatment.jobs)} and {len(row.baseline.jobs)})"
                                     if unpaired else "")
        difference = (f"{c.difference.mean:+.{digits}f}" if c.difference.n < 2 else
                      f"{c.difference.mean:+.{digits}f} [{c.difference.low:+.{digits}f}, "
                      f"{c.difference.high:+.{digits}f}]")
        mde, needed = c.detectable_effect, c.seeds_needed
        lines.append(f"| {row.family} ({row.family_size}) | {row.label} | {row.metric} | {seeds} | {difference} | "
                     f"{_p_text(c.p)} | {c.verdict} | {_p_text(row.adjusted_p)} ({row.adjustment}) | "
                     f"{row.adjusted_verdict} | {'' if c.margin is None else f'±{c.margin:g}'} | "
                     f"{'' if math.isnan(mde) else f'{mde:.{digits}f}'} | "
                     f"{'' if needed is None else (f'> {MOST_SEEDS}' if needed > MOST_SEEDS else needed)} |")
    return lines


def write_groups_csv(groups: Sequence[Group], names: Sequence[str], path: Path) -> None:
    with atomic_text(path) as f:
        writer = csv.writer(f)
        writer.writerow(["configuration", "seeds", *[f"{m}{s}" for m in names for s in ("", ":low", ":high")]])
        for group in groups:
            cells = []
            for metric in names:
                interval = group.interval(metric)
                cells += ["" if math.isnan(v) else repr(v) for v in (interval.mean, interval.low, interval.high)]
            writer.writerow([" ".join(group.overrides), ",".join(map(str, group.seeds)), *cells])


def write_contrasts_csv(rows: Sequence[ContrastRow], path: Path) -> None:
    with atomic_text(path) as f:
        writer = csv.writer(f)
        writer.writerow(["family", "family_size", "adjustment", "contrast", "treatment", "baseline", "metric",
                         "paired_seeds", "difference", "low", "high", "sd", "p", "verdict", "adjusted_p",
                         "adjusted_verdict", "margin", "p_equivalent", "adjusted_p_equivalent", "mde", "seeds_needed"])
        for row in rows:
            c = row.comparison
            d = c.difference
            writer.writerow([row.family, row.family_size, row.adjustment, str(row.contrast),
                             " ".join(row.treatment.overrides), " ".join(row.baseline.overrides), row.metric,
                             ",".join(map(str, c.seeds)), repr(d.mean), number(d.low), number(d.high), number(c.sd),
                             number(c.p), c.verdict, number(row.adjusted_p), row.adjusted_verdict, number(c.margin),
                             number(c.p_equivalent), number(row.adjusted_p_equivalent),
                             number(c.detectable_effect), c.seeds_needed or ""])


def number(value: float | None) -> str:
    """A CSV cell: the value in full, or empty for none."""
    return "" if value is None or math.isnan(value) else repr(value)


def columns(rows: list[Row], full: bool) -> list[str]:
    """Metric columns: val/elbo, test/elbo, the diagnostics and the likelihoods (with `full`: every val/, test/,
    diagnostics/ and eval/ metric)."""
    names = {k for r in rows for k in r.metrics}
    if full:
        return sorted(k for k in names if k.startswith(("val/", "test/", "diagnostics/", "eval/")))
    return metrics.present(names, metrics.DETAIL)


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
                  "sampler).", "", *groups_markdown(groups, metrics.columns(metrics.GROUPS), shared_set.__contains__)]
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

