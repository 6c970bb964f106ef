"""Integration: the real Hydra config, on tiny synthetic MNIST-format files."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from helpers.commands import only_run, run_cli, scalars, tiny_overrides

from vae_lightning.checkpoints import CHECKPOINT_KEY
from vae_lightning.latent import BetaPrior, GaussianPrior, NormalPrior
from vae_lightning.runs.training import train
from vae_lightning.tracking import event_folder

PRIORS = {"normal": NormalPrior, "gaussian": GaussianPrior, "beta": BetaPrior}
SCHEDULES = ["constant", "linear", "sigmoid", "cosine", "cyclical"]


@pytest.mark.parametrize("annealing", SCHEDULES)
@pytest.mark.parametrize("prior", PRIORS)
def test_every_prior_with_every_schedule_trains(compose_cfg, mnist_root, tmp_path, prior, annealing, monkeypatch):
    seen: list = []
    cfg = compose_cfg(tiny_overrides(mnist_root, tmp_path) + [
        f"prior={prior}", f"annealing={annealing}", "trainer.max_epochs=2", "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=1", "test=false", "logger=none", "trainer.log_every_n_steps=1",
    ])
    fit = L.Trainer.fit

    def spy(self, model, *args, **kwargs):
        seen.append(model)
        return fit(self, model, *args, **kwargs)

    monkeypatch.setattr(L.Trainer, "fit", spy)
    metrics = train(cfg)
    module = seen[0]
    assert isinstance(module.prior, PRIORS[prior])
    assert module.global_step == 6
    for key in ("train/loss", "train/recon", "train/kl", "train/elbo", "val/elbo", "val/loss"):
        assert math.isfinite(metrics[key]), key
    # the weight used in the last step is the schedule's at step 5 (epoch 5/3 of 3-step epochs)
    schedule = [c for c in module.trainer.callbacks if type(c).__name__ == "KLAnnealing"][0]
    t = 5 if schedule.schedule.unit == "step" else 5 / 3
    assert metrics["train/kl_weight"] == pytest.approx(schedule.schedule(t))
    assert metrics["train/loss"] == pytest.approx(metrics["train/recon"] + metrics["train/kl_weight"]
                                                  * metrics["train/kl"], rel=1e-5)


def test_cli_run_writes_config_events_and_checkpoints(mnist_root, tmp_path):
    result = run_cli("vae_lightning.train", *tiny_overrides(mnist_root, tmp_path), "trainer.max_epochs=2",
                     "prior=beta", "prior.alpha=4", "prior.beta=3")
    assert result.returncode == 0, result.stderr[-3000:]
    run = only_run(tmp_path)
    assert (run / ".hydra" / "config.yaml").is_file()
    assert "alpha: 4" in (run / ".hydra" / "config.yaml").read_text()
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert "last.ckpt" in ckpts and len([c for c in ckpts if c.startswith("epoch_")]) == 1  # the best
    assert list(event_folder(run).glob("events.out.tfevents.*"))
    for stage in ("train", "val"):
        for name in ("loss", "recon", "kl", "elbo"):
            assert scalars(run, f"{stage}/{name}"), f"{stage}/{name} not logged"
    assert scalars(run, "train/kl_weight") and scalars(run, "test/elbo")
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint[CHECKPOINT_KEY]["prior"]["alpha"] == 4
    assert checkpoint["global_step"] == 2 * math.ceil((384 - 64) / 32)


def test_resume_continues_the_same_run_and_curve(mnist_root, tmp_path):
    annealing = ["annealing=linear", "annealing.unit=step", "annealing.warmup=25", "trainer.log_every_n_steps=1",
                 "test=false"]
    straight = tmp_path / "straight"
    assert run_cli("vae_lightning.train", *tiny_overrides(mnist_root, straight), *annealing,
                   "trainer.max_epochs=3").returncode == 0
    resumed = tmp_path / "resumed"
    first = run_cli("vae_lightning.train", *tiny_overrides(mnist_root, resumed), *annealing, "trainer.max_epochs=1")
    assert first.returncode == 0, first.stderr[-3000:]
    run = only_run(resumed)
    original_config = (run / ".hydra" / "config.yaml").read_text()
    # Resume with only the data/log paths and the new epoch count: the rest (linear, warmup=25)
    # must come from the run's own config, not from today's defaults (constant).
    second = run_cli("vae_lightning.train", f"ckpt_path={run}/checkpoints/last.ckpt", "trainer.max_epochs=3",
                     f"paths.log_dir={resumed}", f"data.root={mnist_root}")
    assert second.returncode == 0, second.stderr[-3000:]
    assert [p.name for p in (resumed / "train" / "runs").iterdir()] == [run.name]  # same folder
    assert (run / ".hydra" / "config.yaml").read_text() == original_config
    assert len(list(event_folder(run).glob("events.out.tfevents.*"))) >= 2  # same TensorBoard log
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == 30 and checkpoint["epoch"] == 2
    weights = scalars(run, "train/kl_weight")
    expected = scalars(straight / "train" / "runs" / next((straight / "train" / "runs").iterdir()).name,
                       "train/kl_weight")
    assert sorted(weights) == list(range(30)) == sorted(expected)
    assert weights == pytest.approx(expected)
    assert weights[12] == pytest.approx(12 / 25) and weights[29] == 1.0


def test_missing_data_is_one_clear_error(tmp_path):
    result = run_cli("vae_lightning.train", *tiny_overrides(tmp_path / "empty", tmp_path))
    assert result.returncode == 2
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert str(tmp_path / "empty" / "MNIST" / "raw") in line and "train-images-idx3-ubyte.gz" in line


def test_checkpoint_rebuilds_the_trained_module_without_data(mnist_root, tmp_path):
    from vae_lightning.checkpoints import load_model

    assert run_cli("vae_lightning.train", *tiny_overrides(mnist_root, tmp_path), "trainer.max_epochs=1",
                   "test=false", "prior=gaussian").returncode == 0
    run = only_run(tmp_path)
    module = load_model(run)  # a run folder means its checkpoints/last.ckpt
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert isinstance(module.prior, GaussianPrior) and (module.prior.loc, module.prior.scale) == (1.0, 2.0)
    assert all(torch.equal(v, state[k]) for k, v in module.state_dict().items())
    assert not module.training
    assert module.decode(torch.zeros(3, 2)).shape == (3, 1, 28, 28)
