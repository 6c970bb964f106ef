"""Findings across seeds: the mean of a metric over seeds with its 95 % confidence interval (Student t),
and paired comparisons of two configurations over the seeds both have, with a verdict read off the
interval of the paired difference (never typed by hand).

A job's seed fixes its initialisation, data order, binarization draws and fixed noise, so two
configurations trained at the same seed are a pair: their difference removes what the seed does to
both, and the paired interval is narrower than the two intervals side by side.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

CONFIDENCE = 0.95
HIGHER, LOWER, NO_DIFFERENCE, TOO_FEW = "higher", "lower", "no difference detected", "n < 2"


@dataclass(frozen=True)
class Interval:
    """The mean of `n` values and its two-sided confidence interval [low, high] (NaN bounds for n < 2)."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean and Student-t confidence interval of independent values (e.g. a metric over seeds):
    mean ± t_{(1+c)/2, n-1} · s / sqrt(n), s the sample standard deviation."""
    from scipy import stats

    n = len(values)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = math.fsum(values) / n
    if n < 2:
        return Interval(mean, math.nan, math.nan, n)
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


def verdict(interval: Interval) -> str:
    """`higher` or `lower` when the interval of a difference excludes 0, else `no difference detected`;
    `n < 2` when there is no interval."""
    if interval.n < 2 or math.isnan(interval.low):
        return TOO_FEW
    if interval.low > 0:
        return HIGHER
    if interval.high < 0:
        return LOWER
    return NO_DIFFERENCE


@dataclass(frozen=True)
class Comparison:
    """A paired difference (treatment - baseline) over the seeds both arms have."""

    difference: Interval
    seeds: tuple[int, ...]
    verdict: str


def paired_difference(treatment: Mapping[int, float], baseline: Mapping[int, float],
                      confidence: float = CONFIDENCE) -> Comparison:
    """treatment - baseline on the seeds present in both (seed -> value), with the paired t interval and
    its verdict. Seeds that only one arm has are left out (`seeds` says which were paired)."""
    seeds = tuple(sorted(set(treatment) & set(baseline)))
    values = [treatment[s] - baseline[s] for s in seeds
              if math.isfinite(treatment[s]) and math.isfinite(baseline[s])]
    interval = t_interval(values, confidence)
    return Comparison(interval, seeds, verdict(interval))
