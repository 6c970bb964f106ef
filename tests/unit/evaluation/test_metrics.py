"""The metric table (evaluation/metrics.py): every list of metrics is read off it, and a metric defined here, in
the test file, reaches every place evaluate and report show metrics."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers.commands import QUICK, evaluate_cfg, evaluate_overrides, scalars
from omegaconf import OmegaConf

from vae_lightning.core.paths import CONF_DIR
from vae_lightning.evaluation import metrics
from vae_lightning.evaluation.metrics import CONTRASTS, GROUPS, TRACKERS, Metric
from vae_lightning.reporting.groups import Contrast, Family
from vae_lightning.reporting.writer import write_report
from vae_lightning.runs import sweep
from vae_lightning.runs.evaluation import evaluate_checkpoint


def test_every_key_is_declared_once_and_every_list_is_read_off_the_table():
    keys = [m.key for m in metrics.METRICS]
    assert len(keys) == len(set(keys))
    # the lists that were written by hand before the table, in their order
    assert metrics.columns(metrics.HPARAMS) == ["val/elbo", "test/elbo", "eval/nll_exact", "eval/nll_iwae",
                                                "eval/fid/own_prior"]
    assert metrics.columns(CONTRASTS) == [
        "test/elbo", "eval/nll_exact", "eval/nll_iwae", "eval/active_units", "diagnostics/mutual_information",
        "eval/fid/own_prior", "eval/clarity/own_prior", "eval/diversity/own_prior", "eval/precision/own_prior",
        "eval/recall/own_prior", "eval/surgery/marginal_kl", "eval/prior_holes/mass"]
    assert "eval/fid/aggregate_posterior" in metrics.columns(GROUPS)
    assert "eval/fid/aggregate_posterior" not in metrics.columns(CONTRASTS) + metrics.columns(TRACKERS)
    assert metrics.unit("eval/fid/beta_1_1") == "FID" and metrics.unit("eval/surgery/kl") == "nats"
    assert metrics.unit("eval/kl_dim0") is None and metrics.unit("no/such") is None
    assert metrics.digits("eval/clarity/own_prior") == 3 and metrics.digits("eval/fid/own_prior") == 2


def test_scalars_of_a_metrics_json_are_read_by_the_table():
    results = {"likelihood": {"elbo": -150.0, "recon": 140.0, "kl": 10.0, "active_units": 2,
                              "nll_iwae": {"10": 147.0, "100": 146.0}, "nll_exact": None, "kl_per_dim": [4.0, 6.0]},
               "sample_quality": {"rows": [{"name": "normal_0_1", "model_prior": True, "fid": 3.0},
                                           {"name": "test", "model_prior": False, "fid": 0.0}]},
               "mechanisms": {"surgery": {"kl": 10.0, "log_n": 4.0}, "iwae_gap": {"10": 1.5}}}
    assert metrics.scalars(results) == {
        "eval/elbo": -150.0, "eval/recon": 140.0, "eval/kl": 10.0, "eval/nll_iwae": 146.0,
        "eval/nll_iwae_k10": 147.0, "eval/nll_iwae_k100": 146.0, "eval/active_units": 2.0, "eval/kl_dim0": 4.0,
        "eval/kl_dim1": 6.0, "eval/fid/normal_0_1": 3.0, "eval/fid/own_prior": 3.0, "eval/fid/test": 0.0,
        "eval/surgery/kl": 10.0, "eval/iwae_gap/k10": 1.5}


def mean_intensity(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A metric of the test images, one value per image: the mean of its pixels."""
    return x.flatten(1).mean(dim=1)


def top_two(features: torch.Tensor, probs: torch.Tensor) -> float:
    """A metric of a sampler's samples: the classifier's mean probability of its two likeliest classes."""
    return float(probs.topk(2, dim=1).values.sum(dim=1).mean())


@pytest.fixture
def new_metrics():
    """Two metrics registered for this test only: one per test image, one per sampler."""
    added = [metrics.register(Metric("eval/mean_intensity", "mean pixel intensity", "probability", None,
                                     frozenset({TRACKERS, GROUPS, CONTRASTS}), compute=mean_intensity)),
             metrics.register(Metric("eval/top_two", "top-two probability", None, True, frozenset({TRACKERS}),
                                     per_sampler=True, compute=top_two))]
    yield added
    for metric in added:
        metrics.unregister(metric.key)
    assert "eval/mean_intensity" not in metrics.columns(GROUPS)


