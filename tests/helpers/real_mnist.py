"""The real MNIST files (VAE_DATA_ROOT, else <repo>/data), for the tests marked slow: they are skipped
with the reason when the files are absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vae_lightning.data import IDX_FILES
from vae_lightning.runs.folders import PROJECT_ROOT

REAL_ROOT = Path(os.environ.get("VAE_DATA_ROOT", PROJECT_ROOT / "data"))
RAW = REAL_ROOT / "MNIST" / "raw"
HAVE_MNIST = all((RAW / f"{n}.gz").is_file() or (RAW / n).is_file() for n in IDX_FILES)

# pytestmark of a test module that trains or evaluates on the real files
REAL_MNIST = [
    pytest.mark.slow,
    pytest.mark.skipif(not HAVE_MNIST, reason=f"real MNIST not found in {RAW}/ (set VAE_DATA_ROOT to a folder "
                                              "with MNIST/raw/*.gz to run the slow tests)"),
]
