"""A sweep's jobs grouped over seeds, and named contrasts between the groups (part of a sweep's report).

Jobs whose overrides differ only in `seed` are one configuration: its row gives the number of seeds
and, for every metric, the mean with a 95 % Student-t interval over the seeds (`n = 1, no interval`
for a single seed). A contrast `key=A:B` compares every configuration with `key=A` to the one with
`key=B` and everything else equal (`key=*:B`: every other value of the key against B), as paired
differences A - B over the seeds both have, each with its interval and a verdict read off the
interval (statistics.py): `higher`, `lower`, `no difference detected`, or `n < 2` without one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from vae_lightning.core.errors import UserError
from vae_lightning.evaluation.statistics import Comparison, Interval, paired_difference, t_interval
from vae_lightning.runs.folders import SEED, configuration, split_override

if TYPE_CHECKING:
    from vae_lightning.evaluation.sweep_report import Row

# The metrics a contrast compares unless told others: the likelihoods, the collapse diagnostics and the
# sample quality of each model's own prior
CONTRAST_METRICS = ("test/elbo", "eval/nll_exact", "eval/nll_iwae", "eval/active_units",
                    "diagnostics/mutual_information", "eval/fid/own_prior", "eval/clarity/own_prior",
                    "eval/diversity/own_prior")


@dataclass
class Group:
    """The jobs of one configuration: its overrides without the seed, and seed -> job row."""

    overrides: tuple[str, ...]
    jobs: dict[int, Row] = field(default_factory=dict)

    @property
    def seeds(self) -> list[int]:
        return sorted(self.jobs)

    def values(self, metric: str) -> dict[int, float]:
        """seed -> the metric's value, for the completed jobs that have it."""
        return {s: row.metrics[metric] for s, row in self.jobs.items()
                if row.status == "completed" and metric in row.metrics and math.isfinite(row.metrics[metric])}

    def interval(self, metric: str) -> Interval:
        return t_interval(list(self.values(metric).values()))

    def setting(self, key: str) -> str | None:
        return dict(split_override(o) for o in self.overrides).get(key)


def seed_of(row: Row) -> int | None:
    """A job's seed: its `seed=` override, else the seed its saved config trained with."""
    for override in row.overrides:
        key, value = split_override(override)
        if key == SEED and value.lstrip("-").isdigit():
            return int(value)
    config = row.path / ".hydra" / "config.yaml"
    if config.is_file():
        from omegaconf import OmegaConf

        seed = OmegaConf.load(config).get(SEED)
        return int(seed) if isinstance(seed, int) else None
    return None


def group_rows(rows: Iterable[Row]) -> list[Group]:
    """The configurations of the jobs (overrides without the seed), in first-seen order. Two jobs of one
    configuration with the same seed (a rerun): the later one counts."""
    groups: dict[tuple[str, ...], Group] = {}
    for row in rows:
        key = configuration(row.overrides)
        seed = seed_of(row)
        group = groups.setdefault(key, Group(key))
        group.jobs[seed if seed is not None else -1 - len(group.jobs)] = row
    return list(groups.values())


@dataclass(frozen=True)
class Contrast:
    """`key=treatment:baseline`; treatment `*` stands for every other value of the key."""

    key: str
    treatment: str
    baseline: str

    @classmethod
    def parse(cls, text: str) -> Contrast:
        key, _, values = text.partition("=")
        treatment, _, baseline = values.partition(":")
        if not key or not treatment or not baseline or "=" in values:
            raise UserError(f"--contrast {text} is not a contrast: write key=treatment:baseline, e.g. "
                            "annealing=linear:constant or prior=*:normal")
        return cls(key.strip(), treatment.strip(), baseline.strip())

    def __str__(self) -> str:
        return f"{self.key}={self.treatment}:{self.baseline}"

    def check(self, groups: Sequence[Group]) -> None:
        """One line naming the key or value no job has, with what the jobs have."""
        values = sorted({v for g in groups if (v := g.setting(self.key)) is not None})
        if not values:
            keys = sorted({split_override(o)[0] for g in groups for o in g.overrides} | {SEED})
            raise UserError(f"--contrast {self}: no job has the override {self.key}; the jobs' override keys: "
                            f"{', '.join(keys)}")
        for value in (self.baseline, self.treatment):
            if value != "*" and value not in values:
                raise UserError(f"--contrast {self}: no job has {self.key}={value}; its values: {', '.join(values)}")

    def pairs(self, groups: Sequence[Group]) -> list[tuple[Group, Group]]:
        """(treatment group, baseline group) pairs whose other overrides are equal."""
        def rest(group: Group) -> tuple[str, ...]:
            return tuple(o for o in group.overrides if split_override(o)[0] != self.key)

        baselines = {rest(g): g for g in groups if g.setting(self.key) == self.baseline}
        treated = [g for g in groups if g.setting(self.key) not in (None, self.baseline)
                   and (self.treatment == "*" or g.setting(self.key) == self.treatment)]
        return [(g, baselines[rest(g)]) for g in treated if rest(g) in baselines]


@dataclass(frozen=True)
class ContrastRow:
    contrast: Contrast
    treatment: Group
    baseline: Group
    metric: str
    comparison: Comparison
    label: str  # `key=A - B (the other overrides that tell configurations apart)`


