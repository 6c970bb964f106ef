"""MNIST-format files: where they are, whether they are intact, and reading a split.

torchvision's MNIST / FashionMNIST classes read the four IDX files from `<root>/<Class>/raw/`. When
only the `.gz` archives are there they are extracted into a per-user cache, so local files never
trigger a download and the data folder is never written to.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from pathlib import Path

import torch
from torch import Tensor
from torchvision.datasets import MNIST, FashionMNIST

from vae_lightning.core.checks import one_of
from vae_lightning.core.errors import UserError
from vae_lightning.core.files import write_atomically

DATASETS: dict[str, type[MNIST]] = {"mnist": MNIST, "fashion_mnist": FashionMNIST}
# file name -> (IDX magic number, shape of one item)
IDX_FILES = {
    "train-images-idx3-ubyte": (2051, (28, 28)),
    "train-labels-idx1-ubyte": (2049, ()),
    "t10k-images-idx3-ubyte": (2051, (28, 28)),
    "t10k-labels-idx1-ubyte": (2049, ()),
}


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
    one_of(list(DATASETS)).check("dataset", dataset)
    root = given_root(Path(root).expanduser(), dataset)
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
    made = [folder for folder in (raw, *raw.parents) if not folder.exists()]  # deepest first, parents included
    try:
        DATASETS[dataset](root, train=True, download=True)
    except Exception as err:  # torchvision raises RuntimeError/URLError/OSError per mirror; report them all
        for folder in made:  # a failed download leaves no empty folders behind
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise DataError(f"{dataset} not found in {raw}/ and the download failed ({reason}); {hint}") from err
    return root


def given_root(root: Path, dataset: str) -> Path:
    """The data root a user meant: `<root>` itself, or for a root given as the raw folder (`.../MNIST/raw`,
    a natural mistake) the folder two levels up, where torchvision looks for `MNIST/raw/`."""
    raw_name = raw_folder(Path(), dataset)
    if root.parts[-2:] == raw_name.parts and not raw_folder(root, dataset).exists():
        return root.parent.parent
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
