"""Seeded randomness that leaves the global RNG as it was: fixed noise, evaluation draws, the seeds of
chunked computations, and the streams that a run's randomly initialised parts draw from, so that a run's own
stream of random numbers is never shifted by pictures, diagnostics, evaluation or another part's size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

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


def stream_seed(seed: int, part: str) -> int:
    """The seed of `part`'s own stream of a run at `seed`: a hash of both, the same on every machine and in every
    process, and unrelated between parts."""
    return int.from_bytes(hashlib.sha256(f"{int(seed)}/{part}".encode()).digest()[:8], "big") >> 1


def stream(seed: int | None, part: str) -> AbstractContextManager[None]:
    """Run the block (building `part`: a network, the prior, the callbacks' samplers) on `part`'s own stream of
    the run at `seed`, the global RNG restored afterwards, so that what one part draws never shifts another's:
    two configurations at one seed start their encoders alike whatever their priors. `seed=None`: no stream
    (a model whose weights are loaded next)."""
    return nullcontext() if seed is None else seeded(stream_seed(seed, part), torch.device("cpu"))
