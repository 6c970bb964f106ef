"""evaluate through the real config, on a VAE briefly trained on the tiny synthetic data."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
import torch
from helpers.commands import QUICK, evaluate_cfg, evaluate_overrides, only_run, run_cli, tiny_overrides
from helpers.tables import check_tables
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard.summary import hparams

from vae_lightning.checkpoints import load_model
from vae_lightning.core.errors import UserError
from vae_lightning.core.progress import no_track
from vae_lightning.evaluation.likelihood import likelihood_metrics
from vae_lightning.evaluation.settings import EvaluationSettings
from vae_lightning.latent import BetaPrior, GaussianPrior, MixturePrior, NormalPrior, VampPrior
from vae_lightning.latent.sampler_sets import build_samplers, same_distribution
from vae_lightning.model import MLPDecoder, MLPEncoder, VAEModule
from vae_lightning.runs.evaluation import evaluate_checkpoint, load_test_set
from vae_lightning.tracking import event_folder


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """conftest's per-user cache folder; module fixtures run before its per-test patch."""
    return tmp_path_factory.getbasetemp() / "cache"


@pytest.fixture(scope="module")
def five_epoch_run(mnist_root: Path, tmp_path_factory: pytest.TempPathFactory, cache: Path) -> Path:
    """A run folder of the study's 2-D VAE after 5 epochs on the synthetic data."""
    log_dir = tmp_path_factory.mktemp("logs")
    result = run_cli("vae_lightning.train", *tiny_overrides(mnist_root, log_dir), "trainer.max_epochs=5",
                     env={"XDG_CACHE_HOME": str(cache)})
    assert result.returncode == 0, result.stderr[-3000:]
    return only_run(log_dir)


def test_likelihood_bounds_on_a_trained_2d_model(five_epoch_run, mnist_root, cache):
    cfg = evaluate_cfg(*evaluate_overrides(five_epoch_run, mnist_root, cache), "iwae.k=[1,10,100,1000]")
    module = load_model(five_epoch_run)
    x, _ = load_test_set(torch.load(five_epoch_run / "checkpoints" / "last.ckpt", weights_only=False)["vae_lightning"]
                       ["data"], cfg, torch.device("cpu"))
    with torch.no_grad():
        result, _ = likelihood_metrics(module, x, EvaluationSettings.from_config(cfg).likelihood, no_track, {})
    exact, iwae = result["nll_exact"], result["nll_iwae"]
    assert exact["converged"] and exact["change_from_half_grid"] < 0.05
    # IWAE approaches -log p(x) from above as k grows (nested draws: up to Monte Carlo noise)
    values = [iwae[k] for k in ("1", "10", "100", "1000")]
    assert all(b <= a + 0.05 for a, b in zip(values, values[1:], strict=False)), values
    assert values[-1] >= exact["value"] - 0.1, (values, exact)
    assert values[0] > values[-1]
    assert result["elbo"] <= -exact["value"], (result["elbo"], exact)
    assert result["elbo"] == pytest.approx(-(result["recon"] + result["kl"]))
    assert len(result["kl_per_dim"]) == 2 and sum(result["kl_per_dim"]) == pytest.approx(result["kl"])


@pytest.mark.parametrize(("prior", "dims"), [
    pytest.param(NormalPrior, 3, id="normal-3d"),
    pytest.param(lambda d: GaussianPrior(d, 1.0, 2.0), 2, id="gaussian_1_2-2d"),
    pytest.param(lambda d: BetaPrior(d, 1.1, 2.0), 2, id="beta_1.1_2-2d"),
    pytest.param(lambda d: BetaPrior(d, 4.0, 3.0), 3, id="beta_4_3-3d"),
    pytest.param(MixturePrior, 2, id="mog-2d"),
    pytest.param(lambda d: VampPrior(d, n_pseudo_inputs=20), 2, id="vamp-2d"),
    pytest.param(MixturePrior, 3, id="mog-3d"),
])
def test_likelihood_for_every_prior_and_latent_size(prior, dims, mnist_root):
    torch.manual_seed(0)
    module = VAEModule(MLPEncoder(latent_dim=dims), MLPDecoder(latent_dim=dims), prior(dims), None, dims).eval()
    cfg = evaluate_cfg(f"data.root={mnist_root}", "data.download=false", *QUICK)
    x, _ = load_test_set({"_target_": "vae_lightning.data.MNISTDataModule", "val_size": 64}, cfg, torch.device("cpu"))
    with torch.no_grad():
        result, _ = likelihood_metrics(module, x, EvaluationSettings.from_config(cfg).likelihood, no_track, {})
    assert all(math.isfinite(result[k]) for k in ("elbo", "recon", "kl"))
    assert math.isfinite(result["nll_iwae"]["20"])
    if dims > 2:
        assert result["nll_exact"] is None
    else:
        assert result["nll_iwae"]["20"] >= result["nll_exact"]["value"] - 0.1


