"""The checkpoint contract: which config sections a checkpoint stores, which must match to resume
it, and building a module from them. train, evaluate, sample, bench and `load_model` all use it, so
a checkpoint is a trained model that needs neither its run folder nor a dataset.

The stored sections are written by the callback `callbacks.RunConfig`. Checkpoints and run folders
written before the package was laid out by concept name their classes by their old homes
(`vae_lightning.priors.BetaPrior`, `vae_lightning.module.VAEModule`, ...): `upgrade_config` renames
them on load (runs/renames.py), so they load, resume and evaluate as they did
(tests/integration/test_old_checkpoint.py).
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from hydra.errors import InstantiationException

from vae_lightning.core.building import build
from vae_lightning.core.checks import COUNT, Check
from vae_lightning.core.errors import UserError
from vae_lightning.core.rng import stream
from vae_lightning.model import VAEModule
from vae_lightning.runs.renames import upgrade_config

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
# The `ckpt_path` of evaluate, sample and beta_grid: required
CKPT_PATH = Check(lambda v: isinstance(v, str) and v.strip() != "",
                  "a checkpoint file or a run folder, e.g. ckpt_path=logs/train/runs/<timestamp>")

# The model config's networks, built each on its own stream of the seed (a model config without them builds
# its networks itself, on the model's stream)
NETWORKS = ("encoder", "decoder")

# Sections added after checkpoints were first written, with what those checkpoints used.
DEFAULT_SECTIONS = {"likelihood": {"_target_": "vae_lightning.model.Bernoulli"}}


def build_module(sections: Mapping[str, Any], seed: int | None = None) -> VAEModule:
    """The (untrained) VAE of a config's `model`, `prior` and `likelihood` sections: a command's composed
    config or the sections stored in a checkpoint.

    With the run's `seed` (training, the benchmark), the prior, the likelihood, the encoder and the decoder each
    draw their initial parameters from their own stream of that seed (core.rng.stream), so runs of two
    configurations at one seed start from the same network weights wherever their architectures agree: a
    learned prior does not change the networks' initialisation, and seeds pair configurations for real."""
    model = sections["model"]
    COUNT.check("model.latent_dim", model["latent_dim"])
    parts = {}
    for name, node in (("prior", sections["prior"]), ("likelihood", sections["likelihood"]),
                       *((n, model[n]) for n in NETWORKS if n in model)):
        with stream(seed, name):
            parts[name] = build(node, "model." + name if name in NETWORKS else name,
                                **({"latent_dim": model["latent_dim"]} if name == "prior" else {}))
    with stream(seed, "model"):
        return build(model, "model", **parts)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict at `path`, on the CPU; a clear UserError when it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"ckpt_path={str(path)!r} does not exist; give a .ckpt file, e.g. "
                        "logs/train/runs/<timestamp>/checkpoints/last.ckpt")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as err:
        raise UserError(f"ckpt_path={str(path)!r} is not a readable checkpoint (truncated or not a .ckpt "
                        f"file: {type(err).__name__}); give a complete checkpoint written by training") from err
    if not isinstance(checkpoint, dict) or CHECKPOINT_KEY not in checkpoint:
        raise UserError(f"ckpt_path={str(path)!r} is not a vae_lightning checkpoint (it stores no run config); "
                        "give a checkpoint written by python -m vae_lightning.train")
    checkpoint[CHECKPOINT_KEY] = upgrade_config({**DEFAULT_SECTIONS, **checkpoint[CHECKPOINT_KEY]})
    return checkpoint


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


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file from `path`: the file itself, or `<run>/checkpoints/last.ckpt` for a run folder."""
    path = Path(path)
    if path.is_dir():
        last = path / "checkpoints" / "last.ckpt"
        if not last.is_file():
            raise UserError(f"ckpt_path={str(path)!r} is a folder without checkpoints/last.ckpt; give a run "
                            "folder (logs/train/runs/<timestamp>) or a .ckpt file")
        return last
    return path


def load_model(path: str | Path, device: str | torch.device = "cpu") -> VAEModule:
    """The trained VAE of a checkpoint (or a run folder: its checkpoints/last.ckpt), rebuilt from the
    config stored in it, in eval mode on `device`. Needs no dataset and no run folder; a missing,
    truncated or foreign file raises the UserError the commands print.

        >>> model = load_model("logs/train/runs/<timestamp>")
        >>> images = model.sample(16)  # [16, 1, 28, 28] in [0, 1], from the model's prior
    """
    return module_from_checkpoint(load_checkpoint(resolve_checkpoint(path))).to(device)


def module_from_checkpoint(checkpoint: dict[str, Any]) -> VAEModule:
    """The trained VAE of a loaded checkpoint (see `load_checkpoint`), in eval mode on the CPU."""
    members = checkpoint.get(MEMBERS_KEY)
    if members is not None and "seed" not in members:
        raise UserError(f"this is the stacked checkpoint of a run of {len(members['seeds'])} members (seeds "
                        f"{', '.join(map(str, members['seeds']))}); give one member's folder, <run>/seed_<s> (every "
                        "member at once: python -m vae_lightning.report <run> --evaluate)")
    try:
        module = build_module(checkpoint[CHECKPOINT_KEY])
        module.load_state_dict(checkpoint["state_dict"])
    except (KeyError, RuntimeError, InstantiationException) as err:
        raise UserError(f"the checkpoint's weights do not fit the model its config describes ({type(err).__name__}); "
                        "give a checkpoint written by this version of python -m vae_lightning.train") from err
    return module.eval()


def load_trained(path: str | Path) -> tuple[VAEModule, dict[str, Any], int]:
    """The trained VAE of a checkpoint or run folder (eval mode, CPU), the config sections stored with it,
    and its global step."""
    checkpoint = load_checkpoint(resolve_checkpoint(path))
    return module_from_checkpoint(checkpoint), checkpoint[CHECKPOINT_KEY], int(checkpoint.get("global_step", 0))