def compare(groups: Sequence[Group], contrasts: Sequence[Contrast], metrics: Sequence[str]) -> list[ContrastRow]:
    """Every contrast's paired differences for every metric that both arms have."""
    shared = set.intersection(*(set(g.overrides) for g in groups)) if groups else set()
    rows = []
    for contrast in contrasts:
        contrast.check(groups)
        for treatment, baseline in contrast.pairs(groups):
            others = [o for o in baseline.overrides if split_override(o)[0] != contrast.key and o not in shared]
            label = (f"{contrast.key}={treatment.setting(contrast.key)} - {contrast.baseline}"
                     + (f" ({' '.join(others)})" if others else ""))
            for metric in metrics:
                a, b = treatment.values(metric), baseline.values(metric)
                if a and b:
                    rows.append(ContrastRow(contrast, treatment, baseline, metric, paired_difference(a, b), label))
    return rows


def interval_text(interval: Interval, digits: int = 2) -> str:
    """`mean [low, high]`, or `mean (n = 1, no interval)`."""
    if interval.n == 0:
        return ""
    if interval.n < 2:
        return f"{interval.mean:.{digits}f} (n = 1, no interval)"
    return f"{interval.mean:.{digits}f} [{interval.low:.{digits}f}, {interval.high:.{digits}f}]"


def _digits(metric: str) -> int:
    return 3 if metric.split("/")[1] in ("clarity", "diversity") else 2


def groups_markdown(groups: Sequence[Group], metrics: Sequence[str], shared: Callable[[str], bool]) -> list[str]:
    """The configurations table: overrides that differ (`shared` tells which overrides every job has), the
    number of seeds and every metric's mean with its 95 % interval."""
    shown = [m for m in metrics if any(g.values(m) for g in groups)]
    lines = ["| configuration | seeds | " + " | ".join(shown) + " |", "|---|---|" + "---|" * len(shown)]
    for group in groups:
        label = " ".join(o for o in group.overrides if not shared(o)) or "(all)"
        seeds = ",".join(str(s) for s in group.seeds if s >= 0)
        cells = [interval_text(group.interval(m), _digits(m)) for m in shown]
        lines.append(f"| {label} | {len(group.jobs)} ({seeds}) | " + " | ".join(cells) + " |")
    return lines


def contrasts_markdown(rows: Sequence[ContrastRow]) -> list[str]:
    lines = ["| contrast | metric | paired seeds | difference [95 % interval] | verdict |", "|---|---|---|---|---|"]
    for row in rows:
        c = row.comparison
        unpaired = (len(row.treatment.jobs) + len(row.baseline.jobs)) // 2 - len(c.seeds)
        seeds = f"{len(c.seeds)}" + (f" (of {len(row.treatment.jobs)} and {len(row.baseline.jobs)})"
                                     if unpaired else "")
        difference = (f"{c.difference.mean:+.{_digits(row.metric)}f}" if c.difference.n < 2 else
                      f"{c.difference.mean:+.{_digits(row.metric)}f} [{c.difference.low:+.{_digits(row.metric)}f}, "
                      f"{c.difference.high:+.{_digits(row.metric)}f}]")
        lines.append(f"| {row.label} | {row.metric} | {seeds} | {difference} | {c.verdict} |")
    return lines


def write_groups_csv(groups: Sequence[Group], metrics: Sequence[str], path: Path) -> None:
    import csv

    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["configuration", "seeds", *[f"{m}{s}" for m in metrics for s in ("", ":low", ":high")]])
        for group in groups:
            cells = []
            for metric in metrics:
                interval = group.interval(metric)
                cells += ["" if math.isnan(v) else repr(v) for v in (interval.mean, interval.low, interval.high)]
            writer.writerow([" ".join(group.overrides), ",".join(map(str, group.seeds)), *cells])


def write_contrasts_csv(rows: Sequence[ContrastRow], path: Path) -> None:
    import csv

    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["contrast", "treatment", "baseline", "metric", "paired_seeds", "difference", "low", "high",
                         "verdict"])
        for row in rows:
            d = row.comparison.difference
            writer.writerow([str(row.contrast), " ".join(row.treatment.overrides), " ".join(row.baseline.overrides),
                             row.metric, ",".join(map(str, row.comparison.seeds)), repr(d.mean),
                             "" if math.isnan(d.low) else repr(d.low), "" if math.isnan(d.high) else repr(d.high),
                             row.comparison.verdict])


def plot_groups(groups: Sequence[Group], metrics: Sequence[str], shared: Callable[[str], bool], path: Path) -> bool:
    """One panel per metric: each configuration's mean over seeds with its 95 % interval as an error bar
    (a single seed: a hollow marker without a bar). False when no metric has values."""
    from matplotlib.figure import Figure

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
    axes[0].set_yticks(range(len(groups)), labels, fontsize=7)
    axes[0].invert_yaxis()
    fig.suptitle("mean over seeds with 95 % t interval (hollow: one seed, no interval)", fontsize=10)
    fig.savefig(path, dpi=110)
    return True


def metric_names(groups: Sequence[Group], prefixes: Sequence[str]) -> list[str]:
    """The metrics any job has that start with one of `prefixes`, sorted."""
    names = {k for g in groups for row in g.jobs.values() for k in row.metrics}
    return sorted(n for n in names if n.startswith(tuple(prefixes)))
