"""Shared fixtures: tiny MNIST-format data in real IDX files, the real Hydra config, one short run; the two
tiers; the clean-tree check.

Helpers live in tests/helpers/ (imported as `helpers.<module>`); tests mirror the package:
unit/<subpackage>/ for the library's pieces, integration/ for the commands through the real config.

Tiers: `pytest` runs the fast tier, every test not marked `full`, `slow` (real MNIST) or `slurm`;
`pytest --full` runs them all (CI does). An explicit `-m EXPRESSION` chooses by markers alone.

Isolation: the whole test run works in a temporary folder (its working directory), with HOME, the XDG
folders and the default log folder pointed there, so that nothing lands in the clone or the user's home; at
the end the run fails when `git status --porcelain` shows a path that was not there when it started, or when
anything but the caches named in HOME_CACHES was left in its home folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from filelock import FileLock
from helpers.commands import (
    PICTURED_STEPS,
    QUICK,
    evaluate_overrides,
    only_run,
    run_cli,
    tiny_overrides,
    train_run,
)
from helpers.data import make_mnist_root
from hydra.core.hydra_config import HydraConfig
from hypothesis.configuration import set_hypothesis_home_dir

from vae_lightning.runs.folders import PROJECT_ROOT, compose_config

# MLflow reports its use to its makers unless told not to; the tests' runs (and their subprocesses) never do
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# Hypothesis keeps its example database and its cache of the source's constants in `.hypothesis/` of the folder
# pytest was started in (the clone): a test writes only into temporary folders, so they go to the system's one
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "vae_lightning_hypothesis")
if os.environ.get("PYTEST_XDIST_WORKER"):  # one worker per core: a second torch thread per worker only contends
    torch.set_num_threads(1)


FULL_TIER = ("full", "slow", "slurm")
# what may be left in the test run's home folder: caches that libraries keep there
HOME_CACHES = {".cache", ".config/matplotlib"}
GIT_STATUS = pytest.StashKey[set[str] | None]()
# what Python and the tools keep beside the code, which a test run may add to (`git status --ignored`)
TOOL_CACHES = ("__pycache__", ".pytest_cache", ".ruff_cache", ".venv/", ".egg-info/", ".mypy_cache")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--full", action="store_true",
                     help="run the full suite (tests marked full, slow and slurm too); without it, the fast tier")


def pytest_report_header(config: pytest.Config) -> str:
    if config.getoption("--full") or config.option.markexpr:
        return "tier: full" if config.getoption("--full") else f"tier: -m {config.option.markexpr!r}"
    return "tier: fast (tests marked full, slow or slurm are deselected; `pytest --full` runs the full suite)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The fast tier: tests marked full, slow or slurm deselected, unless --full or -m says otherwise."""
    if config.getoption("--full") or config.option.markexpr:
        return
    fast = [item for item in items if not any(item.get_closest_marker(m) for m in FULL_TIER)]
    if len(fast) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in fast])
        items[:] = fast


def git_status() -> set[str] | None:
    """`git status --porcelain` of the clone as a set of lines (None outside a git work tree), ignored paths
    included (a run's output under logs/ is git-ignored but still written into the clone), but for the caches
    that Python and the tools keep beside the code (TOOL_CACHES)."""
    try:
        result = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all", "--ignored"],
                                cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    return {line for line in result.stdout.splitlines()
            if not (line.startswith("!! ") and any(cache in line for cache in TOOL_CACHES))}


def pytest_sessionstart(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):  # once per test run, in the controller
        session.config.stash[GIT_STATUS] = git_status()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when it wrote into the clone (a path `git status` did not show when the run started)."""
    before = session.config.stash.get(GIT_STATUS, None)
    if hasattr(session.config, "workerinput") or before is None:
        return
    new = sorted((git_status() or set()) - before)
    if new:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(f"error: the tests wrote into the clone ({PROJECT_ROOT}): " + "; ".join(new),
                                red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def left_in_home(home: Path) -> list[str]:
    """What a test run left in its home folder, apart from HOME_CACHES."""
    return sorted(str(p.relative_to(home)) for p in home.rglob("*")
                  if not p.is_dir() and not any(p.relative_to(home).as_posix().startswith(f"{c}/")
                                                for c in HOME_CACHES))


@pytest.fixture(autouse=True, scope="session")
def _isolated_outputs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The test run works in a temporary folder: its working directory, HOME, the XDG folders (extracted
    archives go to a temporary cache, never to the user's) and the default log folder (a command run without
    paths.log_dir writes there, never into the clone's logs/). Session-wide, so that the fixtures of every scope
    see it; the commands inherit it. Afterwards, anything but HOME_CACHES left in the home folder is an error."""
    base = tmp_path_factory.getbasetemp()
    home = base / "home"
    for folder in (home, base / "cwd"):
        folder.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(home))
        patch.setenv("XDG_CACHE_HOME", str(base / "cache"))
        patch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
        patch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
        patch.setenv("VAE_LOG_DIR", str(base / "default_logs"))
        patch.chdir(base / "cwd")
        yield
    left = left_in_home(home)
    assert not left, f"the tests left files in the home folder ({home}): {', '.join(left[:20])}"


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


