"""Building the objects a config chooses: every prior, network, likelihood, schedule, sampler,
callback, logger and Trainer is made here, from its config node's `_target_`, by Hydra's `instantiate`.

A new kind of object is a new class plus one YAML file naming it; nothing else changes. A
`ParameterError` raised by a constructor comes out naming its key under the config group
(`alpha` -> `prior.alpha`); an argument the class does not take is one line naming the key and the
arguments it does take; any other TypeError, ValueError or Lightning MisconfigurationException of a
constructor (a value of the wrong kind that no check caught) is one line naming the group and the error.
"""

from __future__ import annotations

import inspect
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from vae_lightning.core.errors import ParameterError, UserError


def build(node: DictConfig | dict[str, Any], group: str, **kwargs: Any) -> Any:
    """`instantiate(node, **kwargs)`, turning a parameter error raised inside into one naming `group.key`."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        cause: BaseException | None = err
        while cause is not None and not isinstance(cause, UserError):
            cause = cause.__cause__
        if isinstance(cause, ParameterError):
            raise cause.under(group) from err
        if cause is not None:
            raise cause from err
        unknown = _unknown_argument(node, kwargs)
        if unknown is not None:
            raise UserError(f"{group}.{unknown[0]} is not a setting of {unknown[1]}: choose one of "
                            f"{', '.join(unknown[2]) or '(none)'}") from err
        cause = err.__cause__
        while isinstance(cause, InstantiationException):  # a node built inside another
            cause = cause.__cause__
        # a value its constructor cannot take (Lightning's own refusals are MisconfigurationExceptions)
        if isinstance(cause, TypeError | ValueError) or type(cause).__name__ == "MisconfigurationException":
            target = str(OmegaConf.select(OmegaConf.create(node) if isinstance(node, dict) else node,
                                          "_target_", default="?")).rpartition(".")[2]
            raise UserError(f"{group} could not be built ({target}: {cause}): check its settings "
                            "(HYDRA_FULL_ERROR=1 shows where it failed)") from err
        raise


def _unknown_argument(node: DictConfig | dict[str, Any], kwargs: dict[str, Any]) -> tuple[str, str, list[str]] | None:
    """(key, class name, accepted keys) of the first key of `node` that its `_target_` does not take."""
    tree = OmegaConf.to_container(node, resolve=False) if OmegaConf.is_config(node) else dict(node)
    target = tree.get("_target_")
    if not isinstance(target, str):
        return None
    try:
        parameters = inspect.signature(get_class(target)).parameters
    except Exception:  # not a class, or not importable: Hydra's own error says so
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return None
    names = [n for n, p in parameters.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    for key in [*tree, *kwargs]:
        if not key.startswith("_") and key not in names:
            return key, target.rpartition(".")[2], names
    return None
