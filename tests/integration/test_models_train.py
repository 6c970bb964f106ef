"""Every network with the learned and the standard prior, the VampPrior paper's experiment and a convolutional
resume, through the real config and the real command, on the tiny synthetic data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from helpers.commands import assert_same_weights, run_cli, tiny_overrides, train_run
from omegaconf import OmegaConf

from vae_lightning.checkpoints import load_model
from vae_lightning.model import ContinuousBernoulli, ConvDecoder, ConvEncoder, GatedDense
from vae_lightning.runs import sweep

FEW_STEPS = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "test=false", "~callbacks.prior_grid"]
PRIOR_LABELS = {"normal": "N(0, 1²)", "mog": "MoG(10)", "vamp": "Vamp(500)"}


def multirun(data: Path, log_dir: Path, *overrides: str) -> list[Path]:
    """The job folders of `python -m vae_lightning.train -m ...`, in job order; every job must complete."""
    result = run_cli("vae_lightning.train", "-m", *tiny_overrides(data, log_dir), *overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep_dir,) = (log_dir / "train" / "multiruns").iterdir()
    jobs = sweep.job_dirs(sweep_dir)
    for job in jobs:
        status = sweep.read_status(job)
        assert status is not None and status["status"] == "completed", (job, status)
    return jobs


def test_every_model_trains_with_every_kind_of_prior(mnist_root, tmp_path):
    jobs = multirun(mnist_root, tmp_path, "model=mlp,conv,gated", "prior=normal,mog,vamp", *FEW_STEPS)
    assert len(jobs) == 9
    seen = set()
    for job in jobs:
        overrides = dict(o.split("=", 1) for o in OmegaConf.load(job / ".hydra" / "overrides.yaml")
                         if o.startswith(("model=", "prior=")))
        module = load_model(job)
        assert module.prior.label == PRIOR_LABELS[overrides["prior"]]
        assert module.architecture.startswith({"mlp": "mlp 784-400-200-2 leaky_relu", "conv": "conv 32-64",
                                               "gated": "mlp 784-300-300-40 gated"}[overrides["model"]])
        assert isinstance(module.encoder, ConvEncoder) == (overrides["model"] == "conv")
        state = torch.load(job / "checkpoints" / "last.ckpt", weights_only=False)
        assert state["global_step"] == 2 and all(torch.isfinite(v).all() for v in state["state_dict"].values())
        with torch.no_grad():
            x = torch.rand(3, 1, 28, 28)
            recon, kl = module.loss_terms(x)
            assert torch.isfinite(recon + kl).all()
            assert module.decode(module.prior.sample(4)).shape == (4, 1, 28, 28)
        seen.add((overrides["model"], overrides["prior"]))
    assert len(seen) == 9


def test_vampprior_paper_experiment_composes_with_each_prior_and_trains(mnist_root, tmp_path, compose_cfg):
    for prior in PRIOR_LABELS:
        cfg = compose_cfg(["experiment=vampprior_paper", f"prior={prior}"])
        assert cfg.data.binarize == "dynamic" and cfg.data.batch_size == 100 and cfg.data.val_size == 10_000
        assert cfg.model.latent_dim == 40 and cfg.model.encoder.activation == "gated"
        assert cfg.model.encoder.hidden_dims == [300, 300] and cfg.model.optimizer.lr == 5e-4
        assert cfg.annealing._target_.endswith("LinearWarmup") and cfg.annealing.warmup == 100
        assert cfg.annealing.unit == "epoch"
        stop = cfg.callbacks.early_stopping
        assert (stop.monitor, stop.mode, stop.patience) == ("val/elbo", "max", 50)
        assert cfg.trainer.max_epochs == 2000 and "latent_dim" not in cfg.prior  # the code passes model.latent_dim
    jobs = multirun(mnist_root, tmp_path, "experiment=vampprior_paper", "prior=normal,mog,vamp", *FEW_STEPS)
    labels = [load_model(job).prior.label for job in jobs]
    assert labels == list(PRIOR_LABELS.values())
    for job in jobs:
        module = load_model(job)
        assert module.latent_dim == 40 and any(isinstance(m, GatedDense) for m in module.encoder.modules())
        state = torch.load(job / "checkpoints" / "last.ckpt", weights_only=False)
        assert any("EarlyStopping" in key for key in state["callbacks"])  # its state resumes with the run
        assert math.isfinite(json.loads((job / sweep.STATUS_FILE).read_text())["metrics"]["val/elbo"])


def test_conv_resume_is_bit_identical(mnist_root, tmp_path):
    """A conv run (narrower than the default, for time) interrupted after its first epoch and resumed from
    last.ckpt ends with exactly the weights of the run that was not interrupted; its likelihood, stored in the
    checkpoint, comes back too and must match on resume."""
    common = ["model=conv", "model.encoder.channels=[8,16]", "model.encoder.hidden_dims=[32]",
              "likelihood=continuous_bernoulli", "trainer.limit_train_batches=3", "test=false", "~callbacks.prior_grid"]
    straight = train_run(mnist_root, tmp_path / "straight", *common, "trainer.max_epochs=2")
    first = train_run(mnist_root, tmp_path / "resumed", *common, "trainer.max_epochs=1")
    resumed = run_cli("vae_lightning.train", f"ckpt_path={first}/checkpoints/last.ckpt", "trainer.max_epochs=2",
                      f"paths.log_dir={tmp_path / 'resumed'}", f"data.root={mnist_root}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_weights(first, straight, 6)
    module = load_model(first)
    assert isinstance(module.decoder, ConvDecoder) and isinstance(module.likelihood, ContinuousBernoulli)
    refused = run_cli("vae_lightning.train", f"ckpt_path={first}/checkpoints/last.ckpt", "trainer.max_epochs=3",
                      "likelihood=bernoulli", f"paths.log_dir={tmp_path / 'resumed'}")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    (line,) = [x for x in refused.stderr.splitlines() if x.startswith("error:")]
    assert "likelihood._target_='vae_lightning.model.Bernoulli'" in line
