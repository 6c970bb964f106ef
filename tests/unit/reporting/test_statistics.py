"""The seed statistics against scipy.stats on fixed numbers: intervals, paired tests, the four verdict words at
their edges, Holm and Benjamini-Hochberg adjustments, the minimum detectable effect and the seeds needed."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from vae_lightning.reporting.statistics import (
    EQUIVALENT,
    HIGHER,
    INCONCLUSIVE,
    LOWER,
    TOO_FEW,
    Interval,
    adjust,
    detectable_effect,
    paired_difference,
    power,
    seeds_needed,
    t_interval,
    verdict,
    verdict_of_p,
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


@pytest.mark.parametrize(("low", "high", "margin", "word"), [
    (0.1, 0.5, None, HIGHER), (-0.5, -0.1, None, LOWER), (-0.1, 0.3, None, INCONCLUSIVE),
    (0.0, 0.4, None, INCONCLUSIVE), (-0.4, 0.0, None, INCONCLUSIVE), (math.nan, math.nan, None, TOO_FEW),
    (-0.3, 0.3, 0.5, EQUIVALENT), (-0.5, 0.3, 0.5, INCONCLUSIVE), (-0.3, 0.5, 0.5, INCONCLUSIVE),
    (0.1, 0.4, 0.5, EQUIVALENT),  # inside the margin: equivalent, though it excludes 0
    (0.1, 0.6, 0.5, HIGHER), (-0.6, 0.6, 0.5, INCONCLUSIVE), (-0.8, -0.2, 0.5, LOWER),
])
def test_the_verdict_follows_the_interval_at_its_edges(low, high, margin, word):
    assert verdict(Interval((low + high) / 2, low, high, 3 if math.isfinite(low) else 1), margin) == word


PAIRS = [({0: 140.9, 1: 141.3, 2: 140.2, 3: 141.0}, {0: 139.7, 1: 140.1, 2: 139.1, 3: 140.6}),  # higher
         ({0: 1.0, 1: 1.2, 2: 0.9, 3: 1.1}, {0: 1.05, 1: 1.1, 2: 1.0, 3: 1.0}),  # near 0
         ({0: 3.0, 1: 1.0, 2: 2.5}, {0: 1.0, 1: 2.0, 2: 0.0})]  # wide


@pytest.mark.parametrize("treatment, baseline", PAIRS)
@pytest.mark.parametrize("margin", [None, 0.2, 1.0, 5.0])
def test_the_p_values_agree_with_scipy_and_give_the_intervals_verdict(treatment, baseline, margin):
    got = paired_difference(treatment, baseline, margin=margin)
    seeds = sorted(treatment)
    a, b = [treatment[s] for s in seeds], [baseline[s] for s in seeds]
    assert got.p == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-9)
    if margin is not None:  # two one-sided tests, each at half the level
        lower = stats.ttest_rel([x + margin for x in a], b, alternative="greater").pvalue
        upper = stats.ttest_rel([x - margin for x in a], b, alternative="less").pvalue
        assert got.p_equivalent == pytest.approx(min(1.0, 2 * max(lower, upper)), rel=1e-9)
    # the verdict read off the p-values is the one read off the interval
    assert verdict_of_p(got.p, got.p_equivalent, got.difference.mean) == got.verdict


def test_holm_and_benjamini_hochberg_on_fixed_p_values():
    p = [0.01, 0.04, 0.03, 0.005, math.nan, 0.2]
    holm = adjust(p, "holm")  # by hand: sorted 0.005, 0.01, 0.03, 0.04, 0.2 times 5, 4, 3, 2, 1, kept monotone
    assert holm[:4] == [pytest.approx(0.04), pytest.approx(0.09), pytest.approx(0.09), pytest.approx(0.025)]
    assert math.isnan(holm[4]) and holm[5] == pytest.approx(0.2)
    bh = adjust(p, "bh")
    expected = stats.false_discovery_control([0.01, 0.04, 0.03, 0.005, 0.2], method="bh")
    assert [bh[i] for i in (0, 1, 2, 3, 5)] == pytest.approx(list(expected), rel=1e-12)
    assert adjust(p, "none")[:4] == p[:4]
    with pytest.raises(ValueError, match="bonferroni"):
        adjust(p, "bonferroni")


def test_power_is_the_noncentral_t_and_the_detectable_effect_reaches_80_percent():
    sd, n = 1.3, 10
    critical = stats.t.ppf(0.975, n - 1)
    for effect in (0.3, 1.0, 2.0):
        nc = effect * math.sqrt(n) / sd
        assert power(effect, sd, n) == pytest.approx(stats.nct.sf(critical, n - 1, nc)
                                                      + stats.nct.cdf(-critical, n - 1, nc), rel=1e-12)
    mde = detectable_effect(sd, n)
    assert power(mde, sd, n) == pytest.approx(0.8, abs=1e-9)
    assert 2.8 * sd / math.sqrt(n) < mde < 3.3 * sd / math.sqrt(n)  # near (z_.975 + z_.8) sd / sqrt(n), a bit above
    assert detectable_effect(sd, 3) > mde and math.isnan(detectable_effect(sd, 1)) and detectable_effect(0.0, 5) == 0


def test_seeds_needed_is_the_fewest_with_80_percent_power():
    sd, margin = 1.0, 0.5
    n = seeds_needed(margin, sd)
    assert power(margin, sd, n) >= 0.8 > power(margin, sd, n - 1)
    assert seeds_needed(margin, sd) > seeds_needed(2 * margin, sd)
    assert seeds_needed(1e-4, 1.0) == 10_001 and seeds_needed(margin, math.nan) is None
