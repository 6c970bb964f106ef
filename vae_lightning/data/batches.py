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


class MemberShuffle(EpochShuffle):
    """The orders of K members trained as one (model/members.py), interleaved batch by batch: batch j of the
    loader is member 0's batch j, then member 1's, ..., each member's order that of `EpochShuffle` with its own
    shuffle seed (so a member sees the batches a single run at its seed sees). With a loader batch of
    K x batch_size indices every loader batch holds one batch per member (the last ones equally short); the data
    module splits it into [K, B, ...]. `consumed` counts indices over all members, as `EpochShuffle` does."""

    def __init__(self, n: int, seeds: list[int], batch_size: int) -> None:
        super().__init__(n, seeds[0])
        self.seeds, self.batch_size = list(seeds), batch_size

    def __len__(self) -> int:
        return self.n * len(self.seeds)

    def __iter__(self) -> Iterator[int]:
        orders = torch.stack([torch.randperm(self.n, generator=torch.Generator().manual_seed(seed + self.epoch))
                              for seed in self.seeds])  # [K, n]
        batches = orders.split(self.batch_size, dim=1)
        order = torch.cat([batch.reshape(-1) for batch in batches]).tolist()
        resume, self._resume = self._resume, None
        self.consumed = resume[1] if resume is not None and resume[0] == self.epoch else 0
        for index in order[self.consumed:]:
            self.consumed += 1
            yield index


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
