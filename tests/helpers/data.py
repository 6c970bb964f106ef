"""Tiny MNIST-format data in real IDX files, so that tests exercise the same reading code as real runs."""

from __future__ import annotations

import gzip
from pathlib import Path

import torch

N_TRAIN, N_TEST = 384, 128


def write_idx(path: Path, tensor: torch.Tensor, magic: int) -> None:
    """Write a uint8 tensor as a gzipped IDX file (big-endian header, as in the MNIST originals)."""
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in tensor.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + tensor.contiguous().numpy().tobytes())


def synthetic_digits(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` 28x28 uint8 images of 10 fixed random stroke patterns ("classes") with pixel noise."""
    gen = torch.Generator().manual_seed(seed)
    templates = (torch.rand(10, 28, 28, generator=torch.Generator().manual_seed(0)) > 0.8).float()
    labels = torch.randint(10, (n,), generator=gen)
    noise = torch.rand(n, 28, 28, generator=gen) * 0.3
    images = (templates[labels] * 0.7 + noise).clamp(0, 1)
    return (images * 255).to(torch.uint8), labels.to(torch.uint8)


def make_mnist_root(root: Path, folder: str = "MNIST") -> Path:
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    for prefix, n, seed in (("train", N_TRAIN, 1), ("t10k", N_TEST, 2)):
        images, labels = synthetic_digits(n, seed)
        write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", images, 2051)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", labels, 2049)
    return root
