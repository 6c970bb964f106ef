"""The real MNIST files (VAE_DATA_ROOT, else <repo>/data), marked slow: the study's model trains and the
default sample-quality classifier reaches its accuracy."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
from helpers.commands import compose_plain
from helpers.real_mnist import REAL_MNIST, REAL_ROOT
from lightning.pytorch.callbacks import Callback

from vae_lightning.evaluation.classifier import load_or_train
from vae_lightning.runs.training import train

pytestmark = REAL_MNIST


class LossRecorder(Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def _one_epoch(compose_cfg, tmp_path, monkeypatch, *overrides: str) -> tuple[dict[str, float], LossRecorder]:
    recorder = LossRecorder()
    fit = L.Trainer.fit

    def fit_with_recorder(self, *args, **kwargs):
        self.callbacks.append(recorder)
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(L.Trainer, "fit", fit_with_recorder)
    cfg = compose_cfg([f"data.root={REAL_ROOT}", f"paths.log_dir={tmp_path}", "trainer.max_epochs=1",
                       "trainer.accelerator=cpu", "callbacks.progress_bar.refresh_rate=0", "test=false",
                       *overrides])
    return train(cfg), recorder


def test_study_model_one_epoch_reaches_elbo(compose_cfg, tmp_path, monkeypatch):
    metrics, recorder = _one_epoch(compose_cfg, tmp_path, monkeypatch)
    assert len(recorder.losses) == math.ceil(55_000 / 128)
    assert metrics["val/elbo"] > -170, metrics


def test_beta_4_3_one_epoch_is_finite(compose_cfg, tmp_path, monkeypatch):
    metrics, recorder = _one_epoch(compose_cfg, tmp_path, monkeypatch, "prior=beta", "prior.alpha=4",
                                   "prior.beta=3")
    assert len(recorder.losses) == math.ceil(55_000 / 128)
    assert all(math.isfinite(loss) for loss in recorder.losses)
    assert all(math.isfinite(v) for v in metrics.values()), metrics


def test_the_default_classifier_reaches_99_percent(tmp_path):
    cfg = compose_plain("train_classifier", f"classifier.cache_dir={tmp_path}")
    _, record = load_or_train(cfg.classifier, REAL_ROOT, "mnist", download=False)
    assert record["test_accuracy"] >= 0.99
    assert Path(record["path"]).parent == tmp_path and Path(record["path"]).is_file()
