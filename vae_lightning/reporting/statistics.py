"""Findings across seeds: the mean of a metric over seeds with its 95 % confidence interval (Student t),
and paired comparisons of two configurations over the seeds both have, with a verdict read off the
interval of the paired difference (never typed by hand), adjusted for the family of comparisons it belongs
to, with the smallest effect it could have detected.

A job's seed fixes its initialisation, data order, binarization draws and fixed noise, so two
configurations trained at the same seed are a pair: their difference removes what the seed does to
both, and the paired interval is narrower than the two intervals side by side when the arms' values
go together over the seeds.

The verdict words (`verdict`):
- `equivalent`: the whole 95 % interval lies inside (-margin, +margin), the equivalence margin that the
  contrast declares (two one-sided tests at 2.5 % each);
- `higher` / `lower`: the interval excludes 0 (the paired t test, two-sided, at 5 %);
- `inconclusive`: neither; the data allow a difference and allow none (never read as "no effect");
- `n < 2`: no interval (fewer than two paired seeds).
A family of contrasts is adjusted as one (`adjust`: Holm's step-down by default, Benjamini-Hochberg on
request); the adjusted verdict reads the same words off the adjusted p-values. The minimum detectable effect
(`detectable_effect`) is the difference that the paired t test at this n and the observed spread of the
differences finds with 80 % power; `seeds_needed` the seeds it would need to find the margin so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE
POWER = 0.8
HIGHER, LOWER, EQUIVALENT, INCONCLUSIVE, TOO_FEW = "higher", "lower", "equivalent", "inconclusive", "n < 2"
# multiplicity adjustments within a family: Holm (1979), Benjamini-Hochberg (1995), none
ADJUSTMENTS = ("holm", "bh", "none")
MOST_SEEDS = 10_000  # seeds_needed looks no further


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


def verdict(interval: Interval, margin: float | None = None) -> str:
    """The verdict read off the interval of a difference: `equivalent` when it lies inside (-margin, +margin),
    `higher` or `lower` when it excludes 0, else `inconclusive`; `n < 2` when there is no interval."""
    if interval.n < 2 or math.isnan(interval.low):
        return TOO_FEW
    if margin is not None and -margin < interval.low and interval.high < margin:
        return EQUIVALENT
    if interval.low > 0:
        return HIGHER
    if interval.high < 0:
        return LOWER
    return INCONCLUSIVE


def verdict_of_p(p: float, p_equivalent: float | None, mean: float, alpha: float = ALPHA) -> str:
    """The same words read off p-values (raw or adjusted): `equivalent` when the equivalence test's p is below
    alpha, else `higher`/`lower` (by the sign of the mean) when the difference test's is, else `inconclusive`."""
    if math.isnan(p):
        return TOO_FEW
    if p_equivalent is not None and p_equivalent < alpha:
        return EQUIVALENT
    if p < alpha:
        return HIGHER if mean > 0 else LOWER
    return INCONCLUSIVE


@dataclass(frozen=True)
class Comparison:
    """A paired difference (treatment - baseline) over the seeds both arms have: its interval, the standard
    deviation of the paired differences, the two-sided p of the paired t test, and with an equivalence margin
    the p of the equivalence test (2 x the larger of the two one-sided p's: below 5 % exactly when the 95 %
    interval lies inside the margins)."""

    difference: Interval
    seeds: tuple[int, ...]
    sd: float
    p: float
    margin: float | None = None
    p_equivalent: float | None = None

    @property
    def verdict(self) -> str:
        return verdict(self.difference, self.margin)

    @cached_property
    def detectable_effect(self) -> float:
        """The minimum detectable effect at this n (root-finding on the noncentral t: computed once)."""
        return detectable_effect(self.sd, self.difference.n)

    @cached_property
    def seeds_needed(self) -> int | None:
        """Seeds at which the paired t test finds a difference of the margin with 80 % power (None: no margin,
        or no spread measured; MOST_SEEDS + 1: more than MOST_SEEDS)."""
        if self.margin is None or self.difference.n < 2:
            return None
        return seeds_needed(self.margin, self.sd)


