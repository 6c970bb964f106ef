"""Reading checkpoints (checkpoints.loading): a run folder's last.ckpt, one-line errors for a missing, truncated or
foreign file, old checkpoints upgraded (old class paths, sections added since), and the model rebuilt from the
stored sections with its weights; a checkpoint written by training holds the contract's keys."""

from __future__ import annotations

import pytest
import torch
from helpers.commands import compose_plain

from vae_lightning.checkpoints import (
    CHECKPOINT_KEY,
    MEMBERS_KEY,
    STORED_SECTIONS,
    load_checkpoint,
    load_trained,
    module_from_checkpoint,
    resolve_checkpoint,
    stored_sections,
)
from vae_lightning.core.errors import UserError
from vae_lightning.model import Bernoulli, VAEModule
from vae_lightning.model.building import build_module


def test_a_trained_runs_checkpoint_holds_the_stored_sections_and_loads(trained_run):
    checkpoint = torch.load(trained_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert tuple(checkpoint[CHECKPOINT_KEY]) == STORED_SECTIONS
    assert MEMBERS_KEY not in checkpoint
    module, stored, step = load_trained(trained_run)
    assert isinstance(module, VAEModule) and not module.training
    assert stored == checkpoint[CHECKPOINT_KEY] and step == checkpoint["global_step"] > 0


def test_a_run_folder_means_its_last_checkpoint(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(UserError, match="a folder without checkpoints/last.ckpt"):
        resolve_checkpoint(tmp_path)
    (tmp_path / "checkpoints" / "last.ckpt").touch()
    assert resolve_checkpoint(tmp_path) == tmp_path / "checkpoints" / "last.ckpt"
    assert resolve_checkpoint(tmp_path / "x.ckpt") == tmp_path / "x.ckpt"


def test_missing_truncated_and_foreign_files_are_one_line_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / "none.ckpt")
    (tmp_path / "cut.ckpt").write_bytes(b"PK\x03\x04 not a whole file")
    with pytest.raises(UserError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "cut.ckpt")
    torch.save({"state_dict": {}}, tmp_path / "foreign.ckpt")
    with pytest.raises(UserError, match="not a vae_lightning checkpoint"):
        load_checkpoint(tmp_path / "foreign.ckpt")


def test_an_old_checkpoint_is_read_with_todays_class_paths_and_sections(tmp_path):
    stored = stored_sections(compose_plain("train", "prior=beta"))
    module = build_module(stored, seed=0)
    old = {**stored, "prior": {**stored["prior"], "_target_": "vae_lightning.priors.BetaPrior"}}
    del old["likelihood"]  # written before the likelihood group existed
    torch.save({CHECKPOINT_KEY: old, "state_dict": module.state_dict()}, tmp_path / "old.ckpt")
    checkpoint = load_checkpoint(tmp_path / "old.ckpt")
    assert checkpoint[CHECKPOINT_KEY]["prior"]["_target_"] == "vae_lightning.latent.BetaPrior"
    assert checkpoint[CHECKPOINT_KEY]["likelihood"] == {"_target_": "vae_lightning.model.Bernoulli"}
    loaded = module_from_checkpoint(checkpoint)
    assert isinstance(loaded.likelihood, Bernoulli)
    assert all(torch.equal(v, module.state_dict()[k]) for k, v in loaded.state_dict().items())


def test_weights_that_do_not_fit_and_a_stacked_checkpoint_are_refused():
    stored = stored_sections(compose_plain("train"))
    other = build_module(stored_sections(compose_plain("train", "model.latent_dim=3"))).state_dict()
    with pytest.raises(UserError, match="weights do not fit the model its config describes"):
        module_from_checkpoint({CHECKPOINT_KEY: stored, "state_dict": other})
    with pytest.raises(UserError, match=r"stacked checkpoint of a run of 2 members.*<run>/seed_<s>"):
        module_from_checkpoint({CHECKPOINT_KEY: stored, MEMBERS_KEY: {"seeds": [0, 1]}, "state_dict": {}})
