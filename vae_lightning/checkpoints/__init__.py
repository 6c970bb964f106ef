"""The checkpoint contract, in one place, on the floor right above the model: what a checkpoint holds and how it
is read, written and checked. Callbacks, evaluation, the explorer and the runs reach checkpoints only through it.

- `contract`: the keys a checkpoint holds beyond Lightning's (`CHECKPOINT_KEY`: the config sections that define
  the model, `STORED_SECTIONS`; `MEMBERS_KEY`: a K-member run's), which of them must match to resume
  (`check_compatible`), and that a checkpoint resumes as what it was trained as (`check_members`);
- `loading`: a run folder's checkpoint file, reading it with clear one-line errors, and the trained model
  rebuilt from it (`load_model`, `load_trained`; the model itself is built by `model.building.build_module`);
- `writing`: checkpoints written atomically (`AtomicCheckpointIO`, which training always installs);
- `renames`: old class paths (`vae_lightning.priors.BetaPrior`, ...) in old checkpoints and run folders, renamed
  on load so that old runs load, resume and evaluate as they did.

Adding a section to what a checkpoint stores: add it to `STORED_SECTIONS`, and to `DEFAULT_SECTIONS` with the
value that checkpoints written before it used, so that they still load.
"""

from typing import TYPE_CHECKING, Any

from vae_lightning.checkpoints.contract import (
    CHECKPOINT_KEY,
    MEMBERS_KEY,
    MUST_MATCH,
    STORED_SECTIONS,
    check_compatible,
    check_members,
    stored_sections,
)

if TYPE_CHECKING:
    from vae_lightning.checkpoints.loading import (
        CKPT_PATH,
        load_checkpoint,
        load_model,
        load_trained,
        module_from_checkpoint,
        resolve_checkpoint,
    )
    from vae_lightning.checkpoints.writing import AtomicCheckpointIO

# Imported on first use: `renames` and `contract` are read by commands' --help paths (run folders), which never pay
# for torch
_LAZY = {"CKPT_PATH": "loading", "load_checkpoint": "loading", "load_model": "loading", "load_trained": "loading",
         "module_from_checkpoint": "loading", "resolve_checkpoint": "loading", "AtomicCheckpointIO": "writing"}

__all__ = ["CHECKPOINT_KEY", "CKPT_PATH", "MEMBERS_KEY", "MUST_MATCH", "STORED_SECTIONS", "AtomicCheckpointIO",
           "check_compatible", "check_members", "load_checkpoint", "load_model", "load_trained",
           "module_from_checkpoint", "resolve_checkpoint", "stored_sections"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"vae_lightning.checkpoints.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'vae_lightning.checkpoints' has no attribute {name!r}")
