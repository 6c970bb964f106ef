"""Progress of long loops (evaluation, the classifier's training): a `Track` wraps an iterable, in a
progress bar or silently, so library code reports progress without knowing where it goes."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")
# `track(iterable, description, total)`: wraps a long loop, e.g. in a progress bar
Track = Callable[[Iterable[T], str, int], Iterable[T]]


def no_track(iterable: Iterable[T], description: str, total: int) -> Iterable[T]:
    return iterable


def progress_bar(iterable: Iterable[T], description: str, total: int) -> Iterable[T]:
    """A `Track` that shows a rich progress bar (with elapsed and remaining time)."""
    from rich.progress import track as rich_track

    return rich_track(iterable, description=description, total=total)
