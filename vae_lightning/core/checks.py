"""The validation vocabulary: named checks of one value, each with the words that say what it accepts.

The same checks serve everywhere a value is checked: in a constructor (`COUNT.check("n_components",
n_components)`) and in a command's settings table, which checks config values before anything is
built or written (`check_settings(cfg, {"n": COUNT})`). A refused value is a `ParameterError` whose
message is the line the commands print: `<key>=<value> is invalid: must be <accepted>`.

Numbers are real numbers, never booleans and never strings that look like numbers: a config value
`four` is refused by the check, not by an arithmetic error deep inside the object that uses it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from vae_lightning.core.errors import ParameterError


@dataclass(frozen=True)
class Check:
    """`accepts(value)` says whether a value is valid; `accepted` says in words what is valid."""

    accepts: Callable[[Any], bool]
    accepted: str

    def check(self, key: str, value: Any) -> None:
        """Raise ParameterError(key, value, accepted) unless the value is accepted."""
        try:
            ok = bool(self.accepts(value))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ParameterError(key, value, self.accepted)

    def or_null(self, meaning: str = "") -> Check:
        """The same check that also accepts None (`meaning`: what null stands for, e.g. 'all')."""
        words = f"{self.accepted} or null{f' ({meaning})' if meaning else ''}"
        return Check(lambda v: v is None or self.accepts(v), words)


def is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def integer(least: int | None = None, most: int | None = None, note: str = "") -> Check:
    """An integer >= `least` (and <= `most`); `note` explains special values, e.g. ' (-1: no limit)'."""
    if least is not None and most is not None:
        words = f"an integer in {least}..{most}"
    elif least is not None:
        words = f"an integer >= {least}"
    elif most is not None:
        words = f"an integer <= {most}"
    else:
        words = "an integer"
    return Check(lambda v: is_integer(v) and (least is None or v >= least) and (most is None or v <= most),
                 words + note)


def _bound(low: float | None, high: float | None, open_low: bool, open_high: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
    if low is not None:
        return f"{'>' if open_low else '>='} {low:g}"
    if high is not None:
        return f"{'<' if open_high else '<='} {high:g}"
    return ""


def number(low: float | None = None, high: float | None = None, above: bool = False, below: bool = False,
           note: str = "") -> Check:
    """A finite number >= `low` (> with `above`) and <= `high` (< with `below`); `note` as for `integer`."""
    def accepts(v: Any) -> bool:
        return (is_number(v) and (low is None or (v > low if above else v >= low))
                and (high is None or (v < high if below else v <= high)))

    bound = _bound(low, high, above, below)
    words = f"a number {bound}" if low is not None and high is not None else f"a finite number {bound}".rstrip()
    return Check(accepts, words + note)


def one_of(options: Sequence[Any]) -> Check:
    """One of `options` (strings are compared exactly)."""
    return Check(lambda v: isinstance(v, str | int | float | bool | None) and v in options,
                 f"one of {', '.join(map(str, options))}")


def list_of(item: Check, least: int = 1, most: int | None = None, what: str = "") -> Check:
    """A list (or tuple) of `least`..`most` items that `item` accepts; `what` replaces the generated words."""
    def accepts(v: Any) -> bool:
        if OmegaConf.is_config(v):
            v = OmegaConf.to_container(v)
        return (isinstance(v, list | tuple) and len(v) >= least and (most is None or len(v) <= most)
                and all(item.accepts(x) for x in v))

    plural = item.accepted.replace("an integer", "integers").replace("a number", "numbers").replace(
        "a finite number", "finite numbers")
    size = f"a list of {least} to {most}" if most is not None else ("a non-empty list of" if least == 1
                                                                     else f"a list of at least {least}")
    return Check(accepts, what or f"{size} {plural}")


# The words used most often
COUNT = integer(1)                       # sizes, counts, batch sizes
NON_NEGATIVE_COUNT = integer(0)
POSITIVE = number(0, above=True)         # scales, concentrations, learning rates
NON_NEGATIVE = number(0)
FINITE = number()
PROBABILITY_OPEN = number(0, 1, above=True, below=True)
SEED = integer(0, 2**32 - 1)              # what torch and numpy accept as a seed
OUTPUT = Check(lambda v: v is None or (isinstance(v, str) and v.strip() != ""),
               "a file to write, e.g. output=grid.png, or null (the command's own folder)")

_ABSENT = object()


def check_settings(cfg: DictConfig, settings: Mapping[str, Check]) -> None:
    """Raise ParameterError naming the first key of `settings` whose value in `cfg` its check refuses; keys
    that `cfg` does not have are skipped."""
    for key, check in settings.items():
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if value is not _ABSENT:
            check.check(key, OmegaConf.to_container(value) if OmegaConf.is_config(value) else value)
