"""Seed groups and contrasts (reporting/groups.py), from rows made by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from vae_lightning.core.errors import UserError
from vae_lightning.reporting.groups import Contrast, Family, compare, group_rows, read_contrasts
from vae_lightning.reporting.jobs import Row


def row(prior: str, seed: int, value: float, status: str = "completed") -> Row:
    return Row(f"{prior}{seed}", Path("/nowhere"), status, [f"prior={prior}", f"seed={seed}"],
               {"eval/nll_exact": value})


ROWS = [row("normal", 0, 100.0), row("normal", 1, 102.0), row("beta", 0, 101.0), row("beta", 1, 104.0),
        row("beta", 2, 90.0, "failed")]


def test_jobs_differing_only_in_seed_are_one_group_of_completed_values():
    normal, beta = group_rows(ROWS)
    assert normal.overrides == ("prior=normal",) and normal.seeds == [0, 1]
    assert beta.values("eval/nll_exact") == {0: 101.0, 1: 104.0}  # the failed seed has no value
    assert normal.interval("eval/nll_exact").mean == pytest.approx(101.0)


def test_a_contrast_pairs_by_seed_and_names_what_no_job_has():
    [result] = compare(group_rows(ROWS), [Family("f", (Contrast.parse("prior=beta:normal"),))], ["eval/nll_exact"])
    assert list(result.comparison.seeds) == [0, 1] and result.comparison.difference.mean == pytest.approx(1.5)
    assert result.family_size == 1 and result.label == "prior=beta - normal"
    with pytest.raises(UserError, match="no job has prior=vamp; its values: beta, normal"):
        Contrast.parse("prior=vamp:normal").check(group_rows(ROWS))
    with pytest.raises(UserError, match="is not a contrast"):
        Contrast.parse("prior=normal")


def test_a_contrasts_file_takes_margins_only_on_metrics_with_a_unit():
    families, metrics, adjustment = read_contrasts(
        {"families": {"claim": {"contrasts": ["prior=beta:normal"], "margins": {"eval/fid/own_prior": 0.5}}},
         "metrics": ["eval/nll_exact"], "adjustment": "bh"}, "f.yaml")
    assert families[0].margins == {"eval/fid/own_prior": 0.5} and metrics == ["eval/nll_exact"]
    assert adjustment == "bh"
    with pytest.raises(UserError, match="margins.eval/kl_dim0 is a margin on a metric without a unit"):
        read_contrasts({"families": {"c": {"contrasts": ["prior=beta:normal"], "margins": {"eval/kl_dim0": 1.0}}}},
                       "f.yaml")