def samplers_with_own(entries, prior):
    """evaluate's samplers for a model with `prior`, each with whether it is the model's prior."""
    return [(s, same_distribution(s, prior)) for s in build_samplers(entries, prior.latent_dim, prior)]


def test_samplers_add_the_model_prior_unless_listed():
    samplers = evaluate_cfg().samplers
    listed = samplers_with_own(samplers, GaussianPrior(2, 0.0, 1.0))  # = N(0, 1), the first entry
    assert [s.name for s, _ in listed] == ["normal_0_1", "gaussian_1_2", "beta_1_1", "beta_1.1_1.1", "beta_1.1_2",
                                           "beta_4_3", "aggregate_posterior", "gmm_10"]
    assert [own for _, own in listed] == [True] + [False] * 7
    added = samplers_with_own(samplers, BetaPrior(2, 2.0, 5.0))
    assert len(added) == 9 and added[-1][0].name == "beta_2_5" and added[-1][1]
    # the study's evaluation list: the same, then the flow fitted to q(z) (opt-in: slow to fit)
    study = samplers_with_own(evaluate_cfg("sampler_set=study_fitted").samplers, GaussianPrior(2, 0.0, 1.0))
    assert [s.name for s, _ in study] == [s.name for s, _ in listed] + ["q_flow_nsf_4"]
    assert all(s.latent_dim == 2 for s, _ in added)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_evaluate_is_deterministic_and_only_reads_the_checkpoint(five_epoch_run, mnist_root, cache, tmp_path):
    ckpt = five_epoch_run / "checkpoints" / "last.ckpt"
    before = (sha256(ckpt), ckpt.stat().st_mtime_ns)
    results = [evaluate_checkpoint(evaluate_cfg(*evaluate_overrides(five_epoch_run, mnist_root, cache), *QUICK,
                                        f"eval_dir={tmp_path / name}", "log_to_trackers=false"))
               for name in ("a", "b")]
    assert (sha256(ckpt), ckpt.stat().st_mtime_ns) == before
    saved = [json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("a", "b")]
    for r in saved:
        del r["timings_s"]
    assert saved[0] == saved[1]
    assert saved[0]["likelihood"] == json.loads(json.dumps(results[0].likelihood))


def scalar_tags(run: Path) -> set[str]:
    acc = EventAccumulator(str(event_folder(run)))
    acc.Reload()
    return set(acc.Tags()["scalars"])


def test_evaluate_cli_writes_report_figures_metrics_and_tensorboard(five_epoch_run, mnist_root, cache):
    result = run_cli("vae_lightning.evaluate", *evaluate_overrides(five_epoch_run, mnist_root, cache), *QUICK,
                     env={"XDG_CACHE_HOME": str(cache)})
    assert result.returncode == 0, result.stderr[-3000:]
    out = five_epoch_run / "eval"
    for name in ("metrics.json", "report.md", "sample_quality.png", "class_frequencies.png",
                 "latent_dimensions.png", ".hydra/config.yaml"):
        assert (out / name).is_file(), name
    assert "| sampler | fid | clarity | diversity | probability_entropy | classes_90 |" in result.stdout
    evaluated, wrote, following = result.stdout.strip().splitlines()[-3:]  # what it evaluated, wrote, and what next
    last = five_epoch_run / "checkpoints" / "last.ckpt"
    assert evaluated.startswith(f"evaluated {last} at step ") and f"ckpt_path={five_epoch_run} means its " in evaluated
    (best,) = (five_epoch_run / "checkpoints").glob("epoch_*.ckpt")
    assert f"its best by val/elbo is evaluated with ckpt_path={best}" in evaluated
    assert wrote == (f"wrote {out}: class_frequencies.png, evaluate.log, latent_dimensions.png, metrics.json, "
                     "per_image.csv, report.md, sample_quality.png")
    assert following.startswith(f"next: {out / 'report.md'} ") and f"tensorboard --logdir {five_epoch_run}" in following
    assert wrote in (out / "evaluate.log").read_text()
    # likelihood, KL per dimension, sample quality, the mechanisms, precision and recall
    assert check_tables((out / "report.md").read_text()) == 5
    saved = json.loads((out / "metrics.json").read_text())
    rows = {r["name"]: r for r in saved["sample_quality"]["rows"]}
    assert list(rows) == ["normal_0_1", "gaussian_1_2", "beta_1_1", "beta_1.1_1.1", "beta_1.1_2", "beta_4_3",
                          "aggregate_posterior", "gmm_10", "test"]
    assert rows["normal_0_1"]["model_prior"] and rows["test"]["fid"] == pytest.approx(0, abs=1e-6)
    assert saved["likelihood"]["nll_exact"]["grid_points"] == saved["likelihood"]["nll_exact"]["points_per_dim"] ** 2
    tags = scalar_tags(five_epoch_run)  # a few eval/ cards beside the training curves, not one per sampler and score
    assert {"eval/elbo", "eval/nll_iwae", "eval/nll_exact", "eval/fid/own_prior", "eval/active_units"} <= tags
    per_sampler = {t for t in tags if t.startswith("eval/") and t.count("/") == 2 and "own_prior" not in t
                   and not t.startswith(("eval/surgery/", "eval/prior_holes/", "eval/bound_gaps/"))}
    assert not per_sampler
    assert {"eval/surgery/marginal_kl", "eval/prior_holes/mass", "eval/bound_gaps/amortization_gap"} <= tags
    events = b"".join(p.read_bytes() for p in event_folder(five_epoch_run).glob("events.out.tfevents.*"))
    _, session_start, _ = hparams({"x": 1}, {})
    assert session_start.value[0].tag.encode() in events  # the HPARAMS session


