"""Batches from in-memory uint8 tensors: whole index slices (no per-image `__getitem__`, no PIL), in an
order that is a function of (seed, epoch) and resumes mid-epoch where a checkpoint left it."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler


class InMemoryBatches(Dataset):
    """(images, labels) tensors; the DataLoader fetches a whole batch with one index operation."""

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.images[index], self.labels[index]

    def __getitems__(self, indices: list[int]) -> tuple[Tensor, Tensor]:
        idx = torch.as_tensor(indices)
        return self.images[idx], self.labels[idx]


def whole_batch(batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """collate_fn for `InMemoryBatches`: the batch is already stacked."""
    return batch


class EpochShuffle(Sampler[int]):
    """A random order that is a function of (seed, epoch) only, so that a resumed run sees the
    same batches as an uninterrupted one. Lightning calls `set_epoch` before every epoch.

    It also counts the indices it has handed out in the current epoch (`state_dict`), so that a
    run resumed from a mid-epoch checkpoint skips exactly the images already trained on in that
    epoch. The count is exact because batches are drawn in the main process (no workers) and
    Lightning does not prefetch from a loader of known length.
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0
        self.consumed = 0
        self._resume: tuple[int, int] | None = None  # (epoch, indices to skip) from a checkpoint

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.consumed = 0
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.n, generator=generator).tolist()
        resume, self._resume = self._resume, None
        self.consumed = resume[1] if resume is not None and resume[0] == self.epoch else 0
        for index in order[self.consumed:]:
            self.consumed += 1
            yield index

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "consumed": self.consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume = (state["epoch"], state["consumed"])


class ResumableLoader(DataLoader):
    """A DataLoader that Lightning saves in checkpoints and restores on resume (it has
    `state_dict` / `load_state_dict`): the position of its `EpochShuffle` within the epoch.

    Under DDP Lightning wraps the sampler (DistributedSamplerWrapper), which keeps no position:
    then nothing is saved and a mid-epoch resume starts that epoch's data order from its beginning.
    """

    def state_dict(self) -> dict[str, int]:
        return self.sampler.state_dict() if isinstance(self.sampler, EpochShuffle) else {}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state and isinstance(self.sampler, EpochShuffle):
            self.sampler.load_state_dict(state)
