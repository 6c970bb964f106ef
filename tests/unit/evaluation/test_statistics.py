"""The seed statistics against scipy.stats on fixed numbers, and the verdict read off the interval."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from vae_lightning.evaluation.statistics import (
    HIGHER,
    LOWER,
    NO_DIFFERENCE,
    TOO_FEW,
    Interval,
    paired_difference,
    t_interval,
    verdict,
)

VALUES = [139.72, 140.13, 139.10, 140.57]


def test_t_interval_matches_scipy():
    got = t_interval(VALUES)
    mean, sem = stats.tmean(VALUES), stats.sem(VALUES)
    low, high = stats.t.interval(0.95, len(VALUES) - 1, loc=mean, scale=sem)
    assert got.mean == pytest.approx(mean, abs=1e-12)
    assert (got.low, got.high) == (pytest.approx(low, abs=1e-9), pytest.approx(high, abs=1e-9))
    assert got.n == 4


def test_t_interval_of_one_value_has_no_bounds():
    got = t_interval([3.0])
    assert got.mean == 3.0 and got.n == 1 and math.isnan(got.low) and math.isnan(got.high)


def test_paired_difference_matches_scipys_paired_t_test():
    treatment = {0: 140.9, 1: 141.3, 2: 140.2, 3: 141.0}
    baseline = {0: 139.7, 1: 140.1, 2: 139.1, 3: 140.6}
    got = paired_difference(treatment, baseline)
    seeds = sorted(treatment)
    expected = stats.ttest_rel([treatment[s] for s in seeds], [baseline[s] for s in seeds]).confidence_interval(0.95)
    assert (got.difference.low, got.difference.high) == (pytest.approx(expected.low, abs=1e-9),
                                                         pytest.approx(expected.high, abs=1e-9))
    assert got.difference.mean == pytest.approx(sum(treatment[s] - baseline[s] for s in seeds) / 4)
    assert got.seeds == (0, 1, 2, 3) and got.verdict == HIGHER


def test_paired_difference_pairs_only_the_shared_seeds():
    got = paired_difference({0: 1.0, 1: 2.0, 5: 9.0}, {0: 0.5, 1: 1.0, 2: 7.0})
    assert got.seeds == (0, 1) and got.difference.n == 2 and got.difference.mean == pytest.approx(0.75)
    alone = paired_difference({0: 1.0, 1: 2.0}, {1: 1.0, 2: 7.0})
    assert alone.seeds == (1,) and alone.verdict == TOO_FEW


@pytest.mark.parametrize(("low", "high", "word"), [
    (0.1, 0.5, HIGHER), (-0.5, -0.1, LOWER), (-0.1, 0.3, NO_DIFFERENCE), (0.0, 0.4, NO_DIFFERENCE),
    (math.nan, math.nan, TOO_FEW),
])
def test_the_verdict_follows_the_interval(low, high, word):
    assert verdict(Interval((low + high) / 2, low, high, 3 if math.isfinite(low) else 1)) == word
