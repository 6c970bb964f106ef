"""The flow prior and the flow sampler through the real config and the real commands, on the tiny synthetic data:
pictures, the flow's own optimizer group, exact resume, load_model, sample, evaluate (likelihood bounds, the fitted
flow's score and fit time), the non-finite guard, and a sweep over priors."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.commands import (
    QUICK,
    assert_same_weights,
    brief_likelihoods,
    evaluate_overrides,
    run_cli,
    tiny_overrides,
)
from helpers.commands import train_run as train
from PIL import Image

from vae_lightning.callbacks.non_finite_guard import first_non_finite
from vae_lightning.checkpoints import load_checkpoint, load_model
from vae_lightning.latent.geometry import fixed_noise

FEW_STEPS = ["trainer.max_epochs=2", "trainer.limit_train_batches=4", "test=false"]
STEPS = 8  # of conftest's flow_run too


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.array(image)


def test_flow_run_trains_the_flow_in_its_own_group_and_draws_it(flow_run):
    names = {p.name for p in (flow_run / "samples" / "epoch_001").glob("*.png")}
    assert {"samples_flow_nsf_4.png", "samples_q_flow_nsf_4.png", "space_manifold.png"} <= names, names
    checkpoint = torch.load(flow_run / "checkpoints" / "last.ckpt", weights_only=False)
    flow_keys = [k for k in checkpoint["state_dict"] if k.startswith("prior.flow.")]
    assert flow_keys
    groups = checkpoint["optimizer_states"][0]["param_groups"]
    assert [g["lr"] for g in groups] == [1e-3, 3e-4]
    # the flow trained: every one of its parameters took the run's steps with gradients
    adam = checkpoint["optimizer_states"][0]["state"]
    assert all(int(adam[i]["step"]) == STEPS and bool(adam[i]["exp_avg"].any()) for i in groups[1]["params"])
    module = load_model(flow_run)
    assert module.prior.label == "Flow(NSF, 4)"


def test_flow_prior_resume_is_bit_identical(mnist_root, tmp_path):
    straight = train(mnist_root, tmp_path / "straight", "prior=flow", *FEW_STEPS, "~callbacks.prior_grid")
    first = train(mnist_root, tmp_path / "resumed", "prior=flow", *FEW_STEPS[1:], "trainer.max_epochs=1",
                  "~callbacks.prior_grid")
    resumed = run_cli("vae_lightning.train", f"ckpt_path={first}/checkpoints/last.ckpt", "trainer.max_epochs=2",
                      f"paths.log_dir={tmp_path / 'resumed'}", f"data.root={mnist_root}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_weights(first, straight, STEPS)


def test_briefly_trained_flow_prior_likelihood_bounds(flow_run, mnist_root):
    result = brief_likelihoods(flow_run, mnist_root)
    exact = result["nll_exact"]
    assert exact["converged"] and exact["prior_mass_on_grid"] == pytest.approx(1.0, abs=1e-3)
    assert result["nll_iwae"]["200"] >= exact["value"] - 0.1
    assert -result["elbo"] >= exact["value"]
    assert result["kl_per_dim"] is None


def test_flow_checkpoint_through_load_model_sample_and_evaluate(flow_run, mnist_root, tmp_path):
    flow_run = Path(shutil.copytree(flow_run, tmp_path / "flow"))  # evaluate writes into the run folder
    module = load_model(flow_run)
    images = module.sample(16, seed=0)
    with torch.no_grad():
        assert torch.equal(images, module.decode(fixed_noise(module.prior, 16, seed=0)))
    result = run_cli("vae_lightning.sample", f"ckpt_path={flow_run}", "n=16", "nrow=4", f"output={tmp_path / 'p.png'}")
    assert result.returncode == 0, result.stderr[-3000:]
    first = pixels(tmp_path / "p.png")[2:30, 2:30, 0].astype(float) / 255  # the first digit, inside its border
    assert np.abs(first - images[0, 0].numpy()).max() <= 1 / 255 + 1e-6
    fitted = run_cli("vae_lightning.sample", f"ckpt_path={flow_run}", "fitted=flow", "n=4", f"data.root={mnist_root}",
                     f"output={tmp_path / 'q.png'}")
    assert fitted.returncode == 0 and (tmp_path / "q.png").is_file(), fitted.stderr[-3000:]

    evaluated = run_cli("vae_lightning.evaluate", *evaluate_overrides(flow_run, mnist_root, tmp_path / "cache"),
                        *QUICK, "sampler_set=study_fitted", "log_to_trackers=false")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    saved = json.loads((flow_run / "eval" / "metrics.json").read_text())
    rows = {r["name"]: r for r in saved["sample_quality"]["rows"]}
    assert rows["flow_nsf_4"]["model_prior"] and not rows["q_flow_nsf_4"]["model_prior"]
    assert "fit q_flow_nsf_4" in saved["timings_s"] and saved["prior"] == "Flow(NSF, 4)"
    assert saved["likelihood"]["nll_exact"]["converged"]
    assert "| Flow(NSF, 4) on q(z) |" in evaluated.stdout


def test_a_flow_going_non_finite_stops_the_run_and_keeps_the_last_good_checkpoint(mnist_root, tmp_path):
    # the flow's own learning rate of 1e30 moves its weights by ~1e30 in the first step: still finite, but the next
    # density overflows. One step, one epoch: a good (finite) last.ckpt; the resumed run stops at its first step.
    first = run_cli("vae_lightning.train", *tiny_overrides(mnist_root, tmp_path), "prior=flow", "prior.lr=1e30",
                    "test=false", "trainer.max_epochs=1", "trainer.limit_train_batches=1", "~callbacks.prior_grid")
    assert first.returncode == 0, first.stderr[-3000:]
    (run,) = (tmp_path / "train" / "runs").iterdir()
    last = run / "checkpoints" / "last.ckpt"
    state = load_checkpoint(last)
    assert first_non_finite(state["state_dict"]) is None
    assert any(float(v.abs().max()) > 1e20 for k, v in state["state_dict"].items() if k.startswith("prior.flow."))
    checkpoints = {p: p.read_bytes() for p in (run / "checkpoints").iterdir()}

    second = run_cli("vae_lightning.train", f"ckpt_path={last}", "trainer.max_epochs=2",
                     "trainer.limit_train_batches=1.0")
    assert second.returncode == 1, second.stderr[-3000:]
    (line,) = [x for x in second.stderr.splitlines() if x.startswith("error:")]
    assert re.fullmatch(r"error: non-finite training loss at step 1 \(epoch 1, batch 0\): loss=nan, recon=\S+, "
                        r"kl=\S+, kl_weight=1; training stopped, no checkpoint written after the previous one", line)
    assert "Traceback" not in second.stderr
    assert {p: p.read_bytes() for p in (run / "checkpoints").iterdir()} == checkpoints


def test_multirun_sweeps_normal_and_flow(mnist_root, tmp_path):
    result = run_cli("vae_lightning.train", "-m", *tiny_overrides(mnist_root, tmp_path), "prior=normal,flow",
                     "trainer.max_epochs=1", "trainer.limit_train_batches=2", "test=false", "~callbacks.prior_grid")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted((tmp_path / "train" / "multiruns").glob("*/[0-9]*"))
    assert [load_model(job).prior.label for job in jobs] == ["N(0, 1²)", "Flow(NSF, 4)"]
