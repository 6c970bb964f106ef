"""Collecting a sweep's job folders (reporting/jobs.py), from folders made by hand."""

from __future__ import annotations

import json

import pytest
from helpers.jobs import evaluation, fake_job

from vae_lightning.core.errors import UserError
from vae_lightning.reporting.jobs import collect, needs_evaluation, sort_rows, sweep_jobs

DONE = {"status": "completed", "metrics": {"val/elbo": -150.0}}


def test_rows_carry_status_metrics_evaluation_and_the_overrides_that_differ(tmp_path):
    fake_job(tmp_path / "0", ["data.batch_size=32", "prior=normal", "seed=0"], DONE, evaluation(145.0, {"n": 3.0}))
    fake_job(tmp_path / "1", ["data.batch_size=32", "prior=beta", "seed=0"],
             {"status": "failed", "error": "ValueError: boom", "metrics": {}})
    fake_job(tmp_path / "2", ["data.batch_size=32", "prior=beta", "seed=1"], None)
    (tmp_path / "multirun.yaml").write_text("{}\n")
    rows = {r.job: r for r in collect([tmp_path])}
    assert rows["0"].metrics["val/elbo"] == -150.0 and rows["0"].metrics["eval/nll_iwae"] == 145.0
    assert rows["0"].metrics["eval/fid/n"] == 3.0
    assert rows["0"].varying == ["prior=normal", "seed=0"]
    assert (rows["1"].status, rows["1"].error) == ("failed", "ValueError: boom")
    assert rows["2"].status == "unfinished" and not needs_evaluation(rows["2"])
    assert [r.job for r in sort_rows(list(rows.values()), "val/elbo", ascending=False)] == ["0", "2", "1"]


def test_an_evaluation_whose_per_image_file_is_short_is_incomplete(tmp_path):
    results = {**evaluation(145.0, {"n": 3.0}), "per_image": {"file": "per_image.csv", "rows": 3}}
    fake_job(tmp_path / "0", ["seed=0"], DONE, results)
    (tmp_path / "0" / "eval" / "per_image.csv").write_text("index,label\n0,1\n")
    (tmp_path / "multirun.yaml").write_text("{}\n")
    [row] = collect([tmp_path])
    assert row.status == "incomplete" and "has 1 rows, metrics.json says 3" in row.error
    assert "eval/nll_iwae" not in row.metrics and needs_evaluation(row)


def test_a_metrics_json_that_is_no_evaluation_is_named(tmp_path):
    fake_job(tmp_path / "0", ["seed=0"], DONE)
    (tmp_path / "0" / "eval").mkdir()
    (tmp_path / "0" / "eval" / "metrics.json").write_text(json.dumps({"likelihood": {}}))
    (tmp_path / "multirun.yaml").write_text("{}\n")
    [row] = collect([tmp_path])
    assert row.status == "incomplete" and "is not an evaluation's metrics.json (KeyError" in row.error


def test_a_run_folder_and_an_empty_folder_are_not_sweeps(tmp_path):
    fake_job(tmp_path / "run", ["seed=0"], DONE)
    with pytest.raises(UserError, match="is a run folder, not a sweep"):
        sweep_jobs(tmp_path / "run")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="has no job folders"):
        sweep_jobs(tmp_path / "empty")
