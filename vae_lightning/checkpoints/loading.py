"""Reading a checkpoint: the file of a run folder, the checkpoint dict with its stored config (old class names
upgraded, checkpoints/renames.py; sections added since filled with what old checkpoints used), and the trained
model rebuilt from it (`load_model`, `load_trained`), which needs neither its run folder nor a dataset."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from hydra.errors import InstantiationException

from vae_lightning.checkpoints.contract import CHECKPOINT_KEY, DEFAULT_SECTIONS, MEMBERS_KEY
from vae_lightning.checkpoints.renames import upgrade_config
from vae_lightning.core.checks import Check
from vae_lightning.core.errors import UserError
from vae_lightning.model.building import build_module
from vae_lightning.model.vae import VAEModule

# The `ckpt_path` of evaluate, sample and beta_grid: required
CKPT_PATH = Check(lambda v: isinstance(v, str) and v.strip() != "",
                  "a checkpoint file or a run folder, e.g. ckpt_path=logs/train/runs/<timestamp>")


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
