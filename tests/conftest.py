"""Shared fixtures: tiny MNIST-format data in real IDX files, and the real Hydra config."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from hydra.core.hydra_config import HydraConfig
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from vae_lightning.config import PROJECT_ROOT, compose_config

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


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Extracted archives go to a temporary cache, never to the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root with small synthetic MNIST (and FashionMNIST) .gz files in the original format."""
    root = tmp_path_factory.mktemp("data")
    make_mnist_root(root, "MNIST")
    make_mnist_root(root, "FashionMNIST")
    return root


def tiny_overrides(data_root: Path, log_dir: Path) -> list[str]:
    """Overrides that make the real config train in seconds on the synthetic data."""
    return [
        f"data.root={data_root}", "data.val_size=64", "data.batch_size=32", "data.eval_batch_size=64",
        "data.download=false", f"paths.log_dir={log_dir}", "trainer.accelerator=cpu",
        "trainer.enable_model_summary=false", "trainer.log_every_n_steps=5",
        "callbacks.progress_bar.refresh_rate=0",
    ]


@pytest.fixture
def compose_cfg(tmp_path: Path) -> Iterator:
    """compose(overrides) -> the real train config, with Hydra's runtime pointed at tmp_path/run."""
    yield lambda overrides: compose_config("train", overrides, tmp_path / "run")
    HydraConfig.instance().cfg = None


def run_cli(module: str, *overrides: str, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`python -m <module> overrides...` in a subprocess, from the repository root.

    One torch thread unless the environment or `env` sets OMP_NUM_THREADS: the tests' tiny matrix
    products gain nothing from a second thread, and on a loaded 2-core machine the spinning second
    OpenMP thread of each run made the suite several times slower."""
    return subprocess.run([sys.executable, "-m", module, *overrides], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=timeout, env={"OMP_NUM_THREADS": "1", **os.environ, **(env or {})})


def only_run(log_dir: Path) -> Path:
    """The one run folder that `train` wrote under `log_dir`."""
    (run,) = (log_dir / "train" / "runs").iterdir()
    return run


def train_run(data_root: Path, log_dir: Path, *extra: str) -> Path:
    """`python -m vae_lightning.train` with `tiny_overrides` and `extra`; its run folder (the run must succeed)."""
    result = run_cli("vae_lightning.train", *tiny_overrides(data_root, log_dir), *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    return only_run(log_dir)


def assert_same_weights(run: Path, straight: Path, steps: int) -> None:
    """`run` ended at `steps` optimizer steps with exactly the parameters of the uninterrupted `straight`."""
    ours = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    theirs = torch.load(straight / "checkpoints" / "last.ckpt", weights_only=False)
    assert ours["global_step"] == theirs["global_step"] == steps
    assert ours["state_dict"].keys() == theirs["state_dict"].keys()
    for key, value in theirs["state_dict"].items():
        assert torch.equal(ours["state_dict"][key], value), key


def config_on_searchpath(tmp_path: Path, group: str, name: str, text: str) -> tuple[str, dict[str, str]]:
    """Put `<group>/<name>.yaml` in a temporary config folder: the override that adds it to Hydra's search path,
    and the environment in which a `_target_` defined in a test module is importable by the commands."""
    folder = tmp_path / "conf" / group
    folder.mkdir(parents=True)
    (folder / f"{name}.yaml").write_text(text)
    tests = Path(__file__).resolve().parent
    env = {"PYTHONPATH": os.pathsep.join([str(tests), os.environ.get("PYTHONPATH", "")])}
    return f"hydra.searchpath=[file://{tmp_path / 'conf'}]", env


def scalars(run: Path, tag: str) -> dict[int, float]:
    """step -> value of a scalar tag, from all event files of a run's TensorBoard folder."""
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    return {e.step: e.value for e in acc.Scalars(tag)} if tag in acc.Tags()["scalars"] else {}


def run_commands(*cases: tuple[str, list[str]], env: dict[str, str] | None = None,
                 timeout: float = 300) -> list[dict[str, object]]:
    """`run_cli` for many (module, args) at once: each runs in its own forked process (see
    tests/run_commands.py), paying the imports once; returns {"rc", "stdout", "stderr"} per case."""
    result = subprocess.run([sys.executable, str(Path(__file__).parent / "run_commands.py")], cwd=PROJECT_ROOT,
                            input=json.dumps([[module, list(args)] for module, args in cases]), capture_output=True,
                            text=True, timeout=timeout, env={"OMP_NUM_THREADS": "1", **os.environ, **(env or {})})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


@pytest.fixture(scope="session")
def trained_run(mnist_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run folder of one short training run on the synthetic data (without pictures, to be quick)."""
    log_dir = tmp_path_factory.mktemp("trained")
    result = run_cli("vae_lightning.train", *tiny_overrides(mnist_root, log_dir), "trainer.max_epochs=1",
                     "test=false", "~callbacks.prior_grid")
    assert result.returncode == 0, result.stderr[-3000:]
    return only_run(log_dir)
