"""Running the commands as a user does, with the real config, and reading what they wrote."""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from vae_lightning.runs.folders import CONF_DIR, register_resolvers
from vae_lightning.tracking import event_folder

HELPERS = Path(__file__).resolve().parent
# a classifier that learns the synthetic digits (10 noisy templates) in a second
TINY_CLASSIFIER = ["classifier.model.channels=[4,8]", "classifier.model.features=16", "classifier.epochs=6",
                   "classifier.batch_size=32", "classifier.lr=1e-2", "classifier.min_accuracy=0.9"]
# a learned prior's or a flow prior's run of 8 steps, its prior and the fitted samplers drawn every epoch (conftest's
# learned_prior_run and flow_run, and a test that makes the same run again)
PICTURED_STEPS = ["trainer.max_epochs=2", "trainer.limit_train_batches=4", "test=false",
                  "callbacks.prior_grid.latent_every_n_epochs=1", "callbacks.prior_grid.n_samples=16"]
# evaluate small enough for seconds: the likelihood on the 128 synthetic test images, 200 samples per sampler
QUICK = ["n_samples=200", "iwae.k=20", "exact.points_per_dim=16", "exact.max_points_per_dim=64", "batch_size=64",
         "mechanisms.gaps.n_images=8", "mechanisms.gaps.steps=10", "mechanisms.holes.n_draws=500"]


def tiny_overrides(data_root: Path, log_dir: Path) -> list[str]:
    """Overrides that make the real config train in seconds on the synthetic data."""
    return [
        f"data.root={data_root}", "data.val_size=64", "data.batch_size=32", "data.eval_batch_size=64",
        "data.download=false", f"paths.log_dir={log_dir}", "trainer.accelerator=cpu",
        "trainer.enable_model_summary=false", "trainer.log_every_n_steps=5",
        "callbacks.progress_bar.refresh_rate=0",
    ]


def run_cli(module: str, *overrides: str, env: dict[str, str] | None = None, timeout: float = 300,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m <module> overrides...` as a user runs it, in its own process: a fork of this test process's
    command server (tests/helpers/run_commands.py), which imported the heavy libraries once. The working
    directory is the test run's (conftest makes it a temporary folder) unless `cwd` names another.

    One torch thread unless the environment or `env` sets OMP_NUM_THREADS: the tests' tiny matrix
    products gain nothing from a second thread, and on a loaded 2-core machine the spinning second
    OpenMP thread of each run made the suite several times slower. Raises subprocess.TimeoutExpired as
    subprocess.run does when the command outlives `timeout`."""
    environment = {"OMP_NUM_THREADS": "1", **os.environ, **(env or {})}
    result = CommandServer.shared().run(module, list(overrides), environment, cwd or Path.cwd(), timeout)
    args = [sys.executable, "-m", module, *overrides]
    if result["timed_out"]:
        raise subprocess.TimeoutExpired(args, timeout, result["stdout"], result["stderr"])
    return subprocess.CompletedProcess(args, result["rc"], result["stdout"], result["stderr"])


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


def config_on_searchpath(tmp_path: Path, group: str, name: str, text: str,
                         module_file: str) -> tuple[str, dict[str, str]]:
    """Put `<group>/<name>.yaml` in a temporary config folder: the override that adds it to Hydra's search path,
    and the environment in which a `_target_` defined in the test module `module_file` (its `__file__`) is
    importable by the commands."""
    folder = tmp_path / "conf" / group
    folder.mkdir(parents=True)
    (folder / f"{name}.yaml").write_text(text)
    folders = [str(Path(module_file).resolve().parent), str(HELPERS.parent)]  # the module, and what it imports
    env = {"PYTHONPATH": os.pathsep.join([*folders, os.environ.get("PYTHONPATH", "")])}
    return f"hydra.searchpath=[file://{tmp_path / 'conf'}]", env


def scalars(run: Path, tag: str) -> dict[int, float]:
    """step -> value of a scalar tag, from all event files of a run's TensorBoard folder."""
    acc = EventAccumulator(str(event_folder(run)), size_guidance={"scalars": 0})
    acc.Reload()
    return {e.step: e.value for e in acc.Scalars(tag)} if tag in acc.Tags()["scalars"] else {}


def run_commands(*cases: tuple[str, list[str]], env: dict[str, str] | None = None,
                 timeout: float = 300) -> list[dict[str, object]]:
    """`run_cli` for many (module, args): {"rc", "stdout", "stderr"} per case."""
    results = (run_cli(module, *args, env=env, timeout=timeout) for module, args in cases)
    return [{"rc": r.returncode, "stdout": r.stdout, "stderr": r.stderr} for r in results]


def evaluate_overrides(run: Path, data_root: Path, cache: Path) -> list[str]:
    """evaluate's overrides for a tiny run: its data, no progress bar, the tiny classifier cached under `cache`."""
    return [f"ckpt_path={run}", f"data.root={data_root}", "data.download=false", "progress=false", *TINY_CLASSIFIER,
            f"classifier.cache_dir={cache / 'classifier'}"]


def compose_plain(config_name: str, *overrides: str) -> DictConfig:
    """A command's config composed with `overrides`, without Hydra's runtime (for library calls)."""
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name, overrides=list(overrides))


def evaluate_cfg(*overrides: str) -> DictConfig:
    """evaluate's config composed with `overrides` (for calling the evaluation library directly)."""
    return compose_plain("evaluate", *overrides)


def brief_likelihoods(run: Path, data_root: Path) -> dict:
    """evaluate's likelihood suite (ELBO, IWAE k=200, nll_exact up to a 256^2 grid) of a briefly trained run on
    its synthetic test images, called as a library."""
    from vae_lightning.checkpoints import load_model
    from vae_lightning.core.progress import no_track
    from vae_lightning.evaluation.likelihood import likelihood_metrics
    from vae_lightning.evaluation.settings import EvaluationSettings
    from vae_lightning.runs.evaluation import load_test_set

    module = load_model(run)
    cfg = evaluate_cfg(f"data.root={data_root}", "data.download=false", *QUICK, "iwae.k=200",
                       "exact.points_per_dim=64", "exact.max_points_per_dim=256")
    x, _ = load_test_set({"_target_": "vae_lightning.data.MNISTDataModule", "val_size": 64}, cfg, torch.device("cpu"))
    with torch.no_grad():
        result, _ = likelihood_metrics(module, x, EvaluationSettings.from_config(cfg).likelihood, no_track, {})
    return result


class CommandServer:
    """tests/helpers/run_commands.py --serve: `run(module, args, env, cwd, timeout)` runs one command line in a
    forked child of one process that imported the heavy libraries once. `CommandServer.shared()` is the one of
    this test process (started on first use, stopped when the process exits)."""

    _shared: CommandServer | None = None

    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, str(HELPERS / "run_commands.py"), "--serve"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        env={"OMP_NUM_THREADS": "1", **os.environ})

    @classmethod
    def shared(cls) -> CommandServer:
        if cls._shared is None or cls._shared.process.poll() is not None:
            cls._shared = cls()
            atexit.register(cls._shared.close)
        return cls._shared

    def run(self, module: str, args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float | None = None) -> dict[str, object]:
        assert self.process.stdin is not None and self.process.stdout is not None
        request = {"module": module, "args": args, "env": env if env is not None else dict(os.environ),
                   "cwd": str(cwd or Path.cwd()), "timeout": timeout}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            self.process.wait(timeout=60)
