"""tracking.mlflow with a local SQLite store in a temporary folder (MLflow refuses its old file store): one MLflow
run per run folder, continued by a second logger of the same folder (a resume, an evaluation) without a step
twice; pictures as artifacts and images."""

from __future__ import annotations

import json

import pytest

from vae_lightning.pictures import png_bytes

pytest.importorskip("mlflow")

from vae_lightning.tracking.mlflow import MLFLOW_RECORD, MLFlowLogger, MLflowTracker  # noqa: E402


def test_a_run_folder_is_one_mlflow_run_continued_without_a_step_twice(tmp_path):
    import torch

    run_dir, store = tmp_path / "run", f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_dir.mkdir()
    first = MLFlowLogger(run_dir=str(run_dir), tracking_uri=store)
    for step in range(5):
        first.log_metrics({"train/loss": float(step)}, step)
    first.log_hyperparams({"seed": 0})
    record = json.loads((run_dir / MLFLOW_RECORD).read_text())
    assert record["run_id"] == first.run_id and record["tracking_uri"] == store

    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    resumed = MLFlowLogger(run_dir=str(run_dir), tracking_uri=elsewhere)  # the run folder's record wins
    assert resumed.run_id == first.run_id
    for step in range(3, 7):  # a resume re-logs from its checkpoint's step
        resumed.log_metrics({"train/loss": 10.0 + step}, step)
    resumed.log_hyperparams({"seed": 1})  # refused by MLflow: kept, with a warning
    tracker = MLflowTracker(resumed)
    tracker.pictures({"samples/grid": png_bytes(torch.rand(3, 4, 4))}, 6, "samples")
    tracker.evaluation({"eval/elbo": -90.0}, {"seed": 0}, 6)
    tracker.close(trained=False)

    client = resumed.experiment
    history = [(m.step, m.value) for m in client.get_metric_history(first.run_id, "train/loss")]
    assert sorted(history) == [(0, 0.0), (1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0), (5, 15.0), (6, 16.0)]
    run = client.get_run(first.run_id)
    assert run.data.params == {"seed": "0"} and run.data.metrics["eval/elbo"] == -90.0
    assert run.info.status == "RUNNING"  # an evaluation leaves the run as training left it
    assert [a.path for a in client.list_artifacts(first.run_id, "samples")] == ["samples/samples_grid.png"]
