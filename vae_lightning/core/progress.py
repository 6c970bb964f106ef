"""Progress of long loops (evaluation, the classifier's training): a `Track` wraps an iterable, in a
progress bar or silently, so library code reports progress without knowing where it goes."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
# `track(iterable, description, total)`: wraps a long loop, e.g. in a progress bar
Track = Callable[[Iterable[T], str, int], Iterable[T]]


def no_track(iterable: Iterable[T], description: str, total: int) -> Iterable[T]:
    return iterable


def progress_bar(iterable: Iterable[T], description: str, total: int) -> Iterable[T]:
    """A `Track` that shows a rich progress bar (with elapsed and remaining time) on a terminal, and one line
    when the loop ends where standard output is not one (a log file, a job's output: no redraws)."""
    if not sys.stdout.isatty():
        return _one_line(iterable, description, total)
    from rich.progress import track as rich_track

    return rich_track(iterable, description=description, total=total)


def _one_line(iterable: Iterable[T], description: str, total: int) -> Iterator[T]:
    start = time.perf_counter()
    done = 0
    for item in iterable:
        yield item
        done += 1
    print(f"{description}: {done} of {total} done in {time.perf_counter() - start:.1f} s", flush=True)
