"""The trackers beside TensorBoard through the real config: logger=csv, logger=mlflow and logger=many get the
same scalars (names and steps), pictures and hyperparameters; a resume continues the same metrics.csv and
MLflow run without a step twice; evaluate logs into the run it evaluates; a sweep is one MLflow run per job,
tagged with its overrides; the report reads a sweep's curves from metrics.csv without TensorBoard."""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
from helpers.commands import QUICK, TINY_CLASSIFIER, only_run, run_cli, scalars, tiny_overrides
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import vae_lightning.report as report_command
from vae_lightning.reporting import figures
from vae_lightning.runs import sweep
from vae_lightning.tracking import event_folder
from vae_lightning.tracking.mlflow import MISSING_MLFLOW, MLFLOW_RECORD

needs_mlflow = pytest.mark.skipif(importlib.util.find_spec("mlflow") is None,
                                  reason='the mlflow extra is not installed: pip install -e ".[mlflow]"')
SAMPLERS = ["normal_0_1", "gaussian_1_2", "beta_1_1", "beta_1.1_1.1", "beta_1.1_2", "beta_4_3"]
PARAMS = {"prior", "model", "annealing", "latent_dim", "seed"}
PICTURES = ["callbacks.prior_grid.scatter_points=64", "callbacks.prior_grid.n_reconstructions=16"]
# last.ckpt at step 8 of the 10-step epoch (never at an epoch's last batch), the epoch's end at step 10:
# resuming last.ckpt re-logs steps 8 and 9 and the epoch's end
MID_EPOCH = ["callbacks.last_checkpoint.every_n_train_steps=4", "callbacks.model_checkpoint.save_last=false",
             "trainer.log_every_n_steps=1", "test=false"]


def csv_points(run: Path) -> dict[str, list[tuple[int, float]]]:
    """metric -> [(step, value)] of every cell of the run's metrics.csv, in file order (repeats kept)."""
    points: dict[str, list[tuple[int, float]]] = {}
    with open(run / "csv" / "metrics.csv", newline="") as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                if key != "step" and value != "":
                    points.setdefault(key, []).append((int(row["step"]), float(value)))
    return points


def tensorboard_tags(run: Path) -> set[str]:
    acc = EventAccumulator(str(event_folder(run)), size_guidance={"scalars": 0})
    acc.Reload()
    return set(acc.Tags()["scalars"])


def mlflow_client(log_dir: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{log_dir}/mlflow.db")


def train_runs(client) -> list:
    return client.search_runs([client.get_experiment_by_name("train").experiment_id])


@pytest.fixture(scope="module")
def many(mnist_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """One logger=many run stopped at its mid-epoch last.ckpt's epoch end, then resumed from that checkpoint
    for a second epoch: the run folder, the log folder, and what its trackers held after the first part."""
    log_dir = tmp_path_factory.mktemp("many")
    first = run_cli("vae_lightning.train", *tiny_overrides(mnist_root, log_dir), "logger=many", "trainer.max_epochs=1",
                    *MID_EPOCH, *PICTURES)
    assert first.returncode == 0, first.stderr[-3000:]
    run = only_run(log_dir)
    before = {"csv": csv_points(run), "record": json.loads((run / MLFLOW_RECORD).read_text()),
              "tensorboard": {tag: scalars(run, tag) for tag in tensorboard_tags(run)}}
    second = run_cli("vae_lightning.train", f"ckpt_path={run}/checkpoints/last.ckpt", "trainer.max_epochs=2",
                     f"paths.log_dir={log_dir}", f"data.root={mnist_root}")
    assert second.returncode == 0, second.stderr[-3000:]
    return {"run": run, "log_dir": log_dir, "before": before}


@needs_mlflow
def test_csv_has_every_tensorboard_scalar_at_the_same_steps(many):
    first = many["before"]
    assert set(first["csv"]) == set(first["tensorboard"]) and "val/elbo" in first["csv"]
    for tag, points in first["tensorboard"].items():
        assert dict(first["csv"][tag]) == pytest.approx(points), tag
    assert (many["run"] / "csv" / "hparams.yaml").read_text().count(": ") >= len(PARAMS)


@needs_mlflow
def test_mlflow_has_the_metrics_params_and_a_picture_per_sampler(many):
    client = mlflow_client(many["log_dir"])
    (run,) = train_runs(client)
    assert run.info.run_id == many["before"]["record"]["run_id"] and run.info.status == "FINISHED"
    assert set(run.data.metrics) >= set(many["before"]["tensorboard"])
    for tag, points in many["before"]["tensorboard"].items():
        if tag != "epoch":
            history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, tag) if m.step < 10}
            assert history == pytest.approx(points), tag
    assert set(run.data.params) == PARAMS and run.data.params["prior"] == "N(0, 1²)"
    files = {a.path for a in client.list_artifacts(run.info.run_id, "samples/epoch_000")}
    for name in [*SAMPLERS, "comparison"]:
        assert f"samples/epoch_000/samples_{name}.png" in files
    charts = " ".join(a.path for a in client.list_artifacts(run.info.run_id, "images"))
    assert all(f"samples~{name}+step+10+" in charts for name in SAMPLERS)  # log_image by tag and step
    with open(many["run"] / "csv" / "images.csv", newline="") as f:
        listed = {(r["tag"], r["file"]) for r in csv.DictReader(f)}
    assert ("samples/beta_4_3", "samples/epoch_000/samples_beta_4_3.png") in listed
    assert all((many["run"] / "csv" / file).is_file() for _, file in listed)


