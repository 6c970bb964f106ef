"""The Lightning data module: the train/validation split of the 60k training images, the 10k test
images, binarization, and batches transferred as uint8 and converted to floats on the device."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from vae_lightning.core.checks import COUNT, one_of
from vae_lightning.data.batches import EpochShuffle, InMemoryBatches, MemberShuffle, ResumableLoader, whole_batch
from vae_lightning.data.files import DATASETS, DataError, load_split, locate

BINARIZE = ("none", "dynamic")


def split_indices(n: int, val_size: int, seed: int) -> tuple[Tensor, Tensor]:
    """(train, validation) indices of the n training-file images: a fixed random split by `seed`."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[val_size:], order[:val_size]


def binarize_once(images: Tensor, seed: int) -> Tensor:
    """A single fixed Bernoulli draw of uint8 images, kept as uint8 in {0, 255}."""
    generator = torch.Generator().manual_seed(seed)
    draw = torch.rand(images.shape, generator=generator) < images.float() / 255
    return draw.to(torch.uint8) * 255


class MNISTDataModule(L.LightningDataModule):
    """MNIST or FashionMNIST: train/val split of the 60k training images by a fixed seed, the 10k
    test images as test set.

    `binarize="dynamic"` draws a fresh Bernoulli image for every training batch (the likelihood
    literature's protocol) and binarizes validation and test once with a fixed seed.
    """

    def __init__(self, root: str, dataset: str = "mnist", batch_size: int = 128, eval_batch_size: int = 1000,
                 val_size: int = 5000, split_seed: int = 0, shuffle_seed: int = 0, binarize: str = "none",
                 download: bool = True) -> None:
        super().__init__()
        one_of(list(DATASETS)).check("dataset", dataset)
        for key, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size), ("val_size", val_size)):
            COUNT.check(key, value)
        one_of(BINARIZE).check("binarize", binarize)
        self.root, self.dataset, self.download = Path(root), dataset, download
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.val_size, self.split_seed, self.shuffle_seed = val_size, split_seed, shuffle_seed
        self.binarize = binarize
        self.splits: dict[str, InMemoryBatches] = {}
        self._fit_images: Tensor | None = None  # see fit_images
        # K members trained as one (runs/members.py): their shuffle seeds; training batches are then [K, B, ...]
        self.member_shuffle_seeds: list[int] | None = None

    def prepare_data(self) -> None:
        locate(self.root, self.dataset, self.download)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        root = locate(self.root, self.dataset, download=False)
        images, labels = load_split(root, self.dataset, train=True)
        if self.val_size >= len(images):
            raise DataError(f"data.val_size={self.val_size} leaves no training images: the training file has "
                            f"{len(images)}; choose a smaller data.val_size")
        train, val = split_indices(len(images), self.val_size, self.split_seed)
        test_images, test_labels = load_split(root, self.dataset, train=False)
        val_images = images[val]
        if self.binarize == "dynamic":
            val_images = binarize_once(val_images, self.split_seed + 1)
            test_images = binarize_once(test_images, self.split_seed + 2)
        self.splits = {
            "train": InMemoryBatches(images[train], labels[train]),
            "val": InMemoryBatches(val_images, labels[val]),
            "test": InMemoryBatches(test_images, test_labels),
        }

    def fit_images(self) -> Tensor:
        """The training images [N, 28, 28] uint8 as the encoder sees them, for samplers fitted to a trained
        model (latent/fitted.py): gray, or for `binarize=dynamic` one fixed binarization (seed split_seed + 3),
        drawn once and kept: the training pictures refit those samplers at every drawing."""
        if self._fit_images is None:
            self.setup("fit")
            images = self.splits["train"].images
            self._fit_images = binarize_once(images, self.split_seed + 3) if self.binarize == "dynamic" else images
        return self._fit_images

    # Every loader gets a generator of its own: a DataLoader without one draws its base seed from
    # the global RNG each time it starts an epoch, which would shift the reparameterization and
    # binarization noise of a resumed run (it starts its epochs' loaders at other moments).
    def train_dataloader(self) -> DataLoader:
        data = self.splits["train"]
        seeds = self.member_shuffle_seeds
        if seeds:
            sampler = MemberShuffle(len(data), seeds, self.batch_size)
            return ResumableLoader(data, batch_size=self.batch_size * len(seeds), sampler=sampler,
                                   collate_fn=whole_batch, generator=torch.Generator())
        return ResumableLoader(data, batch_size=self.batch_size, sampler=EpochShuffle(len(data), self.shuffle_seed),
                               collate_fn=whole_batch, generator=torch.Generator())

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.splits["val"], batch_size=self.eval_batch_size, collate_fn=whole_batch,
                          generator=torch.Generator())

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.splits["test"], batch_size=self.eval_batch_size, collate_fn=whole_batch,
                          generator=torch.Generator())

    def on_after_batch_transfer(self, batch: tuple[Tensor, Tensor], dataloader_idx: int) -> tuple[Tensor, Tensor]:
        """uint8 [B, 28, 28] -> float [B, 1, 28, 28] in [0, 1] on the device (dynamic draw in training); a training
        batch of K members -> [K, B, 1, 28, 28] (labels [K, B])."""
        images, labels = batch
        x = images.unsqueeze(1).float().div_(255)
        training = self.trainer is not None and self.trainer.training
        if self.binarize == "dynamic" and training:
            x = torch.bernoulli(x)
        if self.member_shuffle_seeds and training:
            k = len(self.member_shuffle_seeds)
            x, labels = x.unflatten(0, (k, -1)), labels.unflatten(0, (k, -1))
        return x, labels
