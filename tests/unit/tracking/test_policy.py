"""tracking.policy: the HPARAMS policy (the same five names for every run, the key metrics first) and the same
pictures, hyperparameters and evaluation sent to every tracker of a run."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from vae_lightning.model.annealing import Constant
from vae_lightning.tracking import hyperparameters, log_evaluation, log_hyperparameters, log_images
from vae_lightning.tracking.policy import final_metrics

from .test_choose import OwnTracker


class Recorder(OwnTracker):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple] = []

    def pictures(self, pngs, step, subdir):
        self.seen.append(("pictures", sorted(pngs), step, subdir))

    def hyperparameters(self, params, metrics, step):
        self.seen.append(("hyperparameters", dict(params), list(metrics), step))

    def evaluation(self, values, params, step):
        self.seen.append(("evaluation", dict(values), dict(params), step))

    def close(self, trained):
        self.seen.append(("close", trained))


def test_the_same_five_hyperparameters_for_every_run():
    module = SimpleNamespace(architecture="mlp 784-2 / mlp 2-784", likelihood=SimpleNamespace(name="bernoulli"),
                             prior=SimpleNamespace(label="Beta(4, 3)"), latent_dim=2)  # what a VAEModule shows
    assert hyperparameters(module, Constant(1.0), 1e-3, 7) == {
        "prior": "Beta(4, 3)", "annealing": repr(Constant(1.0)), "model": "mlp 784-2 / mlp 2-784, bernoulli, lr 0.001",
        "latent_dim": 2, "seed": 7}
    assert hyperparameters(module, "linear", None, None)["model"] == "mlp 784-2 / mlp 2-784, bernoulli"


def test_the_key_metrics_come_first_and_are_zero_until_a_run_has_them():
    key_metrics = ("val/elbo", "test/elbo", "eval/nll_exact")
    final = final_metrics({"test/elbo": -91.0, "val/elbo": -90.0, "train/loss": 3.0, "diagnostics/au": 2.0},
                          key_metrics)
    assert list(final)[:len(key_metrics)] == list(key_metrics)
    assert final["eval/nll_exact"] == 0.0 and final["val/elbo"] == -90.0 and final["diagnostics/au"] == 2.0
    assert "train/loss" not in final


def test_every_tracker_gets_the_same_pictures_hyperparameters_and_evaluation(tmp_path):
    trackers = [Recorder(), Recorder()]
    pngs = log_images(trackers, {"samples/grid": torch.rand(3, 4, 4)}, 3, "samples", tmp_path / "png")
    log_hyperparameters(trackers, {"seed": 1}, {"val/elbo": -90.0}, 10, ["val/elbo"])
    figure = tmp_path / "sample_quality.png"
    figure.write_bytes(pngs["samples/grid"])
    log_evaluation(trackers, 10, {"eval/elbo": -91.0}, {"seed": 1}, [figure])
    assert (tmp_path / "png" / "samples_grid.png").read_bytes() == pngs["samples/grid"]
    assert trackers[0].seen == trackers[1].seen == [
        ("pictures", ["samples/grid"], 3, "samples"),
        ("hyperparameters", {"seed": 1}, list(final_metrics({"val/elbo": -90.0}, ["val/elbo"])), 10), ("close", True),
        ("evaluation", {"eval/elbo": -91.0}, {"seed": 1}, 10), ("pictures", ["eval/sample_quality"], 10, "eval"),
        ("close", False)]