@needs_mlflow
def test_resume_continues_one_mlflow_run_and_one_metrics_csv_without_a_step_twice(many):
    client = mlflow_client(many["log_dir"])
    (run,) = train_runs(client)
    assert json.loads((many["run"] / MLFLOW_RECORD).read_text()) == many["before"]["record"]
    points = csv_points(many["run"])
    for tag, values in points.items():
        if tag != "epoch":
            steps = [s for s, _ in values]
            assert len(steps) == len(set(steps)), f"{tag}: {Counter(steps).most_common(2)}"
            history = [m.step for m in client.get_metric_history(run.info.run_id, tag)]
            assert sorted(history) == sorted(steps), tag
    # the first part is still there, and the resumed part goes on to the end of the second epoch
    assert [s for s, _ in points["train/kl_weight"]] == list(range(20))
    assert [s for s, _ in points["val/elbo"]] == [9, 19]
    for tag in ("train/loss", "val/elbo"):
        assert dict(points[tag]) == pytest.approx(scalars(many["run"], tag))


@needs_mlflow
def test_evaluate_logs_into_the_run_it_evaluates(many, mnist_root, tmp_path):
    result = run_cli("vae_lightning.evaluate", f"ckpt_path={many['run']}", f"data.root={mnist_root}",
                     "data.download=false", "progress=false", *TINY_CLASSIFIER, *QUICK,
                     f"classifier.cache_dir={tmp_path / 'classifier'}")
    assert result.returncode == 0, result.stderr[-3000:]
    client = mlflow_client(many["log_dir"])
    (run,) = train_runs(client)
    evaluated = json.loads((many["run"] / "eval" / "metrics.json").read_text())
    step, elbo = evaluated["global_step"], evaluated["likelihood"]["elbo"]  # of last.ckpt
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "eval/elbo")] == [
        (step, pytest.approx(elbo))]
    figures = {a.path for a in client.list_artifacts(run.info.run_id, "eval")}
    assert "eval/eval_sample_quality.png" in figures and run.info.status == "FINISHED"
    assert dict(csv_points(many["run"])["eval/elbo"]) == pytest.approx({step: elbo})
    assert scalars(many["run"], "eval/elbo") == pytest.approx({step: elbo})


@needs_mlflow
def test_a_sweep_is_one_mlflow_run_per_job_tagged_with_its_overrides(mnist_root, tmp_path):
    result = run_cli("vae_lightning.train", "-m", *tiny_overrides(mnist_root, tmp_path), "logger=many",
                     "prior=normal,gaussian", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                     "trainer.limit_val_batches=1", "test=false", "~callbacks.prior_grid")
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep_dir,) = (tmp_path / "train" / "multiruns").iterdir()
    runs = {r.info.run_name: r for r in train_runs(mlflow_client(tmp_path))}
    assert set(runs) == {f"{sweep_dir.name}/0", f"{sweep_dir.name}/1"}
    assert {r.data.tags["override.prior"] for r in runs.values()} == {"normal", "gaussian"}
    assert all("logger=many" in r.data.tags["overrides"] and "val/elbo" in r.data.metrics for r in runs.values())

    # the report of the same sweep without its TensorBoard events: curves from metrics.csv
    without = tmp_path / "without_tensorboard"
    shutil.copytree(sweep_dir, without, ignore=shutil.ignore_patterns("tensorboard"))
    for job in sweep.job_dirs(without):
        curves = figures.csv_curves(job, figures.CURVES)
        events = figures.event_curves(sweep_dir / job.name, figures.CURVES)
        assert set(curves) == set(events) == set(figures.CURVES)
        assert figures.event_curves(job, figures.CURVES) == {}  # no TensorBoard events in the copy
        for tag, points in events.items():
            assert dict(curves[tag]) == pytest.approx(dict(points)), tag
    report_command.main([str(without)])
    assert (without / "report_curves.png").stat().st_size > 0


def test_logger_mlflow_without_the_extra_is_one_line_and_leaves_no_folder(mnist_root, tmp_path):
    hidden = tmp_path / "no_mlflow" / "mlflow"  # an `mlflow` that is not there, ahead of any installed one
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'mlflow'\", name='mlflow')\n")
    result = run_cli("vae_lightning.train", *tiny_overrides(mnist_root, tmp_path / "logs"), "logger=mlflow",
                     env={"PYTHONPATH": str(hidden.parent)})
    assert result.returncode == 2
    assert [line for line in result.stderr.splitlines() if line.strip()] == [f"error: {MISSING_MLFLOW}"]
    assert '".[mlflow]"' in MISSING_MLFLOW
    assert not list((tmp_path / "logs" / "train" / "runs").glob("*"))
