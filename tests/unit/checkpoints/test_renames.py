"""Old runs and old command lines (checkpoints/renames.py): a saved config that repeats `prior.latent_dim` still builds
and resumes, and a renamed override spelling is refused in one line naming the new one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers.commands import compose_plain
from omegaconf import OmegaConf

from vae_lightning.checkpoints import CHECKPOINT_KEY, check_compatible, load_checkpoint
from vae_lightning.checkpoints.renames import refuse_renamed, upgrade_config
from vae_lightning.core.errors import UserError
from vae_lightning.model.building import build_module

OLD_RUN = Path(__file__).resolve().parents[2] / "fixtures" / "old_run"


def test_the_old_runs_config_and_checkpoint_repeat_latent_dim_in_the_prior():
    """What the fixture holds, so that the tests below test something."""
    saved = OmegaConf.to_container(OmegaConf.load(OLD_RUN / ".hydra" / "config.yaml"), resolve=False)
    assert saved["prior"]["latent_dim"] == "${model.latent_dim}"
    stored = torch.load(OLD_RUN / "checkpoints" / "last.ckpt", weights_only=False)[CHECKPOINT_KEY]
    assert stored["prior"]["latent_dim"] == stored["model"]["latent_dim"] == 2


def test_an_old_prior_section_with_latent_dim_builds_as_the_code_passes_it():
    stored = torch.load(OLD_RUN / "checkpoints" / "last.ckpt", weights_only=False)[CHECKPOINT_KEY]
    sections = upgrade_config({k: v for k, v in stored.items() if k != "prior"} | {"prior": dict(stored["prior"])})
    sections.setdefault("likelihood", {"_target_": "vae_lightning.model.Bernoulli"})
    # kept as saved (latent_dim: 2) and passed in by build_module as well: no clash, the same prior
    with_saved = build_module({**sections, "prior": {**sections["prior"], "latent_dim": 2}}, seed=0)
    without = build_module(sections, seed=0)
    assert with_saved.prior.latent_dim == without.prior.latent_dim == 2
    for a, b in zip(with_saved.state_dict().values(), without.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_upgrade_config_drops_the_priors_latent_dim_from_saved_configs_and_checkpoints():
    config = upgrade_config(OmegaConf.load(OLD_RUN / ".hydra" / "config.yaml"))
    assert "latent_dim" not in config.prior and config.model.latent_dim == 2
    assert config.prior._target_ == "vae_lightning.latent.MixturePrior"  # and the classes at their homes now
    checkpoint = load_checkpoint(OLD_RUN / "checkpoints" / "last.ckpt")
    assert "latent_dim" not in checkpoint[CHECKPOINT_KEY]["prior"]
    # so the old checkpoint resumes under today's config (no prior.latent_dim) as under its own saved one
    today = compose_plain("train", "prior=mog", "prior.n_components=3", "model.encoder.hidden_dims=[16]",
                          "model.decoder.hidden_dims=[16]", "annealing=linear")
    plain = {k: OmegaConf.to_container(today[k], resolve=True) for k in ("prior", "likelihood")}
    check_compatible(checkpoint, {**checkpoint[CHECKPOINT_KEY], **{k: plain[k] for k in ("prior", "likelihood")}},
                     "last.ckpt")
    with pytest.raises(UserError, match=r"prior\.n_components=4"):
        check_compatible(checkpoint, {**checkpoint[CHECKPOINT_KEY], "prior": {**plain["prior"], "n_components": 4}},
                         "last.ckpt")


@pytest.mark.parametrize(("command", "override", "new"), [
    ("train", "samplers=study_fitted", "sampler_set=study_fitted"),
    ("evaluate", "samplers=study_fitted_quick", "sampler_set=study_fitted_quick"),
    ("explore", "samplers=study", "sampler_set=study"),
    ("train", "experiment=beta_4_3", "prior=beta_4_3 annealing=linear"),
    ("sample", "sampler=beta", "prior=beta"),
    ("sample", "+sampler.alpha=4", "prior.alpha=4"),
    ("sample", "sampler=flow", "fitted=flow"),
    ("sample", "sampler=prior", "nothing (the model's own prior is the default)"),
])
def test_a_renamed_spelling_is_refused_naming_the_new_one(command, override, new):
    with pytest.raises(UserError, match="^" + override.replace("+", r"\+").replace(".", r"\.")
                       + " is renamed: write " + new.replace("(", r"\(").replace(")", r"\)")):
        refuse_renamed(command, ["seed=1", override])


@pytest.mark.parametrize(("command", "override"), [
    ("train", "samplers.beta_4_3.alpha=5"), ("train", "~samplers.beta_1_1"), ("evaluate", "sampler_set=study"),
    ("train", "experiment=study"), ("sample", "prior=beta"), ("train", "+samplers.x={_target_: a.B}"),
])
def test_todays_spellings_pass(command, override):
    refuse_renamed(command, [override])
