"""Every callback is chosen in conf/callbacks/ (runs.training.build_callbacks): the four that make a checkpoint come
first, KLAnnealing and RunConfig get what only the run knows, a run without either is refused in one line, the
others may go; a run folder's config from before the four were in YAML resumes with them."""

from __future__ import annotations

import pytest
from helpers.commands import compose_plain
from omegaconf import OmegaConf

from vae_lightning.callbacks import KLAnnealing, NonFiniteGuard, PriorGrid, RandomState, RunConfig
from vae_lightning.checkpoints import CHECKPOINT_KEY, stored_sections
from vae_lightning.core.errors import UserError
from vae_lightning.model import LinearWarmup
from vae_lightning.runs.training import build_callbacks, with_checkpoint_callbacks

CHECKPOINT_CALLBACKS = [KLAnnealing, RunConfig, RandomState, NonFiniteGuard]


def callbacks_of(*overrides: str) -> list:
    cfg = compose_plain("train", "callbacks.prior_grid.dirpath=null", "callbacks.model_checkpoint.dirpath=/tmp/x",
                        "callbacks.last_checkpoint.dirpath=/tmp/x", *overrides)
    return build_callbacks(cfg, stored_sections(cfg))


def test_the_default_callbacks_start_with_the_four_that_make_a_checkpoint_and_get_what_the_run_knows():
    cfg = compose_plain("train", "annealing=linear", "callbacks=none")
    callbacks = build_callbacks(cfg, stored_sections(cfg))
    assert [type(c) for c in callbacks] == CHECKPOINT_CALLBACKS
    assert isinstance(callbacks[0].schedule, LinearWarmup)
    checkpoint: dict = {}
    callbacks[1].on_save_checkpoint(None, None, checkpoint)
    assert checkpoint[CHECKPOINT_KEY] == stored_sections(cfg)
    default = callbacks_of()
    assert [type(c) for c in default[:4]] == CHECKPOINT_CALLBACKS and any(isinstance(c, PriorGrid) for c in default)


def test_an_optional_callback_may_go():
    assert RandomState not in {type(c) for c in callbacks_of("callbacks.random_state=null")}


@pytest.mark.parametrize(("name", "cls"), [("kl_annealing", "KLAnnealing"), ("run_config", "RunConfig")])
def test_a_run_without_a_callback_it_cannot_do_without_is_refused_in_one_line(name, cls):
    with pytest.raises(UserError, match=rf"lack {cls} \(.*\): put back callbacks\.{name} ") as err:
        callbacks_of(f"callbacks.{name}=null")
    assert "\n" not in str(err.value)


def test_a_saved_config_from_before_the_callbacks_were_in_yaml_gets_them_first():
    cfg = compose_plain("train")
    old = OmegaConf.masked_copy(cfg, list(cfg))
    old.callbacks = {k: v for k, v in cfg.callbacks.items()
                     if k not in ("kl_annealing", "run_config", "random_state", "non_finite_guard")}
    upgraded = with_checkpoint_callbacks(old)
    assert list(upgraded.callbacks) == list(cfg.callbacks)
    assert upgraded.callbacks == cfg.callbacks
    today = compose_plain("train", "callbacks.random_state=null")
    assert with_checkpoint_callbacks(today).callbacks.random_state is None  # a choice is kept
