"""A sweep's jobs grouped over seeds, and named contrasts between the groups.

Jobs whose overrides differ only in `seed` are one configuration (`Group`): for every metric, the mean with a
95 % Student-t interval over its seeds. A contrast `key=A:B` compares every configuration with `key=A` to the
one with `key=B` and everything else equal (`key=*:B`: every other value of the key against B), as paired
differences A - B over the seeds both have, each with its interval and a verdict read off the interval
(reporting/statistics.py): `equivalent` (inside the contrast's margin), `higher`, `lower`, `inconclusive`, or
`n < 2` without one.

Contrasts come in named families (`Family`: contrasts, equivalence margins per metric in the metric's unit, from
the metric table), declared in a contrasts file (`read_contrasts`); every comparison of a family (each pair of
configurations, each metric) is one hypothesis of it, and the family's p-values are adjusted together (Holm by
default).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from vae_lightning.core.errors import UserError
from vae_lightning.evaluation.metrics import unit, units
from vae_lightning.reporting.statistics import (
    ADJUSTMENTS,
    Comparison,
    Interval,
    adjust,
    paired_difference,
    t_interval,
    verdict_of_p,
)
from vae_lightning.runs.folders import SEED, configuration, split_override

if TYPE_CHECKING:
    from vae_lightning.reporting.jobs import Row

# The family of the contrasts given on the command line (--contrast) or as a plain list in a contrasts file
DEFAULT_FAMILY = "contrasts"


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
            margins: {eval/nll_exact: 0.5}  # equivalence margins, in the metric's unit (evaluation/metrics.py)
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
                            f"for {', '.join(units())}")
        if isinstance(margin, bool) or not isinstance(margin, int | float) or not math.isfinite(margin) or margin <= 0:
            raise UserError(f"{source}: {key}.margins.{metric}={margin!r} is invalid: must be a number > 0 (in "
                            f"{unit(str(metric))})")
    return Family(name, tuple(Contrast.parse(str(c)) for c in contrasts),
                  {str(m): float(v) for m, v in margins.items()})



def metric_names(groups: Sequence[Group], prefixes: Sequence[str]) -> list[str]:
    """The metrics any job has that start with one of `prefixes`, sorted."""
    names = {k for g in groups for row in g.jobs.values() for k in row.metrics}
    return sorted(n for n in names if n.startswith(tuple(prefixes)))
