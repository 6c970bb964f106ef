"""Slow tier: the study's model on the real MNIST files (VAE_DATA_ROOT, else <repo>/data)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import lightning as L
import pytest
from lightning.pytorch.callbacks import Callback

from vae_lightning.config import PROJECT_ROOT
from vae_lightning.data import IDX_FILES
from vae_lightning.train import train

REAL_ROOT = Path(os.environ.get("VAE_DATA_ROOT", PROJECT_ROOT / "data"))
RAW = REAL_ROOT / "MNIST" / "raw"
HAVE_MNIST = all((RAW / f"{n}.gz").is_file() or (RAW / n).is_file() for n in IDX_FILES)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not HAVE_MNIST, reason=f"real MNIST not found in {RAW}/ (set VAE_DATA_ROOT to a folder "
                                              "with MNIST/raw/*.gz to run the slow tests)"),
]


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
