"""An evaluation's results read back (evaluation/results.py): a metrics.json written before the metric table gives
the same scalars, tracker scalars and tables today, and the report reads it as a complete evaluation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from helpers.jobs import fake_job

from vae_lightning.evaluation.results import Evaluation, results_markdown, scalars, tracker_scalars
from vae_lightning.reporting.jobs import collect

OLD = Path(__file__).parents[2] / "fixtures" / "old_eval"


def old_results() -> dict:
    return json.loads((OLD / "metrics.json").read_text())


def test_an_earlier_metrics_json_gives_the_same_scalars_and_tables():
    expected = json.loads((OLD / "scalars.json").read_text())
    assert scalars(old_results()) == expected["scalars"]
    assert tracker_scalars(old_results()) == expected["trackers"]
    assert (OLD / "report.md").read_text().startswith(results_markdown(old_results()) + "\n![")


def test_an_evaluation_as_json_is_metrics_json_in_its_order():
    results = old_results()
    evaluation = Evaluation(**results)
    assert json.dumps(evaluation.as_json()) == json.dumps(results)
    assert "metrics" not in evaluation.as_json()
    assert list(Evaluation(**{**results, "metrics": {"x": 1.0}}).as_json())[-2:] == ["metrics", "timings_s"]


def test_the_report_reads_an_earlier_evaluation_as_complete(tmp_path):
    fake_job(tmp_path / "0", ["seed=0"], {"status": "completed", "metrics": {"val/elbo": -460.0}})
    shutil.copytree(OLD, tmp_path / "0" / "eval")
    (tmp_path / "multirun.yaml").write_text("{}\n")
    [row] = collect([tmp_path])
    assert row.status == "completed" and row.error == ""
    assert {k: v for k, v in row.metrics.items() if k.startswith("eval/")} == scalars(old_results())
