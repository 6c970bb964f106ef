"""Classes that moved: checkpoints and run folders written before the package was laid out by concept
name their classes by their old homes (`vae_lightning.priors.BetaPrior`, `vae_lightning.module.VAEModule`,
...). Loading a checkpoint (runs/checkpoint.py) and resuming a run folder (runs/folders.py) rename them
here, so old runs load, resume and evaluate as they did."""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

# The old homes of classes that configs name (`_target_`), before the package was laid out by concept and
# before the trackers got their own subpackage: old prefix -> new prefix.
MOVED_TARGETS = {
    "vae_lightning.priors.": "vae_lightning.latent.",
    "vae_lightning.samplers.": "vae_lightning.latent.",
    "vae_lightning.module.": "vae_lightning.model.",
    "vae_lightning.networks.": "vae_lightning.model.",
    "vae_lightning.likelihoods.": "vae_lightning.model.",
    "vae_lightning.annealing.": "vae_lightning.model.",
    "vae_lightning.reliability.": "vae_lightning.callbacks.",
    "vae_lightning.classifier.": "vae_lightning.evaluation.classifier.",
    "vae_lightning.runs.tracking.CSVLogger": "vae_lightning.tracking.csv.CSVLogger",  # conf/logger/csv.yaml
    "vae_lightning.runs.tracking.MLFlowLogger": "vae_lightning.tracking.mlflow.MLFlowLogger",  # .../mlflow.yaml
}


def upgrade_targets(tree: Any) -> Any:
    """A config tree with every `_target_` that names a class by its old home renamed to its home now.
    Plain trees (dicts and lists) are changed in place and returned; an OmegaConf config comes back as a
    new config (its interpolations kept, unresolved)."""
    if OmegaConf.is_config(tree):
        return OmegaConf.create(upgrade_targets(OmegaConf.to_container(tree, resolve=False)))
    if isinstance(tree, dict):
        for key, value in tree.items():
            if key == "_target_" and isinstance(value, str):
                tree[key] = _moved(value)
            else:
                upgrade_targets(value)
    elif isinstance(tree, list):
        for item in tree:
            upgrade_targets(item)
    return tree


def _moved(target: str) -> str:
    for old, new in MOVED_TARGETS.items():
        if target.startswith(old) and not target.startswith(new):
            return new + target[len(old):]
    return target
