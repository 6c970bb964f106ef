"""The prior-comparison callback through the real Hydra config, on tiny synthetic data."""

from __future__ import annotations

import copy
import io
import logging
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from helpers.commands import tiny_overrides
from lightning.pytorch.callbacks import Callback
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from vae_lightning.callbacks import PriorGrid
from vae_lightning.model import VAEModule
from vae_lightning.runs.training import train
from vae_lightning.tracking import event_folder

STUDY_TAGS = ["samples/normal_0_1", "samples/gaussian_1_2", "samples/beta_1_1", "samples/beta_1.1_1.1",
              "samples/beta_1.1_2", "samples/beta_4_3"]
QUICK = ["trainer.limit_train_batches=3", "test=false", "callbacks.prior_grid.scatter_points=64",
         "callbacks.prior_grid.n_reconstructions=16"]


class StateRecorder(Callback):
    """Copies the weights at every epoch end (it runs after PriorGrid, so they are the ones drawn)."""

    def __init__(self) -> None:
        self.states: list[dict[str, torch.Tensor]] = []
        self.module: VAEModule | None = None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: VAEModule) -> None:
        self.module = pl_module
        self.states.append(copy.deepcopy(pl_module.state_dict()))


def train_recording(cfg, monkeypatch) -> tuple[StateRecorder, L.Trainer]:
    """train(cfg) with a StateRecorder appended to the trainer's callbacks."""
    recorder, trainers = StateRecorder(), []
    fit = L.Trainer.fit

    def fit_with_recorder(self, *args, **kwargs):
        self.callbacks.append(recorder)
        trainers.append(self)
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(L.Trainer, "fit", fit_with_recorder)
    train(cfg)
    return recorder, trainers[0]


def event_images(run: Path) -> dict[str, list]:
    acc = EventAccumulator(str(event_folder(run)), size_guidance={"images": 0})
    acc.Reload()
    return {tag: acc.Images(tag) for tag in acc.Tags()["images"]}


def png_pixels(png: Path | bytes) -> torch.Tensor:
    """A PNG file's (or encoded PNG's) RGB pixels [3, H, W] in [0, 1]."""
    with Image.open(io.BytesIO(png) if isinstance(png, bytes) else png) as image:
        return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).float() / 255


def quantized(image: torch.Tensor) -> torch.Tensor:
    """What save_image writes for a float image in [0, 1]."""
    return image.mul(255).add(0.5).clamp(0, 255).floor().div(255)


def test_training_writes_every_picture_to_tensorboard_and_png(compose_cfg, mnist_root, tmp_path, monkeypatch):
    cfg = compose_cfg(tiny_overrides(mnist_root, tmp_path) + QUICK + [
        "trainer.max_epochs=2", "prior=beta", "prior.alpha=2", "prior.beta=5",
        "callbacks.prior_grid.latent_every_n_epochs=5",  # -> only at the last epoch, here epoch 1
        # the sampler list from the command line: one added, one dropped
        "+samplers.beta_2_2={_target_: vae_lightning.latent.BetaPrior, alpha: 2, beta: 2}", "~samplers.beta_1_1",
    ])
    recorder, trainer = train_recording(cfg, monkeypatch)
    run = tmp_path / "run"
    samplers = [t for t in STUDY_TAGS if t != "samples/beta_1_1"] + ["samples/beta_2_2", "samples/beta_2_5"]
    expected = samplers + ["samples/comparison", "space/reconstructions", "space/manifold", "space/scatter"]
    images = event_images(run)
    assert sorted(images) == sorted(expected)
    for tag in expected:
        # grids every epoch; latent pictures every 5th and at the last
        epochs = [1] if tag in ("space/manifold", "space/scatter") else [0, 1]
        assert [e.step for e in images[tag]] == [3 * (k + 1) for k in epochs], tag  # at the global step
        assert png_pixels(images[tag][-1].encoded_image_string).std() > 0, f"{tag} is blank"
        for epoch in (0, 1):
            png = run / "samples" / f"epoch_{epoch:03d}" / f"{tag.replace('/', '_')}.png"
            assert png.is_file() == (epoch in epochs), png
            assert epoch not in epochs or png_pixels(png).std() > 0, png
    assert images["samples/beta_4_3"][0].width == images["samples/beta_4_3"][0].height == 8 * 30 + 2
    assert recorder.module.training  # train mode restored

    # Fixed noise: the same weights give the same grids; the epochs' images differ only by the weights.
    callback = next(c for c in trainer.callbacks if isinstance(c, PriorGrid))
    module = recorder.module.eval()
    written = []
    for epoch, state in enumerate(recorder.states):
        module.load_state_dict(state)
        grids = callback.sample_grids(module)
        assert all(torch.equal(grids[t], g) for t, g in callback.sample_grids(module).items())
        png = png_pixels(run / "samples" / f"epoch_{epoch:03d}" / "samples_beta_4_3.png")
        assert torch.equal(quantized(grids["samples/beta_4_3"]), png)
        written.append(png)
    assert not torch.equal(written[0], written[1])


def test_the_callback_does_not_change_training(compose_cfg, mnist_root, tmp_path, monkeypatch):
    """Same seed, with and without the callback: identical weights after two epochs (the posterior
    draws of epoch 2 come after the callback's first drawing, so any RNG use would show)."""
    finals = []
    for with_callback in (True, False):
        overrides = tiny_overrides(mnist_root, tmp_path / str(with_callback)) + QUICK + [
            "trainer.max_epochs=2", "data.binarize=dynamic", "logger=none", "~callbacks.model_checkpoint"]
        if not with_callback:
            overrides.append("~callbacks.prior_grid")
        recorder, trainer = train_recording(compose_cfg(overrides), monkeypatch)
        assert any(isinstance(c, PriorGrid) for c in trainer.callbacks) == with_callback
        finals.append(recorder.states[-1])
    assert finals[0].keys() == finals[1].keys()
    assert all(torch.equal(finals[0][k], finals[1][k]) for k in finals[0])


def test_latent_pictures_are_skipped_with_one_log_line_above_two_dimensions(compose_cfg, mnist_root, tmp_path,
                                                                           monkeypatch, caplog):
    cfg = compose_cfg(tiny_overrides(mnist_root, tmp_path) + QUICK + [
        "trainer.max_epochs=2", "model.latent_dim=3", "logger=none", "callbacks.prior_grid.every_n_epochs=2"])
    with caplog.at_level(logging.INFO, logger="vae_lightning.callbacks"):
        train_recording(cfg, monkeypatch)
    skipped = [r for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 1 and "3-D" in skipped[0].getMessage()
    samples = tmp_path / "run" / "samples"
    assert [p.name for p in samples.iterdir()] == ["epoch_001"]  # every 2nd epoch
    names = sorted(p.name for p in (samples / "epoch_001").iterdir())
    assert names == sorted([f"{t.replace('/', '_')}.png" for t in STUDY_TAGS]
                           + ["samples_comparison.png", "space_reconstructions.png"])


@pytest.mark.parametrize("key, value", [("every_n_epochs", 0), ("n_samples", -1), ("region_mass", 1.0)])
def test_bad_callback_values_are_parameter_errors(key, value):
    from vae_lightning.core.errors import ParameterError

    with pytest.raises(ParameterError, match=f"{key}={value}"):
        PriorGrid(**{key: value})
