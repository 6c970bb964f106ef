"""The report's figures (reporting/figures.py): the curves they read, and what they draw from rows made by hand."""

from __future__ import annotations

from pathlib import Path

from helpers.jobs import fake_job

from vae_lightning.reporting.figures import CURVES, csv_curves, event_curves, plot_curves, plot_grids, plot_groups
from vae_lightning.reporting.groups import group_rows
from vae_lightning.reporting.jobs import Row


def test_curves_come_from_tensorboard_events_or_the_csv_loggers_file(tmp_path):
    fake_job(tmp_path / "tb", ["seed=0"], None, curve=[-170.0, -160.0])
    assert event_curves(tmp_path / "tb", CURVES)["val/elbo"] == [(0, -170.0), (1, -160.0)]
    job = tmp_path / "csv"
    (job / "csv").mkdir(parents=True)
    (job / "csv" / "metrics.csv").write_text("step,val/elbo,train/loss\n0,-170.5,\n5,,3.0\n9,-160.5,\n")
    assert csv_curves(job, CURVES) == {"val/elbo": [(0, -170.5), (9, -160.5)]}
    assert event_curves(job, CURVES) == {} and csv_curves(tmp_path / "tb", CURVES) == {}


def test_figures_are_drawn_for_what_the_jobs_have(tmp_path):
    fake_job(tmp_path / "0", ["seed=0"], None, curve=[-170.0, -160.0])
    rows = [Row("0", tmp_path / "0", "completed", ["seed=0"], {"val/elbo": -160.0})]
    plot_curves(rows, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 0
    assert plot_grids(rows, tmp_path / "grids.png") and (tmp_path / "grids.png").stat().st_size > 0
    assert not plot_grids([Row("1", tmp_path / "none", "completed", [])], tmp_path / "none.png")
    assert not plot_groups(group_rows(rows), ["eval/fid/own_prior"], set().__contains__, tmp_path / "g.png")
    assert plot_groups(group_rows(rows), ["val/elbo"], set().__contains__, tmp_path / "g.png")
    assert not Path(tmp_path / "none.png").exists()
