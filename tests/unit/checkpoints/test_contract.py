"""The checkpoint contract (checkpoints.contract): the sections a checkpoint stores, the keys that must match to
resume it, and that a checkpoint resumes as what it was trained as (a single run, or a run of members)."""

from __future__ import annotations

import pytest
from helpers.commands import compose_plain

from vae_lightning.checkpoints import (
    CHECKPOINT_KEY,
    MEMBERS_KEY,
    STORED_SECTIONS,
    check_compatible,
    check_members,
    stored_sections,
)
from vae_lightning.core.errors import UserError


def checkpoint_of(*overrides: str, members: dict | None = None) -> dict:
    stored = stored_sections(compose_plain("train", *overrides))
    return {CHECKPOINT_KEY: stored, **({MEMBERS_KEY: members} if members is not None else {})}


def test_the_stored_sections_are_plain_and_resolved():
    stored = stored_sections(compose_plain("train", "model.latent_dim=5"))
    assert tuple(stored) == STORED_SECTIONS
    assert all(isinstance(section, dict) for section in stored.values())
    assert stored["data"]["shuffle_seed"] == 12345  # ${seed}, resolved
    assert stored["model"]["encoder"]["latent_dim"] == 5  # ${model.latent_dim}, resolved


def test_a_checkpoint_resumes_with_its_own_model_and_a_longer_schedule():
    checkpoint = checkpoint_of("prior=beta", "annealing=linear")
    check_compatible(checkpoint, stored_sections(compose_plain("train", "prior=beta", "annealing=linear",
                                                               "annealing.warmup=99")), "a.ckpt")


@pytest.mark.parametrize(("override", "named"), [
    ("prior.alpha=2", r"prior\.alpha=2 \(checkpoint: 1\.0\)"),
    ("model.latent_dim=3", r"model\.latent_dim=3 \(checkpoint: 2\)"),
    ("likelihood=continuous_bernoulli", r"likelihood\._target_="),
    ("annealing=cosine", r"annealing\._target_="),
])
def test_a_checkpoint_refuses_another_model_prior_likelihood_or_schedule(override, named):
    checkpoint = checkpoint_of("prior=beta")
    requested = stored_sections(compose_plain("train", "prior=beta", override))
    with pytest.raises(UserError, match=named):
        check_compatible(checkpoint, requested, "a.ckpt")


def test_a_single_runs_checkpoint_resumes_only_as_a_single_run():
    checkpoint = checkpoint_of()
    check_members(checkpoint, None, "a.ckpt")
    with pytest.raises(UserError, match=r"single run's checkpoint.*without seeds"):
        check_members(checkpoint, [0, 1], "a.ckpt")


def test_a_stacked_checkpoint_resumes_only_with_its_own_seeds():
    checkpoint = checkpoint_of(members={"seeds": [0, 1]})
    check_members(checkpoint, [0, 1], "a.ckpt")
    with pytest.raises(UserError, match=r"stacked checkpoint.*seeds 0, 1"):
        check_members(checkpoint, None, "a.ckpt")
    with pytest.raises(UserError, match=r"seeds=\[1, 0\] differs from the checkpoint's members \[0, 1\]"):
        check_compatible(checkpoint, checkpoint[CHECKPOINT_KEY], "a.ckpt", [1, 0])


def test_a_members_checkpoint_does_not_resume_alone_and_names_its_runs():
    checkpoint = checkpoint_of(members={"seed": 1, "seeds": [0, 1], "run": "/runs/r"})
    with pytest.raises(UserError, match=r"member at seed 1 of a run of 2 members.*ckpt_path=/runs/r/checkpoints/last"):
        check_members(checkpoint, None, "a.ckpt")
