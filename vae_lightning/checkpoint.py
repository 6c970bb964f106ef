"""The checkpoint contract: which config sections a checkpoint stores, which must match to resume
it, and building a module from them. train, evaluate, sample, bench and `load_model` all use it, so
a checkpoint is a trained model that needs neither its run folder nor a dataset.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.errors import InstantiationException
from lightning.pytorch.callbacks import Callback

from vae_lightning.errors import UserError, build, require
from vae_lightning.module import VAEModule

# Where a checkpoint keeps its config sections
CHECKPOINT_KEY = "vae_lightning"
# Config sections that define what a checkpoint is; stored in it by RunConfig
STORED_SECTIONS = ("model", "prior", "likelihood", "annealing", "data")
# Config keys a checkpoint must agree with to be resumed: they define its weights and what they mean
# (model, prior, likelihood) or the curve it is on (the schedule's class; its parameters are restored
# by KLAnnealing).
MUST_MATCH = ("model", "prior", "likelihood", "annealing._target_")
# Sections added after checkpoints were first written, with what those checkpoints used.
DEFAULT_SECTIONS = {"likelihood": {"_target_": "vae_lightning.likelihoods.Bernoulli"}}


class RunConfig(Callback):
    """Stores the config sections that define the model (STORED_SECTIONS) in every checkpoint, so
    that a checkpoint can be rebuilt without its run folder and checked against the config of a
    resumed run."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = self.config


def build_module(sections: Mapping[str, Any]) -> VAEModule:
    """The (untrained) VAE of a config's `model`, `prior` and `likelihood` sections: a command's composed
    config or the sections stored in a checkpoint."""
    latent_dim = sections["model"]["latent_dim"]
    require(isinstance(latent_dim, int) and latent_dim >= 1, "model.latent_dim", latent_dim, "an integer >= 1")
    return build(sections["model"], "model", prior=build(sections["prior"], "prior"),
                 likelihood=build(sections["likelihood"], "likelihood"))


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
    checkpoint[CHECKPOINT_KEY] = {**DEFAULT_SECTIONS, **checkpoint[CHECKPOINT_KEY]}
    return checkpoint


def run_dir_of(ckpt_path: str | Path) -> Path | None:
    """The run folder `<run>/` of a checkpoint at `<run>/checkpoints/*.ckpt`, if it has a Hydra config."""
    path = Path(ckpt_path)
    run = path.parent.parent
    if path.parent.name == "checkpoints" and (run / ".hydra" / "config.yaml").is_file():
        return run
    return None


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


def check_compatible(checkpoint: dict[str, Any], config: dict[str, Any], ckpt_path: str | Path) -> None:
    """Raise UserError when the checkpoint's model, prior or likelihood differs from the requested config."""
    stored = checkpoint[CHECKPOINT_KEY]
    diffs = [d for key in MUST_MATCH for d in _differences(_select(stored, key), _select(config, key), key)]
    if diffs:
        raise UserError(f"ckpt_path={str(ckpt_path)!r} was trained with another model/prior/likelihood/schedule than "
                        f"requested: {'; '.join(diffs)}. Drop those overrides to resume it, or train a new run without "
                        "ckpt_path")


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
    try:
        module = build_module(checkpoint[CHECKPOINT_KEY])
        module.load_state_dict(checkpoint["state_dict"])
    except (KeyError, RuntimeError, InstantiationException) as err:
        raise UserError(f"the checkpoint's weights do not fit the model its config describes ({type(err).__name__}); "
                        "give a checkpoint written by this version of python -m vae_lightning.train") from err
    return module.eval()