def paired_difference(treatment: Mapping[int, float], baseline: Mapping[int, float],
                      confidence: float = CONFIDENCE, margin: float | None = None) -> Comparison:
    """treatment - baseline on the seeds present in both (seed -> value), with the paired t interval, its
    p-values and its verdict. Seeds that only one arm has are left out (`seeds` says which were paired)."""
    from scipy import stats

    seeds = tuple(sorted(set(treatment) & set(baseline)))
    values = [treatment[s] - baseline[s] for s in seeds
              if math.isfinite(treatment[s]) and math.isfinite(baseline[s])]
    interval = t_interval(values, confidence)
    n = interval.n
    if n < 2:
        return Comparison(interval, seeds, math.nan, math.nan, margin, None if margin is None else math.nan)
    mean = interval.mean
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    if sd == 0:  # every pair differs by the same amount
        p = 0.0 if mean != 0 else 1.0
        p_equivalent = None if margin is None else (0.0 if abs(mean) < margin else 1.0)
    else:
        se = sd / math.sqrt(n)
        p = min(1.0, 2 * float(stats.t.sf(abs(mean) / se, n - 1)))
        p_equivalent = None
        if margin is not None:  # two one-sided tests: H0 difference <= -margin, H0 difference >= +margin
            one_sided = max(stats.t.sf((mean + margin) / se, n - 1), stats.t.sf((margin - mean) / se, n - 1))
            p_equivalent = min(1.0, 2 * float(one_sided))
    return Comparison(interval, seeds, sd, p, margin, p_equivalent)


def power(effect: float, sd: float, n: int, alpha: float = ALPHA) -> float:
    """The power of the two-sided paired t test at level alpha to find a true mean difference `effect` with
    `n` pairs whose differences have standard deviation `sd` (the noncentral t distribution). Where scipy's
    noncentral t gives no number (large n and noncentrality), the normal approximation of the noncentral t
    (mean nc, variance 1 + critical² / 2·df) stands in."""
    from scipy import stats

    df, critical = n - 1, float(stats.t.ppf(1 - alpha / 2, n - 1))
    noncentrality = effect * math.sqrt(n) / sd
    exact = float(stats.nct.sf(critical, df, noncentrality) + stats.nct.cdf(-critical, df, noncentrality))
    if math.isfinite(exact):
        return exact
    spread = math.sqrt(1 + critical**2 / (2 * df))
    return float(stats.norm.sf((critical - noncentrality) / spread) + stats.norm.cdf((-critical - noncentrality)
                                                                                      / spread))


def detectable_effect(sd: float, n: int, alpha: float = ALPHA, target: float = POWER) -> float:
    """The smallest |difference| that the paired t test at `n` finds with power `target` (NaN below 2 pairs;
    0 when the differences do not vary)."""
    from scipy.optimize import brentq

    if n < 2 or not math.isfinite(sd):
        return math.nan
    if sd == 0:
        return 0.0
    high = sd
    while power(high, sd, n, alpha) < target:
        high *= 2
    return float(brentq(lambda effect: power(effect, sd, n, alpha) - target, 0.0, high, xtol=1e-10 * sd))


def seeds_needed(effect: float, sd: float, alpha: float = ALPHA, target: float = POWER) -> int | None:
    """The fewest pairs (>= 2) with which the paired t test finds `effect` with power `target`, given the
    spread `sd` of the differences; MOST_SEEDS + 1 when even MOST_SEEDS are not enough."""
    if not math.isfinite(sd) or effect <= 0:
        return None
    if sd == 0:
        return 2
    low, high = 2, MOST_SEEDS
    if power(effect, sd, high, alpha) < target:
        return MOST_SEEDS + 1
    while low < high:  # power grows with n
        middle = (low + high) // 2
        if power(effect, sd, middle, alpha) >= target:
            high = middle
        else:
            low = middle + 1
    return low


def adjust(p_values: Sequence[float], method: str = "holm") -> list[float]:
    """p-values adjusted for the family they form: Holm's step-down (family-wise error), Benjamini-Hochberg
    (false discovery rate; scipy.stats.false_discovery_control) or none. NaN p-values (no interval) are not
    part of the family and stay NaN."""
    from scipy import stats

    if method not in ADJUSTMENTS:
        raise ValueError(f"adjustment {method!r}: choose one of {', '.join(ADJUSTMENTS)}")
    index = [i for i, p in enumerate(p_values) if not math.isnan(p)]
    adjusted = [math.nan] * len(p_values)
    if not index:
        return adjusted
    ps = [p_values[i] for i in index]
    if method == "none":
        values = ps
    elif method == "bh":
        values = [float(v) for v in stats.false_discovery_control(ps, method="bh")]
    else:
        order = sorted(range(len(ps)), key=lambda i: ps[i])
        values, running = [0.0] * len(ps), 0.0
        for rank, i in enumerate(order):
            running = max(running, min(1.0, (len(ps) - rank) * ps[i]))
            values[i] = running
    for i, value in zip(index, values, strict=True):
        adjusted[i] = value
    return adjusted
