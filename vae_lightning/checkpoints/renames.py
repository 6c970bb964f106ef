"""What was renamed, in one place, so that old runs and old command lines keep working or say what replaced them.

Classes that moved: checkpoints and run folders written before the package was laid out by concept
name their classes by their old homes (`vae_lightning.priors.BetaPrior`, `vae_lightning.module.VAEModule`,
...), and repeat the model's latent size in their prior (`prior.latent_dim`, now passed in by the code that
builds the prior). Loading a checkpoint (checkpoints/) and resuming a run folder (runs/folders.py)
upgrade them here (`upgrade_config`), so old runs load, resume and evaluate as they did.

Override spellings that were renamed (`samplers=study_fitted` is now `sampler_set=study_fitted`, ...): a
command line that still uses one ends in one line naming the new spelling (`refuse_renamed`, called by
cli.run and runs/folders.compose_config) instead of doing something else silently.
"""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

from vae_lightning.core.errors import UserError

# The old homes of classes that configs name (`_target_`), before the package was laid out by concept:
# old prefix -> new prefix.
MOVED_TARGETS = {
    "vae_lightning.priors.": "vae_lightning.latent.",
    "vae_lightning.samplers.": "vae_lightning.latent.",
    "vae_lightning.module.": "vae_lightning.model.",
    "vae_lightning.networks.": "vae_lightning.model.",
    "vae_lightning.likelihoods.": "vae_lightning.model.",
    "vae_lightning.annealing.": "vae_lightning.model.",
    "vae_lightning.reliability.": "vae_lightning.callbacks.",
    "vae_lightning.classifier.": "vae_lightning.evaluation.classifier.",
    # the trackers' own subpackage (conf/logger/csv.yaml, conf/logger/mlflow.yaml)
    "vae_lightning.runs.tracking.CSVLogger": "vae_lightning.tracking.csv.CSVLogger",
    "vae_lightning.runs.tracking.MLFlowLogger": "vae_lightning.tracking.mlflow.MLFlowLogger",
}


def upgrade_config(tree: Any) -> Any:
    """A run's config (or a checkpoint's stored sections) as written today: classes at their homes now
    (`upgrade_targets`) and no `prior.latent_dim` (the model's latent size, which building the prior passes
    in: model/building.build_module). Plain trees change in place; an OmegaConf config comes back as a new one."""
    if OmegaConf.is_config(tree):  # one plain copy, upgraded in place
        return OmegaConf.create(upgrade_config(OmegaConf.to_container(tree, resolve=False)))
    upgrade_targets(tree)
    prior = tree.get("prior") if isinstance(tree, dict) else None
    if isinstance(prior, dict):
        prior.pop("latent_dim", None)
    return tree


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


# Override spellings that were renamed, per command (its config name): old key (or key=value) -> what to write
# now; `{value}` stands for the value given, `{rest}` for the rest of a key under one ending in "." (`sampler.alpha`).
SAMPLER_SETS = {"samplers": "sampler_set={value} (the sets of samplers are conf/sampler_set/; their entries stay "
                            "samplers.<label>)"}
RENAMED_OVERRIDES: dict[str, dict[str, str]] = {
    "train": {**SAMPLER_SETS, "experiment=beta_4_3": "prior=beta_4_3 annealing=linear"},
    "evaluate": {**SAMPLER_SETS, "tensorboard": "log_to_trackers={value}"},
    "explore": SAMPLER_SETS,
    "sample": {"sampler=prior": "nothing (the model's own prior is the default)",
               **{f"sampler={name}": f"fitted={name}" for name in ("aggregate", "gmm", "flow")},
               "sampler": "prior={value} (a distribution of conf/prior/; one fitted to the model: fitted=)",
               "sampler.": "prior.{rest}={value} (fitted.{rest}={value} for aggregate, gmm, flow)"},
}


def refuse_renamed(config_name: str, overrides: list[str]) -> None:
    """Raise UserError naming the new spelling of the first override in `overrides` that uses a renamed one
    (RENAMED_OVERRIDES) for the command `config_name`; deletions (`~key`) pass."""
    renamed = RENAMED_OVERRIDES.get(config_name, {})
    for override in overrides:
        if override.startswith("~"):
            continue
        key, _, value = override.lstrip("+").partition("=")
        head, dot, rest = key.partition(".")
        new = renamed.get(f"{key}={value}") or renamed.get(key) or (renamed.get(head + ".") if dot else None)
        if new is not None:
            raise UserError(f"{override} is renamed: write "
                            + new.replace("{value}", value).replace("{rest}", rest))
