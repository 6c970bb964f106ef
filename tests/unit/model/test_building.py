"""Building the model from config sections (model.building.build_module): the parts the sections name, the latent
size checked, and seeds that pair configurations for real: the parts of a model built for a run at one seed (each
on its own stream, core.rng.stream) start from the same network weights whatever the prior, and from other weights
at another seed; building draws nothing from the global RNG."""

from __future__ import annotations

import pytest
import torch
from helpers.commands import compose_plain

from vae_lightning.core.errors import UserError
from vae_lightning.core.rng import stream, stream_seed
from vae_lightning.model.building import build_module

PRIORS = ["normal", "gaussian", "beta", "mog", "vamp", "flow"]


def networks(prior: str, seed: int | None, *overrides: str) -> dict[str, torch.Tensor]:
    module = build_module(compose_plain("train", f"prior={prior}", *overrides), seed=seed)
    return {k: v for k, v in module.state_dict().items() if k.startswith(("encoder.", "decoder."))}


@pytest.mark.parametrize("model", ["mlp", "conv"])
def test_every_prior_starts_the_networks_from_the_same_weights_at_one_seed(model):
    reference = networks("normal", 7, f"model={model}")
    assert len(reference) >= 8
    for prior in PRIORS[1:]:
        weights = networks(prior, 7, f"model={model}")
        assert weights.keys() == reference.keys()
        assert [k for k in reference if not torch.equal(weights[k], reference[k])] == [], prior
    other = networks("normal", 8, f"model={model}")
    assert all(not torch.equal(other[k], reference[k]) for k in reference if reference[k].numel() > 1)


def test_a_learned_prior_starts_alike_at_one_seed_and_building_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    first = build_module(compose_plain("train", "prior=mog"), seed=3).prior.state_dict()
    assert torch.equal(torch.get_rng_state(), state)
    again = build_module(compose_plain("train", "prior=mog"), seed=3).prior.state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
    # a part's stream depends on its name: the prior does not draw what the encoder draws
    assert stream_seed(3, "prior") != stream_seed(3, "encoder") and stream_seed(3, "prior") == stream_seed(3, "prior")


def test_a_stream_is_the_seeded_global_rng_inside_and_nothing_outside():
    before = torch.get_rng_state()
    with stream(5, "encoder"):
        inside = torch.rand(3)
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(inside, torch.rand(3, generator=torch.Generator().manual_seed(stream_seed(5, "encoder"))))
    with stream(None, "encoder"):  # no seed: the global RNG as it is
        assert torch.equal(torch.rand(3), torch.rand(3, generator=torch.Generator().set_state(before)))


def test_the_model_is_built_from_its_config_sections_with_the_parts_they_name():
    module = build_module(compose_plain("train", "prior=beta", "likelihood=continuous_bernoulli", "model.latent_dim=3"))
    assert (type(module.prior).__name__, type(module.likelihood).__name__) == ("BetaPrior", "ContinuousBernoulli")
    assert module.latent_dim == module.encoder.latent_dim == module.decoder.latent_dim == 3


def test_a_bad_latent_size_is_refused_naming_its_key():
    with pytest.raises(UserError, match=r"model\.latent_dim=0"):
        build_module(compose_plain("train", "model.latent_dim=0"))
