"""The Python API: `load_model` gives back a trained model from its run folder or checkpoint alone."""

from __future__ import annotations

import pytest
import torch

from vae_lightning import load_model
from vae_lightning.core.errors import UserError
from vae_lightning.latent import BetaPrior


def test_a_loaded_model_samples_encodes_and_decodes(trained_run):
    model = load_model(trained_run, device="cpu")
    assert not model.training
    images = model.sample(16)
    assert images.shape == (16, 1, 28, 28) and images.min() >= 0 and images.max() <= 1
    assert torch.equal(images, load_model(trained_run / "checkpoints" / "last.ckpt").sample(16, seed=0))
    assert not torch.equal(images, model.sample(16, seed=1))
    q = model.encode(images)
    assert q.mean.shape == (16, model.latent_dim)
    assert model.decode(q.mean).shape == (16, 1, 28, 28)


def test_sample_takes_a_sampler_config_or_object(trained_run):
    model = load_model(trained_run)
    from_config = model.sample(8, {"_target_": "vae_lightning.latent.BetaPrior", "alpha": 4.0, "beta": 3.0}, seed=3)
    from_object = model.sample(8, BetaPrior(model.latent_dim, alpha=4.0, beta=3.0), seed=3)
    assert torch.equal(from_config, from_object)
    assert not torch.equal(from_config, model.sample(8, seed=3))  # the model's prior is N(0, I)


def test_a_truncated_checkpoint_is_the_commands_one_line_error(trained_run, tmp_path):
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes((trained_run / "checkpoints" / "last.ckpt").read_bytes()[:50_000])
    with pytest.raises(UserError, match=r"^ckpt_path='.*truncated.ckpt' is not a readable checkpoint") as info:
        load_model(truncated)
    assert "\n" not in str(info.value)


def test_a_checkpoint_of_another_version_is_a_user_error(trained_run, tmp_path):
    checkpoint = torch.load(trained_run / "checkpoints" / "last.ckpt", weights_only=False)
    checkpoint["state_dict"]["prior.extra"] = torch.zeros(1)  # weights this version's model does not have
    torch.save(checkpoint, tmp_path / "other.ckpt")
    with pytest.raises(UserError, match="weights do not fit the model its config describes"):
        load_model(tmp_path / "other.ckpt")
