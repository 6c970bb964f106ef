"""MNIST-format data, read by torchvision and served from in-memory uint8 tensors.

torchvision's MNIST / FashionMNIST classes read the four IDX files from `<root>/<Class>/raw/`.
When only the `.gz` archives are there we extract them ourselves into a per-user cache, so local
files never trigger a download and the data folder is never written to. Batches are
whole index slices of uint8 tensors, converted to floats on the device after transfer: no
per-image `__getitem__`, no PIL.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.datasets import MNIST, FashionMNIST

from vae_lightning.errors import UserError, require
from vae_lightning.reliability import write_atomically

DATASETS: dict[str, type[MNIST]] = {"mnist": MNIST, "fashion_mnist": FashionMNIST}
# file name -> (IDX magic number, shape of one item)
IDX_FILES = {
    "train-images-idx3-ubyte": (2051, (28, 28)),
    "train-labels-idx1-ubyte": (2049, ()),
    "t10k-images-idx3-ubyte": (2051, (28, 28)),
    "t10k-labels-idx1-ubyte": (2049, ()),
}
BINARIZE = ("none", "dynamic")


class DataError(UserError):
    """Data files missing or unreadable."""


def raw_folder(root: Path, dataset: str) -> Path:
    """Where torchvision looks for `dataset`'s files under `root`."""
    return root / DATASETS[dataset].__name__ / "raw"


def _cache_root(gz_files: list[Path]) -> Path:
    """Where the archives' extracted copies live, keyed by the archives' path, size and mtime."""
    key = hashlib.sha1()
    for f in gz_files:
        stat = f.stat()
        key.update(f"{f.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vae_lightning" / "extracted"
    return base / key.hexdigest()[:16]


def _extract(gz: Path, dest: Path) -> None:
    """Gunzip `gz` to `dest` through a temporary file, so a failure never leaves a partial file."""
    try:
        with gzip.open(gz, "rb") as src:
            write_atomically(dest, lambda out: shutil.copyfileobj(src, out))
    except (OSError, EOFError) as err:
        raise DataError(f"cannot extract {gz}: {err}; replace it with an intact copy") from err


def check_idx_file(path: Path, source: Path | None = None) -> None:
    """Raise DataError unless `path` is a complete IDX file of the kind its name says.

    `source`: the file to name in the error, when `path` is our extracted copy of that archive.
    """
    magic, item_shape = IDX_FILES[path.name]
    with open(path, "rb") as f:
        header = f.read(8)
    size = path.stat().st_size
    shown = source or path
    found = int.from_bytes(header[:4], "big") if len(header) >= 4 else None
    if found != magic:
        raise DataError(f"{shown} is not an MNIST IDX file (magic number {found}, expected {magic}); "
                        "replace it with the original file")
    count = int.from_bytes(header[4:8], "big")
    expected = 4 * (2 + len(item_shape)) + count * int(torch.Size(item_shape).numel())
    if size != expected:
        raise DataError(f"{shown} is truncated or corrupt ({size} bytes{' uncompressed' if source else ''}, "
                        f"expected {expected} for {count} items); replace it with the original file")


def locate(root: str | Path, dataset: str = "mnist", download: bool = True) -> Path:
    """Return a root from which torchvision reads `dataset` without downloading, preparing it if needed.

    Order: extracted IDX files in `<root>/<Class>/raw/`; else the four `.gz` archives there,
    extracted into a per-user cache (the data folder is never written to: it may be shared or
    read-only); else torchvision's download into `root` when `download` is true.
    """
    require(dataset in DATASETS, "dataset", dataset, f"one of {', '.join(DATASETS)}")
    root = Path(root).expanduser()
    raw = raw_folder(root, dataset)
    names = list(IDX_FILES)
    if all((raw / n).is_file() for n in names):
        return root
    gz = [raw / f"{n}.gz" for n in names]
    if all(f.is_file() for f in gz):
        cache = _cache_root(gz)
        for f in gz:
            dest = raw_folder(cache, dataset) / f.stem
            if not dest.is_file():
                _extract(f, dest)
            check_idx_file(dest, source=f)
        return cache
    missing = ", ".join(f"{n}.gz" for n, f in zip(names, gz, strict=True)
                        if not f.is_file() and not (raw / n).is_file())
    hint = (f"put the four files {', '.join(f'{n}.gz' for n in names)} in {raw}/ "
            "(or set data.root / VAE_DATA_ROOT to a folder that has <Class>/raw/ with them)")
    if not download:
        raise DataError(f"{dataset} not found: missing {missing} in {raw}/ and data.download=false; {hint}")
    try:
        DATASETS[dataset](root, train=True, download=True)
    except Exception as err:  # torchvision raises RuntimeError/URLError/OSError per mirror; report them all
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise DataError(f"{dataset} not found in {raw}/ and the download failed ({reason}); {hint}") from err
    return root


def load_split(root: Path, dataset: str, train: bool) -> tuple[Tensor, Tensor]:
    """Images [N, 28, 28] uint8 and labels [N] int64 of one split, via torchvision."""
    raw = raw_folder(root, dataset)
    prefix = "train" if train else "t10k"
    for name in (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"):
        check_idx_file(raw / name)
    ds = DATASETS[dataset](root, train=train, download=False)
    if len(ds.data) != len(ds.targets):
        raise DataError(f"{raw}: {prefix} images ({len(ds.data)}) and labels ({len(ds.targets)}) differ in count")
    return ds.data, ds.targets.long()


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


def _whole_batch(batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
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
        require(dataset in DATASETS, "dataset", dataset, f"one of {', '.join(DATASETS)}")
        require(isinstance(batch_size, int) and batch_size >= 1, "batch_size", batch_size, "an integer >= 1")
        require(isinstance(eval_batch_size, int) and eval_batch_size >= 1, "eval_batch_size", eval_batch_size,
                "an integer >= 1")
        require(isinstance(val_size, int) and val_size >= 1, "val_size", val_size, "an integer >= 1")
        require(binarize in BINARIZE, "binarize", binarize, f"one of {', '.join(BINARIZE)}")
        self.root, self.dataset, self.download = Path(root), dataset, download
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.val_size, self.split_seed, self.shuffle_seed = val_size, split_seed, shuffle_seed
        self.binarize = binarize
        self.splits: dict[str, InMemoryBatches] = {}
        self._fit_images: Tensor | None = None  # see fit_images

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
        model (samplers.py): gray, or for `binarize=dynamic` one fixed binarization (seed split_seed + 3),
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
        return ResumableLoader(data, batch_size=self.batch_size, sampler=EpochShuffle(len(data), self.shuffle_seed),
                               collate_fn=_whole_batch, generator=torch.Generator())

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.splits["val"], batch_size=self.eval_batch_size, collate_fn=_whole_batch,
                          generator=torch.Generator())

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.splits["test"], batch_size=self.eval_batch_size, collate_fn=_whole_batch,
                          generator=torch.Generator())

    def on_after_batch_transfer(self, batch: tuple[Tensor, Tensor], dataloader_idx: int) -> tuple[Tensor, Tensor]:
        """uint8 [B, 28, 28] -> float [B, 1, 28, 28] in [0, 1] on the device (dynamic draw in training)."""
        images, labels = batch
        x = images.unsqueeze(1).float().div_(255)
        if self.binarize == "dynamic" and self.trainer is not None and self.trainer.training:
            x = torch.bernoulli(x)
        return x, labels