def shared_folder(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], object]) -> Path:
    """A folder that `make(folder)` fills once per test run, shared by every xdist worker: the first worker to
    ask makes it under a file lock, the others wait and read it. Tests only read it (a test that writes copies it)."""
    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared" / name
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{folder}.lock"):
        if not (folder.parent / f"{name}.done").exists():
            shutil.rmtree(folder, ignore_errors=True)  # left by a worker whose `make` failed
            folder.mkdir()
            make(folder)
            (folder.parent / f"{name}.done").touch()
    return folder


@pytest.fixture(scope="session")
def trained_run(mnist_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run folder of one short training run on the synthetic data (without pictures, to be quick).
    Shared by the whole test run: read it, or copy it to change it."""
    logs = shared_folder(tmp_path_factory, "trained", lambda folder: train_run(
        mnist_root, folder, "trainer.max_epochs=1", "test=false", "~callbacks.prior_grid"))
    return only_run(logs)


@pytest.fixture(scope="session")
def learned_prior_run(mnist_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MoG(10)-prior run of 8 steps that draws its prior and the fitted samplers every epoch. Shared by the whole
    test run: read it, or copy it to change it."""
    logs = shared_folder(tmp_path_factory, "learned_prior", lambda folder: train_run(
        mnist_root, folder, "prior=mog", "sampler_set=study_fitted", *PICTURED_STEPS))
    return only_run(logs)


@pytest.fixture(scope="session")
def flow_run(mnist_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A flow-prior run of 8 steps that draws its prior and the fitted samplers (the flow among them) every epoch;
    the flow's learning rate differs from the networks' so that its parameter group shows. Shared by the whole test
    run: read it, or copy it to change it."""
    logs = shared_folder(tmp_path_factory, "flow", lambda folder: train_run(
        mnist_root, folder, "prior=flow", "prior.lr=3e-4", "sampler_set=study_fitted", *PICTURED_STEPS))
    return only_run(logs)


@pytest.fixture(scope="session")
def small_sweep(mnist_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of a 2x2 multirun (prior=normal,beta x annealing=constant,linear; 2 steps each, tested) with the
    basic launcher. Shared by the whole test run: read it, or copy it to change it (report writes into it)."""

    def make(folder: Path) -> None:
        result = run_cli("vae_lightning.train", "-m", *tiny_overrides(mnist_root, folder), "trainer.max_epochs=1",
                         "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
                         "prior=normal,beta", "annealing=constant,linear")
        assert result.returncode == 0, result.stderr[-3000:]

    (sweep,) = (shared_folder(tmp_path_factory, "sweep", make) / "train" / "multiruns").iterdir()
    return sweep


@pytest.fixture(scope="session")
def evaluated_run(mnist_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A run folder trained for 3 steps with its pictures, then evaluated (QUICK, the study's samplers), and the
    folder of its evaluation's cache (the tiny classifier). Shared by the whole test run: copy it to change it."""

    def make(folder: Path) -> None:
        run = train_run(mnist_root, folder / "logs", "trainer.max_epochs=1", "trainer.limit_train_batches=3",
                        "test=false", "callbacks.prior_grid.latent_every_n_epochs=1")
        result = run_cli("vae_lightning.evaluate", *evaluate_overrides(run, mnist_root, folder / "cache"), *QUICK,
                         "sampler_set=study")
        assert result.returncode == 0, result.stderr[-3000:]

    folder = shared_folder(tmp_path_factory, "evaluated", make)
    return only_run(folder / "logs"), folder / "cache"
