"""Choosing a torch device by name (`device=auto|cpu|cuda` of evaluate and classifier)."""

from __future__ import annotations

import torch

from vae_lightning.core.checks import Check, one_of


def pick_device(name: str) -> torch.device:
    """`auto` (CUDA when available), `cpu` or `cuda`."""
    one_of(("auto", "cpu", "cuda")).check("device", name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    Check(lambda v: v == "cpu" or torch.cuda.is_available(), "auto or cpu (no CUDA device here)").check("device", name)
    return torch.device(name)
