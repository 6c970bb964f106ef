"""The data: MNIST-format files, their checks, in-memory batches and the Lightning data module.

- `files`: where torchvision reads `<root>/<Class>/raw/` (MNIST, FashionMNIST), the `.gz` archives
  extracted into a per-user cache (the data folder is never written to), intact-file checks with
  one-line errors that say what to put where (`DataError`), reading a split as uint8 tensors;
- `batches`: whole-batch index slices of in-memory tensors, an epoch order that is a function of
  (seed, epoch) and resumes mid-epoch;
- `datamodule`: `MNISTDataModule`, the 55k/5k split by `split_seed`, the test set, `binarize=dynamic`
  (a fresh Bernoulli draw per training batch; validation and test binarized once with a fixed seed),
  and `fit_images()`, the training images as the encoder saw them, for samplers fitted to a model.

Adding a dataset of 28x28 gray images in MNIST's IDX format: add its torchvision class to
`files.DATASETS` and a `conf/data/<name>.yaml`.
"""

from vae_lightning.data.datamodule import MNISTDataModule
from vae_lightning.data.files import DATASETS, IDX_FILES, DataError, load_split, locate

__all__ = ["DATASETS", "IDX_FILES", "DataError", "MNISTDataModule", "load_split", "locate"]
