"""Shared fixtures: tiny MNIST-format data in real IDX files, the real Hydra config, one short run.

Helpers live in tests/helpers/ (imported as `helpers.<module>`); tests mirror the package:
unit/<subpackage>/ for the library's pieces, integration/ for the commands through the real config.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.commands import only_run, run_cli, tiny_overrides
from helpers.data import make_mnist_root
from hydra.core.hydra_config import HydraConfig

from vae_lightning.runs.folders import compose_config

# MLflow reports its use to its makers unless told not to; the tests' runs (and their subprocesses) never do
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture(autouse=True, scope="session")
def _isolated_outputs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Extracted archives go to a temporary cache, never to the user's, and a command run without
    paths.log_dir writes under a temporary folder, never into the clone's logs/ (session-wide, so that
    the fixtures of every scope see it)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "cache"))
        patch.setenv("VAE_LOG_DIR", str(tmp_path_factory.getbasetemp() / "default_logs"))
        yield


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root with small synthetic MNIST (and FashionMNIST) .gz files in the original format."""
    root = tmp_path_factory.mktemp("data")
    make_mnist_root(root, "MNIST")
    make_mnist_root(root, "FashionMNIST")
    return root


@pytest.fixture
def compose_cfg(tmp_path: Path) -> Iterator:
    """compose(overrides) -> the real train config, with Hydra's runtime pointed at tmp_path/run."""
    yield lambda overrides: compose_config("train", overrides, tmp_path / "run")
    HydraConfig.instance().cfg = None


@pytest.fixture(scope="session")
def trained_run(mnist_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run folder of one short training run on the synthetic data (without pictures, to be quick)."""
    log_dir = tmp_path_factory.mktemp("trained")
    result = run_cli("vae_lightning.train", *tiny_overrides(mnist_root, log_dir), "trainer.max_epochs=1",
                     "test=false", "~callbacks.prior_grid")
    assert result.returncode == 0, result.stderr[-3000:]
    return only_run(log_dir)