def with_trackers(run: Path, *names: str) -> None:
    """The run folder's saved config with the `logger` section of these trackers (conf/logger/<name>.yaml)."""
    config = run / ".hydra" / "config.yaml"
    cfg = OmegaConf.load(config)
    cfg.logger = OmegaConf.merge(*(OmegaConf.load(CONF_DIR / "logger" / f"{name}.yaml") for name in names))
    OmegaConf.save(cfg, config)


def job(folder: Path, overrides: list[str], seed: int, evaluation: Path, intensity: float) -> None:
    """A completed sweep job whose evaluation is `evaluation`'s with the new metric set to `intensity`."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text(f"seed: {seed}\n")
    OmegaConf.save(OmegaConf.create([*overrides, f"seed={seed}"]), folder / ".hydra" / "overrides.yaml")
    sweep.write_status(folder, {"status": "completed", "metrics": {"val/elbo": -150.0, "test/elbo": -151.0}})
    shutil.copytree(evaluation, folder / "eval")
    results = json.loads((evaluation / "metrics.json").read_text())
    results["metrics"]["mean_intensity"] = intensity
    (folder / "eval" / "metrics.json").write_text(json.dumps(results))


def test_a_metric_defined_here_reaches_every_place(new_metrics, trained_run, mnist_root, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    with_trackers(run, "tensorboard", "csv")
    evaluation = evaluate_checkpoint(evaluate_cfg(*evaluate_overrides(run, mnist_root, tmp_path), *QUICK,
                                                  "mechanisms.enabled=false"))
    out = run / "eval"

    saved = json.loads((out / "metrics.json").read_text())
    with open(out / "per_image.csv") as f:
        per_image = [float(r["mean_intensity"]) for r in csv.DictReader(f)]
    assert saved["metrics"]["mean_intensity"] == pytest.approx(sum(per_image) / len(per_image))
    assert 0 < saved["metrics"]["mean_intensity"] < 1
    assert saved == json.loads(json.dumps(evaluation.as_json()))
    rows = {r["name"]: r for r in saved["sample_quality"]["rows"]}
    assert all(0 < r["top_two"] <= 1 for r in rows.values()) and "test" in rows
    assert "| mean pixel intensity |" in (out / "report.md").read_text()

    step = evaluation.global_step
    for tag in ("eval/mean_intensity", "eval/top_two/own_prior"):
        assert scalars(run, tag) == {step: pytest.approx(metrics.scalars(saved)[tag])}, tag
    with open(run / "csv" / "metrics.csv") as f:
        logged = [r for r in csv.DictReader(f) if r.get("eval/mean_intensity")]
    assert [float(r["eval/mean_intensity"]) for r in logged] == [pytest.approx(saved["metrics"]["mean_intensity"])]
    assert logged[0]["eval/top_two/own_prior"]

    sweep_dir = tmp_path / "sweep"
    base = saved["metrics"]["mean_intensity"]
    for k, (prior, seed, shift) in enumerate([("normal", 0, 0.0), ("normal", 1, 0.1), ("beta", 0, 1.0),
                                              ("beta", 1, 1.3)]):
        job(sweep_dir / str(k), [f"prior={prior}"], seed, out, base + shift)
    (sweep_dir / "multirun.yaml").write_text("{}\n")
    write_report([sweep_dir], families=[Family("priors", (Contrast.parse("prior=beta:normal"),))])
    text = (sweep_dir / "report.md").read_text()
    groups_header = next(line for line in text.splitlines() if line.startswith("| configuration | seeds"))
    assert "eval/mean_intensity" in [cell.strip() for cell in groups_header.split("|")]
    with open(sweep_dir / "report_contrasts.csv") as f:
        contrast = next(r for r in csv.DictReader(f) if r["metric"] == "eval/mean_intensity")
    assert float(contrast["difference"]) == pytest.approx(1.1)
