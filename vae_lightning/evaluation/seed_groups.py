"""A sweep's jobs grouped over seeds, and named contrasts between the groups (part of a sweep's report).

Jobs whose overrides differ only in `seed` are one configuration: its row gives the number of seeds
and, for every metric, the mean with a 95 % Student-t interval over the seeds (`n = 1, no interval`
for a single seed). A contrast `key=A:B` compares every configuration with `key=A` to the one with
`key=B` and everything else equal (`key=*:B`: every other value of the key against B), as paired
differences A - B over the seeds both have, each with its interval and a verdict read off the
interval (statistics.py): `equivalent` (inside the contrast's margin), `higher`, `lower`, `inconclusive`,
or `n < 2` without one.

Contrasts come in named families (`Family`: contrasts, equivalence margins per metric), declared in a
contrasts file (`read_contrasts`); every comparison of a family (each pair of configurations, each metric)
is one hypothesis of it, and the family's p-values are adjusted together (Holm by default), so that the
report shows the raw and the adjusted verdict side by side with the family's size, the minimum detectable
effect at the comparison's n and, with a margin, the seeds it would need.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from vae_lightning.core.errors import UserError
from vae_lightning.core.files import atomic_text, save_figure
from vae_lightning.evaluation.statistics import (
    ADJUSTMENTS,
    MOST_SEEDS,
    Comparison,
    Interval,
    adjust,
    paired_difference,
    t_interval,
    verdict_of_p,
)
from vae_lightning.runs.folders import SEED, configuration, split_override

if TYPE_CHECKING:
    from vae_lightning.evaluation.sweep_report import Row

# The metrics a contrast compares unless told others: the likelihoods, the collapse diagnostics and the
# sample quality of each model's own prior
CONTRAST_METRICS = ("test/elbo", "eval/nll_exact", "eval/nll_iwae", "eval/active_units",
                    "diagnostics/mutual_information", "eval/fid/own_prior", "eval/clarity/own_prior",
                    "eval/diversity/own_prior", "eval/precision/own_prior", "eval/recall/own_prior",
                    "eval/surgery/marginal_kl", "eval/prior_holes/mass")
# The unit of each metric that an equivalence margin may be given in (a prefix names a metric per sampler)
UNITS = {"test/elbo": "nats", "val/elbo": "nats", "eval/elbo": "nats", "eval/nll_exact": "nats",
         "eval/nll_iwae": "nats", "diagnostics/mutual_information": "nats", "eval/active_units": "dimensions",
         "eval/fid/": "FID", "eval/clarity/": "probability", "eval/diversity/": "nats",
         "eval/probability_entropy/": "nats", "eval/surgery/": "nats", "eval/bound_gaps/": "nats",
         "eval/prior_holes/mass": "probability", "eval/precision/": "probability", "eval/recall/": "probability"}
# The family of the contrasts given on the command line (--contrast) or as a plain list in a contrasts file
DEFAULT_FAMILY = "contrasts"


def unit(metric: str) -> str | None:
    """The unit of a metric (UNITS), None for a metric without one."""
    return next((u for key, u in UNITS.items() if metric == key or (key.endswith("/") and metric.startswith(key))),
                None)


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
class Family:
    """A named family of contrasts, adjusted together, with an equivalence margin per metric (in its unit)."""

    name: str
    contrasts: tuple[Contrast, ...]
    margins: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ContrastRow:
    contrast: Contrast
    family: str
    treatment: Group
    baseline: Group
    metric: str
    comparison: Comparison
    label: str  # `key=A - B (the other overrides that tell configurations apart)`
    family_size: int = 0  # the comparisons of the family that have a p-value
    adjustment: str = "holm"
    adjusted_p: float = math.nan
    adjusted_p_equivalent: float | None = None

    @property
    def adjusted_verdict(self) -> str:
        return verdict_of_p(self.adjusted_p, self.adjusted_p_equivalent, self.comparison.difference.mean)


def compare(groups: Sequence[Group], families: Sequence[Family], metrics: Sequence[str],
            adjustment: str = "holm") -> list[ContrastRow]:
    """Every family's paired differences for every metric that both arms have, adjusted within the family."""
    shared = set.intersection(*(set(g.overrides) for g in groups)) if groups else set()
    rows = []
    for family in families:
        found = []
        for contrast in family.contrasts:
            contrast.check(groups)
            for treatment, baseline in contrast.pairs(groups):
                others = [o for o in baseline.overrides if split_override(o)[0] != contrast.key and o not in shared]
                label = (f"{contrast.key}={treatment.setting(contrast.key)} - {contrast.baseline}"
                         + (f" ({' '.join(others)})" if others else ""))
                for metric in metrics:
                    a, b = treatment.values(metric), baseline.values(metric)
                    if a and b:
                        comparison = paired_difference(a, b, margin=family.margins.get(metric))
                        found.append(ContrastRow(contrast, family.name, treatment, baseline, metric, comparison,
                                                 label))
        p = adjust([r.comparison.p for r in found], adjustment)
        equivalence = [r.comparison.p_equivalent for r in found]
        with_margin = [i for i, q in enumerate(equivalence) if q is not None]
        p_equivalent = dict(zip(with_margin, adjust([equivalence[i] for i in with_margin], adjustment), strict=True))
        size = sum(not math.isnan(q) for q in p)
        rows += [replace(row, family_size=size, adjustment=adjustment, adjusted_p=p[i],
                         adjusted_p_equivalent=p_equivalent.get(i)) for i, row in enumerate(found)]
    return rows


