"""The report's tables (reporting/tables.py): their columns and decimals come from the metric table."""

from __future__ import annotations

import csv
from pathlib import Path

from vae_lightning.reporting.groups import group_rows
from vae_lightning.reporting.jobs import Row
from vae_lightning.reporting.statistics import t_interval
from vae_lightning.reporting.tables import columns, groups_markdown, interval_text, write_csv, write_markdown


def row(job: str, seed: int, clarity: float) -> Row:
    return Row(job, Path("/nowhere"), "completed", ["prior=normal", f"seed={seed}"],
               {"val/elbo": -150.0, "eval/elbo": -149.0, "eval/nll_exact": 140.0, "eval/kl_dim0": 3.0,
                "eval/clarity/own_prior": clarity}, varying=[f"seed={seed}"])


ROWS = [row("0", 0, 0.9012), row("1", 1, 0.9034)]


def test_the_job_table_shows_the_summary_and_the_tables_detail_columns(tmp_path):
    assert columns(ROWS, full=False) == ["val/elbo", "eval/elbo", "eval/nll_exact"]
    assert "eval/kl_dim0" in columns(ROWS, full=True)
    write_markdown(ROWS, "val/elbo", False, tmp_path / "report.md", [tmp_path], group_rows(ROWS), [])
    text = (tmp_path / "report.md").read_text()
    assert "| job | status | overrides | val/elbo | eval/elbo | eval/nll_exact | error |" in text
    assert "| 0 | completed | seed=0 | -150.00 | -149.00 | 140.00 |  |" in text
    write_csv(ROWS, tmp_path / "report.csv")
    with open(tmp_path / "report.csv") as f:
        assert [r["eval/clarity/own_prior"] for r in csv.DictReader(f)] == ["0.9012", "0.9034"]


def test_the_configurations_table_uses_each_metrics_decimals():
    lines = groups_markdown(group_rows(ROWS), ["eval/nll_exact", "eval/clarity/own_prior", "eval/fid/own_prior"],
                            {"prior=normal"}.__contains__)
    assert lines[0] == "| configuration | seeds | eval/nll_exact | eval/clarity/own_prior |"  # fid: no job has it
    assert lines[2] == "| (all) | 2 (0,1) | 140.00 [140.00, 140.00] | 0.902 [0.888, 0.916] |"  # clarity: 3 decimals
    assert interval_text(t_interval([1.0])) == "1.00 (n = 1, no interval)"
