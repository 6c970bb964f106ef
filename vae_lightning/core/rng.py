"""Seeded randomness that leaves the global RNG as it was: fixed noise, evaluation draws, and the
seeds of chunked computations, so that a run's own stream of random numbers is never shifted by
pictures, diagnostics or evaluation.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Run the block with the global RNG seeded to `seed`, restoring it afterwards.

    torch's Beta/Gamma samplers take no `generator`, so reproducible draws from any posterior
    family need the (forked) global RNG.
    """
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def generator_seed(generator: torch.Generator) -> int:
    """One seed drawn from `generator` (for code that must run under a seeded global RNG)."""
    return int(torch.randint(2**62, (1,), generator=generator))


def chunk_seeds(seed: int, n: int) -> list[int]:
    """`n` seeds derived from `seed`, one per chunk of a seeded computation."""
    return torch.randint(2**62, (n,), generator=torch.Generator().manual_seed(seed)).tolist()