def read_contrasts(spec: object, source: str) -> tuple[list[Family], list[str] | None, str | None]:
    """The families, the metrics and the adjustment of a contrasts file's contents (`source` names it in errors):

        adjustment: holm                    # holm (default), bh or none
        families:
          claim_1:                          # a name
            contrasts: [prior=gaussian:normal]
            margins: {eval/nll_exact: 0.5}  # equivalence margins, in the metric's unit (UNITS)
        contrasts: [annealing=linear:constant]   # a plain list: one family named `contrasts`
        metrics: [test/elbo, eval/nll_exact]

    Anything else is a UserError naming the key."""
    if not isinstance(spec, dict) or not ({"contrasts", "families"} & set(spec)):
        raise UserError(f"{source} has neither `families:` nor a list `contrasts:`; write families: {{claim: "
                        "{contrasts: [prior=gaussian:normal], margins: {eval/nll_exact: 0.5}}}")
    unknown = sorted(set(spec) - {"contrasts", "families", "metrics", "adjustment"})
    if unknown:
        raise UserError(f"{source}: {unknown[0]} is not a key of a contrasts file; its keys: adjustment, families, "
                        "contrasts, metrics")
    adjustment = spec.get("adjustment")
    if adjustment is not None and adjustment not in ADJUSTMENTS:
        raise UserError(f"{source}: adjustment={adjustment!r} is invalid: must be one of {', '.join(ADJUSTMENTS)}")
    families = []
    if "contrasts" in spec:
        families.append(_family(DEFAULT_FAMILY, {"contrasts": spec["contrasts"]}, source, "contrasts"))
    named = spec.get("families", {})
    if not isinstance(named, dict):
        raise UserError(f"{source}: families must be a mapping of names to {{contrasts: [...], margins: {{...}}}}")
    families += [_family(str(name), body, source, f"families.{name}") for name, body in named.items()]
    metrics = spec.get("metrics")
    if metrics is not None and not (isinstance(metrics, list) and all(isinstance(m, str) for m in metrics)):
        raise UserError(f"{source}: metrics={metrics!r} is invalid: must be a list of metric names")
    return families, metrics, adjustment


def _family(name: str, body: object, source: str, key: str) -> Family:
    contrasts = body.get("contrasts") if isinstance(body, dict) else None
    if not isinstance(contrasts, list) or not contrasts:
        raise UserError(f"{source}: {key} names no contrast; give it a list contrasts: [key=treatment:baseline, ...]")
    margins = body.get("margins") or {}
    if not isinstance(margins, dict):
        raise UserError(f"{source}: {key}.margins must be a mapping of metric names to margins")
    for metric, margin in margins.items():
        if unit(str(metric)) is None:
            raise UserError(f"{source}: {key}.margins.{metric} is a margin on a metric without a unit; margins are "
                            f"for {', '.join(UNITS)}")
        if isinstance(margin, bool) or not isinstance(margin, int | float) or not math.isfinite(margin) or margin <= 0:
            raise UserError(f"{source}: {key}.margins.{metric}={margin!r} is invalid: must be a number > 0 (in "
                            f"{unit(str(metric))})")
    return Family(name, tuple(Contrast.parse(str(c)) for c in contrasts),
                  {str(m): float(v) for m, v in margins.items()})


def interval_text(interval: Interval, digits: int = 2) -> str:
    """`mean [low, high]`, or `mean (n = 1, no interval)`."""
    if interval.n == 0:
        return ""
    if interval.n < 2:
        return f"{interval.mean:.{digits}f} (n = 1, no interval)"
    return f"{interval.mean:.{digits}f} [{interval.low:.{digits}f}, {interval.high:.{digits}f}]"


def _digits(metric: str) -> int:
    return 3 if metric.split("/")[1] in ("clarity", "diversity", "probability_entropy") else 2


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
        digits = _digits(row.metric)
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


def write_groups_csv(groups: Sequence[Group], metrics: Sequence[str], path: Path) -> None:
    import csv

    with atomic_text(path) as f:
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


def plot_groups(groups: Sequence[Group], metrics: Sequence[str], shared: Callable[[str], bool], path: Path) -> bool:
    """One panel per metric: each configuration's mean over seeds with its 95 % interval as an error bar
    (a single seed: a hollow marker without a bar). False when no metric has values."""
    from matplotlib.figure import Figure
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


def metric_names(groups: Sequence[Group], prefixes: Sequence[str]) -> list[str]:
    """The metrics any job has that start with one of `prefixes`, sorted."""
    names = {k for g in groups for row in g.jobs.values() for k in row.metrics}
    return sorted(n for n in names if n.startswith(tuple(prefixes)))
