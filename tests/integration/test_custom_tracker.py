"""A tracker defined in this file (one class plus one YAML in a temporary config folder, `hydra.searchpath`)
is reached by a training run, its resume and its evaluation: scalars, pictures, hyperparameters and the
evaluation, as every built-in tracker is."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from helpers.commands import QUICK, config_on_searchpath, evaluate_overrides, only_run, run_cli, tiny_overrides
from lightning.pytorch.loggers import Logger

RECORD = "recorded.jsonl"


class RecordingTracker(Logger):
    """A Lightning logger that is its own tracker: every call appended as a JSON line to `<folder>/recorded.jsonl`."""

    def __init__(self, folder: str) -> None:
        super().__init__()
        self.folder = Path(folder)

    def _record(self, kind: str, **data: Any) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / RECORD, "a") as f:
            f.write(json.dumps({"kind": kind, **data}, default=str) + "\n")

    @property
    def name(self) -> str:
        return "recording"

    @property
    def version(self) -> str:
        return "0"

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self._record("scalars", step=step, values=dict(metrics))

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Lightning's own call with the module's hparams; the run's hyperparameters come in `hyperparameters`."""

    def pictures(self, pngs: Mapping[str, bytes], step: int, subdir: str) -> None:
        assert all(png.startswith(b"\x89PNG") for png in pngs.values())
        self._record("pictures", step=step, subdir=subdir, tags=sorted(pngs))

    def hyperparameters(self, params: Mapping[str, Any], metrics: Mapping[str, float], step: int) -> None:
        self._record("hyperparameters", step=step, params=dict(params), metrics=sorted(metrics))

    def evaluation(self, values: Mapping[str, float], params: Mapping[str, Any], step: int) -> None:
        self._record("evaluation", step=step, values=dict(values), params=dict(params))

    def close(self, trained: bool) -> None:
        self._record("close", trained=trained)


def recorded(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "recording" / RECORD).read_text().splitlines()]


def test_a_tracker_defined_in_a_test_is_reached_by_training_resume_and_evaluation(mnist_root, tmp_path):
    search, env = config_on_searchpath(tmp_path, "logger", "recording", "recording:\n"
                                       "  _target_: test_custom_tracker.RecordingTracker\n"
                                       "  folder: ${paths.output_dir}/recording\n", __file__)
    logs = tmp_path / "logs"
    first = run_cli("vae_lightning.train", *tiny_overrides(mnist_root, logs),
                    search, "logger=recording", "trainer.max_epochs=1", "trainer.limit_train_batches=4",
                    "trainer.log_every_n_steps=1", "callbacks.prior_grid.n_samples=16", env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    run = only_run(logs)
    trained = recorded(run)
    steps = {r["step"] for r in trained if r["kind"] == "scalars" and "train/loss" in r["values"]}
    assert steps == {0, 1, 2, 3}
    assert any(r["kind"] == "scalars" and "test/elbo" in r["values"] for r in trained)
    assert any(r["kind"] == "pictures" and r["subdir"].startswith("samples/") for r in trained)
    (params,) = [r for r in trained if r["kind"] == "hyperparameters"]
    assert set(params["params"]) == {"prior", "annealing", "model", "latent_dim", "seed"}
    assert "val/elbo" in params["metrics"] and params["step"] == 4
    assert trained[-1] == {"kind": "close", "trained": True}

    resume = run_cli("vae_lightning.train", f"ckpt_path={run}/checkpoints/last.ckpt", "trainer.max_epochs=2",
                     f"paths.log_dir={logs}", f"data.root={mnist_root}", env=env)
    assert resume.returncode == 0, resume.stderr[-3000:]
    resumed = recorded(run)[len(trained):]
    assert {r["step"] for r in resumed if r["kind"] == "scalars" and "train/loss" in r["values"]} == {4, 5, 6, 7}
    assert [r["step"] for r in resumed if r["kind"] == "hyperparameters"] == [8]

    evaluate = run_cli("vae_lightning.evaluate", *evaluate_overrides(run, mnist_root, tmp_path), *QUICK, env=env)
    assert evaluate.returncode == 0, evaluate.stderr[-3000:]
    evaluated = recorded(run)[len(trained) + len(resumed):]
    (evaluation,) = [r for r in evaluated if r["kind"] == "evaluation"]
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert evaluation["step"] == metrics["global_step"] == 8
    assert evaluation["values"]["eval/elbo"] == pytest.approx(metrics["likelihood"]["elbo"])
    assert evaluation["params"]["prior"] == params["params"]["prior"]
    (figures,) = [r for r in evaluated if r["kind"] == "pictures"]
    assert figures["subdir"] == "eval" and "eval/sample_quality" in figures["tags"]
    assert evaluated[-1] == {"kind": "close", "trained": False}
