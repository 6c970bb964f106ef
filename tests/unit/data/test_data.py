import gzip
import shutil

import pytest
import torch
from helpers.data import N_TEST, N_TRAIN, make_mnist_root

from vae_lightning.data import DataError, MNISTDataModule, locate
from vae_lightning.data.batches import EpochShuffle


def _module(root, **kwargs):
    dm = MNISTDataModule(root=str(root), val_size=64, batch_size=32, download=False, **kwargs)
    dm.prepare_data()
    dm.setup()
    return dm


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist"])
def test_splits_from_idx_files(mnist_root, dataset):
    dm = _module(mnist_root, dataset=dataset)
    sizes = {k: len(v) for k, v in dm.splits.items()}
    assert sizes == {"train": N_TRAIN - 64, "val": 64, "test": N_TEST}
    images, labels = next(iter(dm.train_dataloader()))
    assert images.dtype == torch.uint8 and images.shape == (32, 28, 28) and labels.shape == (32,)


def test_split_is_fixed_by_seed_and_disjoint(mnist_root):
    a, b = _module(mnist_root), _module(mnist_root)
    assert torch.equal(a.splits["val"].images, b.splits["val"].images)
    c = _module(mnist_root, split_seed=1)
    assert not torch.equal(a.splits["val"].images, c.splits["val"].images)
    all_train = torch.cat([a.splits["train"].images, a.splits["val"].images]).flatten(1)
    assert len(torch.unique(all_train, dim=0)) == len(all_train)  # no image in both


def test_batches_cover_the_epoch_once_in_seeded_order(mnist_root):
    dm = _module(mnist_root)
    loader = dm.train_dataloader()
    seen = torch.cat([labels for _, labels in loader])
    assert len(seen) == len(dm.splits["train"])
    sampler = EpochShuffle(100, seed=3)
    first = list(sampler)
    assert sorted(first) == list(range(100)) and list(sampler) == first
    sampler.set_epoch(1)
    assert list(sampler) != first
    assert list(EpochShuffle(100, seed=3)) == first


def test_batch_transfer_makes_floats_and_dynamic_binarization(mnist_root):
    dm = _module(mnist_root, binarize="dynamic")
    batch = next(iter(dm.val_dataloader()))
    x, _ = dm.on_after_batch_transfer(batch, 0)
    assert x.shape == (64, 1, 28, 28) and x.dtype == torch.float32
    assert set(x.unique().tolist()) <= {0.0, 1.0}  # val binarized once
    # val/test binarization is fixed: a second datamodule gives the same pixels
    assert torch.equal(_module(mnist_root, binarize="dynamic").splits["val"].images, dm.splits["val"].images)

    class Training:
        training = True

    dm.trainer = Training()
    images = dm.splits["train"].images[:64]
    draws = [dm.on_after_batch_transfer((images, None), 0)[0] for _ in range(2)]
    assert set(draws[0].unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(draws[0], draws[1])  # a fresh draw every batch
    grey = _module(mnist_root).on_after_batch_transfer((images, None), 0)[0]
    assert torch.allclose(grey, images.unsqueeze(1).float() / 255)


def test_local_archives_never_download_nor_write_the_data_folder(mnist_root, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr("torchvision.datasets.utils.download_url", no_network)
    before = sorted(p.name for p in (mnist_root / "MNIST" / "raw").iterdir())
    read_from = locate(mnist_root, "mnist", download=True)
    assert read_from != mnist_root
    assert sorted(p.name for p in (mnist_root / "MNIST" / "raw").iterdir()) == before


def test_missing_files_is_one_clear_error(tmp_path):
    with pytest.raises(DataError) as info:
        _module(tmp_path)
    message = str(info.value)
    assert str(tmp_path / "MNIST" / "raw") in message
    assert "train-images-idx3-ubyte.gz" in message and "t10k-labels-idx1-ubyte.gz" in message
    assert "\n" not in message


def _corrupt(root, name, data):
    path = root / "MNIST" / "raw" / name
    with gzip.open(path, "wb") as f:
        f.write(data)


def test_wrong_magic_and_truncated_files(tmp_path):
    root = make_mnist_root(tmp_path / "bad_magic")
    src = root / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    good = gzip.decompress(src.read_bytes())
    _corrupt(root, "train-images-idx3-ubyte.gz", (1234).to_bytes(4, "big") + good[4:])
    with pytest.raises(DataError, match=r"bad_magic/MNIST/raw/train-images-idx3-ubyte\.gz is not an MNIST IDX file"):
        _module(root)
    root = make_mnist_root(tmp_path / "truncated")
    _corrupt(root, "train-images-idx3-ubyte.gz", good[: len(good) // 2])
    with pytest.raises(DataError, match=r"truncated/MNIST/raw/train-images-idx3-ubyte\.gz is truncated"):
        _module(root)
    root = make_mnist_root(tmp_path / "bad_gzip")
    shutil.copy(src, root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz")
    (root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").write_bytes(src.read_bytes()[:100])
    with pytest.raises(DataError, match="cannot extract .*t10k-labels-idx1-ubyte.gz"):
        _module(root)


def test_val_size_too_large(mnist_root):
    with pytest.raises(DataError, match="data.val_size=1000"):
        dm = MNISTDataModule(root=str(mnist_root), val_size=1000, download=False)
        dm.setup()