def test_evaluate_cli_errors_are_one_line_and_leave_nothing(mnist_root, tmp_path):
    result = run_cli("vae_lightning.evaluate", f"paths.log_dir={tmp_path}", f"data.root={mnist_root}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: ckpt_path is required: give a run folder (logs/train/runs/<timestamp>) or a .ckpt file"]
    assert not (tmp_path / "evaluate").exists()  # Hydra's folder for it is gone, and the parents it made
    with pytest.raises(UserError, match="ckpt_path=.*no.ckpt.* does not exist"):
        evaluate_checkpoint(evaluate_cfg(f"ckpt_path={tmp_path / 'no.ckpt'}", f"eval_dir={tmp_path / 'eval'}"))
    assert not (tmp_path / "eval").exists()


def test_the_old_spelling_of_log_to_trackers_is_one_line_naming_the_new(tmp_path):
    result = run_cli("vae_lightning.evaluate", "ckpt_path=run.ckpt", "tensorboard=false", f"paths.log_dir={tmp_path}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: tensorboard=false is renamed: write log_to_trackers=false"]
    assert not any(tmp_path.iterdir())


def test_evaluate_measures_why_a_prior_wins(evaluated_run):
    """metrics.json's mechanisms (evaluation/mechanisms.py) through the command: ELBO surgery whose parts sum to the
    average KL, the prior's holes, the bound gaps in the right order, precision and recall per sampler, in the
    printed tables and the trackers' scalars."""
    run, _ = evaluated_run
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    surgery = metrics["mechanisms"]["surgery"]
    assert surgery["kl"] == pytest.approx(surgery["mutual_information"] + surgery["marginal_kl"], abs=1e-9)
    assert 0 <= surgery["mutual_information"] <= surgery["log_n"] + 1e-9 and surgery["marginal_kl"] >= -0.05
    holes = metrics["mechanisms"]["prior_holes"]
    assert 0 <= holes["mass"] <= 1 and holes["n_draws"] == 500 and holes["ratio"] == 0.1
    gaps = metrics["mechanisms"]["bound_gaps"]
    assert gaps["n_images"] == 8 and gaps["amortization_gap"] >= 0 and gaps["elbo_best"] >= gaps["elbo_encoder"]
    assert set(metrics["mechanisms"]["iwae_gap"]) == {"20"} and metrics["mechanisms"]["iwae_gap"]["20"] > -0.05
    assert gaps["inference_gap"] == pytest.approx(gaps["approximation_gap"] + gaps["amortization_gap"], abs=1e-9)
    rows = [r for r in metrics["sample_quality"]["rows"] if r["name"] != "test"]
    assert rows and all(0 <= r[m] <= 1 for r in rows for m in ("precision", "recall", "coverage"))
    text = (run / "eval" / "report.md").read_text()
    assert "| KL(q(z) ‖ p(z)) (nats) |" in text and "| sampler | precision | recall | density | coverage |" in text
    assert check_tables(text) == 5


@pytest.mark.parametrize(("override", "message"), [
    ("mechanisms.holes.ratio=1", "error: mechanisms.holes.ratio=1 is invalid: must be"),
    ("mechanisms.gaps.steps=0", "error: mechanisms.gaps.steps=0 is invalid: must be"),
    ("mechanisms.gaps.n_images=129", "error: mechanisms.gaps.n_images=129 is invalid: must be at most the 128 test "
                                     "images evaluated (0: no bound gaps)"),
])
def test_bad_mechanism_settings_are_one_line_and_write_nothing(evaluated_run, mnist_root, tmp_path, override, message):
    run, cache = evaluated_run
    out = tmp_path / "eval"
    result = run_cli("vae_lightning.evaluate", *evaluate_overrides(run, mnist_root, cache), *QUICK, f"eval_dir={out}",
                     override)
    assert result.returncode == 2 and result.stderr.startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()
