"""What a checkpoint holds beyond Lightning's own keys, and the checks before one is resumed.

A checkpoint written by training holds, besides the weights, optimizer and loop state Lightning writes:
`CHECKPOINT_KEY`, the config sections that define the model (`STORED_SECTIONS`, written by the callback
`callbacks.RunConfig` from `stored_sections(cfg)`), and in a K-member run `MEMBERS_KEY` (runs/members.py).
Resuming checks that the checkpoint agrees with the requested config (`check_compatible`) and that it resumes as
what it was trained as (`check_members`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from vae_lightning.core.errors import UserError

# Where a checkpoint keeps its config sections
CHECKPOINT_KEY = "vae_lightning"
# Where the checkpoints of a K-member run (runs/members.py) say so: a member's {"seed", "seeds", "run"}, the
# stacked checkpoint's {"seeds"}
MEMBERS_KEY = "vae_lightning_members"
# Config sections that define what a checkpoint is; stored in it by RunConfig
STORED_SECTIONS = ("model", "prior", "likelihood", "annealing", "data")
# Config keys a checkpoint must agree with to be resumed: they define its weights and what they mean
# (model, prior, likelihood) or the curve it is on (the schedule's class; its parameters are restored
# by KLAnnealing).
MUST_MATCH = ("model", "prior", "likelihood", "annealing._target_")

# Sections added after checkpoints were first written, with what those checkpoints used.
DEFAULT_SECTIONS = {"likelihood": {"_target_": "vae_lightning.model.Bernoulli"}}


def stored_sections(cfg: DictConfig) -> dict[str, Any]:
    """The sections of a composed config that a checkpoint stores (STORED_SECTIONS), resolved to plain values."""
    return {s: OmegaConf.to_container(cfg[s], resolve=True) for s in STORED_SECTIONS}


def _differences(stored: Any, requested: Any, key: str) -> list[str]:
    """Dotted keys at which two plain config trees differ, with both values."""
    if isinstance(stored, dict) and isinstance(requested, dict):
        return [d for k in sorted(set(stored) | set(requested))
                for d in _differences(stored.get(k), requested.get(k), f"{key}.{k}")]
    return [] if stored == requested else [f"{key}={requested!r} (checkpoint: {stored!r})"]


def _select(tree: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree


def check_compatible(checkpoint: dict[str, Any], config: dict[str, Any], ckpt_path: str | Path,
                     seeds: list[int] | None = None) -> None:
    """Raise UserError when the checkpoint's model, prior or likelihood differs from the requested config, or it was
    trained as something else than it is resumed as (`check_members`: a single run, or the members `seeds`)."""
    check_members(checkpoint, seeds, ckpt_path)
    stored = checkpoint[CHECKPOINT_KEY]
    diffs = [d for key in MUST_MATCH for d in _differences(_select(stored, key), _select(config, key), key)]
    if diffs:
        raise UserError(f"ckpt_path={str(ckpt_path)!r} was trained with another model/prior/likelihood/schedule than "
                        f"requested: {'; '.join(diffs)}. Drop those overrides to resume it, or train a new run without "
                        "ckpt_path")


def check_members(checkpoint: dict[str, Any], seeds: list[int] | None, ckpt_path: str | Path) -> None:
    """A checkpoint resumes as what it was trained as: a single run without `seeds`, the stacked checkpoint of a
    K-member run (runs/members.py) with its own `seeds`; a member's checkpoint does not resume alone."""
    members = checkpoint.get(MEMBERS_KEY) or {}
    if "seed" in members:
        raise UserError(f"ckpt_path={str(ckpt_path)!r} is the member at seed {members['seed']} of a run of "
                        f"{len(members['seeds'])} members; resume all of them with "
                        f"ckpt_path={Path(members['run']) / 'checkpoints' / 'last.ckpt'}")
    stored = members.get("seeds")
    if seeds is None and stored is not None:
        raise UserError(f"ckpt_path={str(ckpt_path)!r} is the stacked checkpoint of a run of members (seeds "
                        f"{', '.join(map(str, stored))}); resume it with its own seeds (drop seeds=null)")
    if seeds is not None and stored is None:
        raise UserError(f"ckpt_path={str(ckpt_path)!r} is a single run's checkpoint, not a run of members; resume "
                        "it without seeds=[...]")
    if seeds is not None and list(stored) != list(seeds):
        raise UserError(f"seeds={list(seeds)} differs from the checkpoint's members {list(stored)}; resume with the "
                        "checkpoint's own list (drop the seeds override), or train a new run")

