"""Reliability through the real CLI: exact resume, SIGINT/SIGTERM, SIGKILL during a save, bad input, NaN.

Runs that resume are compared with one uninterrupted run (`straight`): same parameters bit for
bit and the same `val/elbo` at every epoch. Dynamic binarization is on, so both random streams
that must survive a resume (binarization and reparameterization noise) are exercised.
"""

from __future__ import annotations

import gzip
import os
import random
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers.commands import HELPERS, assert_same_weights, only_run, run_cli, scalars, tiny_overrides
from helpers.data import N_TRAIN, make_mnist_root, synthetic_digits, write_idx

from vae_lightning.callbacks import LastCheckpoint, NonFiniteGuard
from vae_lightning.callbacks.non_finite_guard import first_non_finite
from vae_lightning.checkpoints import load_checkpoint, load_model
from vae_lightning.checkpoints.writing import AtomicCheckpointIO
from vae_lightning.core.errors import NonFiniteError, ParameterError, WriteFailed
from vae_lightning.data.batches import EpochShuffle
from vae_lightning.runs.folders import PROJECT_ROOT

INSTRUMENTED = Path(__file__).resolve().parents[1] / "helpers" / "instrumented_train.py"
# One torch thread per run: on a busy 2-core machine the idle threads of tiny matrix products
# spin and cost several times the run's CPU time (measured: 55 s vs 7 s of CPU for `straight`).
ENV = {"OMP_NUM_THREADS": "1"}
BATCH, VAL_SIZE, EPOCHS = 8, 64, 4
STEPS_PER_EPOCH = (N_TRAIN - VAL_SIZE) // BATCH  # 40: 160 steps in all


def overrides(data_root: Path, log_dir: Path) -> list[str]:
    return [*tiny_overrides(data_root, log_dir), f"data.batch_size={BATCH}", "data.binarize=dynamic", "test=false",
            f"trainer.max_epochs={EPOCHS}"]


def assert_same_training(run: Path, straight: Path) -> None:
    """`run` ended exactly where the uninterrupted run did."""
    assert_same_weights(run, straight, EPOCHS * STEPS_PER_EPOCH)
    val = scalars(run, "val/elbo")
    assert len(val) == EPOCHS and val == scalars(straight, "val/elbo")


@pytest.fixture(scope="module")
def straight(mnist_root, tmp_path_factory) -> Path:
    log_dir = tmp_path_factory.mktemp("straight")
    result = run_cli("vae_lightning.train", *overrides(mnist_root, log_dir), env=ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    return only_run(log_dir)


def run_instrumented(args: list[str], env: dict[str, str], marker: Path,
                     act: Callable[[subprocess.Popen], None]) -> subprocess.CompletedProcess[str]:
    """Run tests/instrumented_train.py; once it creates `marker`, call `act(process)`."""
    process = subprocess.Popen([sys.executable, str(INSTRUMENTED), *args], cwd=PROJECT_ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, **ENV, "VAE_TEST_MARKER": str(marker), **env})
    deadline = time.monotonic() + 300
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "the run ended before reaching the instrumented moment"
    act(process)
    stdout, stderr = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


# --- 1. exact resume at an epoch boundary


def test_resume_at_epoch_boundary_is_bit_identical(straight, mnist_root, tmp_path):
    first = run_cli("vae_lightning.train", *overrides(mnist_root, tmp_path), "trainer.max_epochs=2", env=ENV)
    assert first.returncode == 0, first.stderr[-3000:]
    run = only_run(tmp_path)
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 2 * STEPS_PER_EPOCH
    second = run_cli("vae_lightning.train", f"ckpt_path={run}/checkpoints/last.ckpt", f"trainer.max_epochs={EPOCHS}",
                     env=ENV)
    assert second.returncode == 0, second.stderr[-3000:]
    assert_same_training(run, straight)


# --- 2. SIGINT / SIGTERM: save, one line with the resume command, non-zero exit; the resume continues


@pytest.mark.full  # a signal at an exact step, then a resume: tens of seconds
@pytest.mark.parametrize("signum, step", [(signal.SIGINT, 55), (signal.SIGTERM, 101)])
def test_signal_saves_and_the_printed_command_resumes_exactly(straight, mnist_root, tmp_path, signum, step):
    marker = tmp_path / "paused"

    def interrupt(process: subprocess.Popen) -> None:
        process.send_signal(signum)
        marker.with_name("paused.go").touch()  # let the paused training step finish

    result = run_instrumented(overrides(mnist_root, tmp_path / "logs"), {"VAE_TEST_PAUSE_AT_STEP": str(step)},
                              marker, interrupt)
    assert result.returncode == 128 + signum, result.stderr[-3000:]
    (line,) = [x for x in result.stderr.splitlines() if "resume with:" in x]
    run = only_run(tmp_path / "logs")
    last = run / "checkpoints" / "last.ckpt"
    assert line == (f"interrupted by {signal.Signals(signum).name} at epoch {step // STEPS_PER_EPOCH}, step "
                    f"{step + 1}; saved {last}; resume with: python -m vae_lightning.train ckpt_path={last}")
    assert "Traceback" not in result.stderr
    saved = load_checkpoint(last)
    assert saved["global_step"] == step + 1  # the paused step finished, then the run stopped mid-epoch

    command = shlex.split(line.split("resume with: ")[1])
    assert command[0] == "python"
    resumed = subprocess.run([sys.executable, *command[1:]], cwd=PROJECT_ROOT, capture_output=True, text=True,
                             timeout=300, env={**os.environ, **ENV})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_training(run, straight)


# --- 3. SIGKILL during a save leaves the previous complete checkpoint


@pytest.mark.full  # a run killed mid-save, then a resume
def test_kill_during_a_save_leaves_the_previous_checkpoint(straight, mnist_root, tmp_path):
    # last.ckpt every 15 steps: written at step 15, then the write at step 30 hangs halfway and is killed
    result = run_instrumented([*overrides(mnist_root, tmp_path), "callbacks.last_checkpoint.every_n_train_steps=15"],
                              {"VAE_TEST_SLOW_SAVE": "1"}, tmp_path / "saving", lambda p: p.kill())
    assert result.returncode == -signal.SIGKILL
    run = only_run(tmp_path)
    last = run / "checkpoints" / "last.ckpt"
    (partial,) = (run / "checkpoints").glob(".last.ckpt.tmp-*")
    assert 0 < partial.stat().st_size < last.stat().st_size
    assert load_checkpoint(last)["global_step"] == 15  # complete, and the mid-epoch one

    resumed = run_cli("vae_lightning.train", f"ckpt_path={last}", env=ENV)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert not partial.exists()  # removed by the next save of last.ckpt
    assert_same_training(run, straight)


# the moments of a random kill, each drawn from the n-th such moment of the process (tests/helpers/faulty.py); a fresh
# run's are drawn after its first checkpoint (step 15), so that every kill leaves one to resume
KILL_MOMENTS = ("step", "validation", "save", "flush")


def kill_point(moment: str, rand: random.Random, step: int | None) -> str:
    """`<moment>:<n>` for VAE_TEST_KILL_AT: a random one after the checkpoint of `step` (None: a fresh run)."""
    fresh = step is None
    n = {"step": lambda: min(rand.randint(16, 39) if fresh else step + rand.randint(1, 20), 159),
         "validation": lambda: rand.randint(2, 3) if fresh else rand.randint(1, 2),  # 1: the sanity check
         "save": lambda: rand.randint(2, 4) if fresh else rand.randint(1, 3),  # the 1st of a fresh run: step 15
         "flush": lambda: rand.randint(6, 12) if fresh else rand.randint(1, 10)}[moment]()  # 5 before step 15
    return f"{moment}:{n}"


@pytest.mark.full  # five short runs of one 160-step run (tiny model, tiny data): a few tens of seconds
def test_sigkill_at_random_moments_then_resume_ends_bit_identical(straight, mnist_root, tmp_path):
    """A run SIGKILLed at four random moments (inside a training step, a validation step, halfway through a checkpoint
    save, at a TensorBoard flush; in a random order) and resumed after each ends with the uninterrupted run's weights,
    bit for bit, and its val/elbo at every epoch; after every kill the run folder loads with load_model and resumes.
    VAE_TEST_KILL_SEED=<seed> replays a failure (every assertion names the seed)."""
    seed = int(os.environ.get("VAE_TEST_KILL_SEED", time.time_ns() % 2**32))
    rand = random.Random(seed)
    moments = list(KILL_MOMENTS)
    rand.shuffle(moments)
    env = {**ENV, "PYTHONPATH": os.pathsep.join([str(HELPERS.parent), os.environ.get("PYTHONPATH", "")])}
    command = [*overrides(mnist_root, tmp_path), "callbacks.last_checkpoint.every_n_train_steps=15"]
    step, kills = None, []
    for moment in moments:
        point = kill_point(moment, rand, step)
        kills.append(f"{point} after step {step or 0}")
        where = f"VAE_TEST_KILL_SEED={seed}: kills {kills}"
        killed = run_cli("helpers.faulty", "train", *command, env={**env, "VAE_TEST_KILL_AT": point})
        assert killed.returncode == -signal.SIGKILL, (where, killed.stderr[-3000:])
        run = only_run(tmp_path)
        last = run / "checkpoints" / "last.ckpt"
        saved = load_checkpoint(last)["global_step"]
        assert saved >= (step or 15), where
        module = load_model(run)  # the folder loads as it is
        with torch.no_grad():
            assert torch.isfinite(module.decode(torch.zeros(1, module.latent_dim))).all(), where
        step, command = saved, [f"ckpt_path={last}"]
    resumed = run_cli("vae_lightning.train", *command, env=ENV)
    assert resumed.returncode == 0, (where, resumed.stderr[-3000:])
    assert_same_training(run, straight)
    assert not list(run.rglob("*.tmp-*")), where  # a killed save's part is gone with the next save


def test_a_second_writer_of_a_run_folder_is_refused_naming_the_first(straight, mnist_root, tmp_path):
    """While a run trains (paused at step 20, its last.ckpt of step 15 written), resuming its folder is refused in
    one line naming the process that writes it; the refused command leaves no trace, the first run ends as if
    alone, and its folder is free again afterwards (the lock dies with its holder)."""
    seen = {}

    def resume_meanwhile(process: subprocess.Popen) -> None:
        (run,) = (tmp_path / "logs" / "train" / "runs").iterdir()
        seen["run"], seen["pid"] = run, process.pid
        seen["second"] = run_cli("vae_lightning.train", f"ckpt_path={run}/checkpoints/last.ckpt", env=ENV)
        config = (run / ".hydra" / "config.yaml").read_bytes()
        seen["plain"] = run_cli("vae_lightning.train", f"hydra.run.dir={run}", *overrides(mnist_root, tmp_path / "x"),
                                env=ENV)  # a new run into the busy folder: refused before Hydra rewrites its config
        seen["config kept"] = (run / ".hydra" / "config.yaml").read_bytes() == config
        (tmp_path / "paused.go").touch()

    first = run_instrumented([*overrides(mnist_root, tmp_path / "logs"),
                              "callbacks.last_checkpoint.every_n_train_steps=15"],
                             {"VAE_TEST_PAUSE_AT_STEP": "20"}, tmp_path / "paused", resume_meanwhile)
    assert first.returncode == 0, first.stderr[-3000:]
    run, second = seen["run"], seen["second"]
    assert second.returncode == 2 and second.stdout == "", second.stderr[-3000:]
    (line,) = second.stderr.strip().splitlines()
    assert line.startswith(f"error: {run} is being written by another process (pid {seen['pid']} on "
                           f"{socket.gethostname()}, since "), line
    assert "python -m vae_lightning.train " in line and line.endswith("; wait for it to end, or train into another "
                                                                       "folder")
    assert not list((run / ".hydra").glob("resume_*"))  # the refused resume left no record of itself
    plain = seen["plain"]
    assert plain.returncode == 2 and plain.stderr.strip().splitlines() == [line] and seen["config kept"]
    assert_same_training(run, straight)
    again = run_cli("vae_lightning.train", f"ckpt_path={run}/checkpoints/last.ckpt", "trainer.max_epochs=5", env=ENV)
    assert again.returncode == 0, again.stderr[-3000:]


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"step": 1}, target)
    before = target.read_bytes()

    def write_half_then_fail(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", write_half_then_fail)
    with pytest.raises(WriteFailed, match=rf"^no space left on the device in {tmp_path}: writing last.ckpt \(17 bytes "
                                          "of it written\\) failed$"):
        AtomicCheckpointIO().save_checkpoint({"step": 2}, target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


# --- 4. bad input: one line naming the key or file, exit 2, nothing written

BAD_INPUTS = [  # {last}: last.ckpt of a Beta(4, 3) run; {tmp}: a folder with bad files (see `bad_files`)
    ("ckpt_path={last} prior=foo",
     "prior=foo is not an option of prior: choose one of beta, beta_1p1_1p1, beta_1p1_2, beta_4_3, flow, gaussian, "
     "mog, normal, vamp"),
    ("ckpt_path={last} prior=beta prior.alpha=0", "prior.alpha=0 is invalid: must be a finite number > 0"),
    ("ckpt_path={last} prior=beta prior.beta=-1", "prior.beta=-1 is invalid: must be a finite number > 0"),
    ("ckpt_path={last} prior=gaussian prior.scale=0", "prior.scale=0 is invalid: must be a finite number > 0"),
    ("ckpt_path={last} model.latent_dim=0", "model.latent_dim=0 is invalid: must be an integer >= 1"),
    ("ckpt_path={last} annealing=cyclical annealing.ratio=2", "annealing.ratio=2 is invalid: must be a number in "
                                                              "(0, 1]"),
    ("ckpt_path={tmp}/missing.ckpt", "ckpt_path='{tmp}/missing.ckpt' does not exist"),
    ("ckpt_path={last} prior=normal", "than requested: prior._target_='vae_lightning.latent.NormalPrior' "
                                      "(checkpoint: 'vae_lightning.latent.BetaPrior')"),
    ("ckpt_path={tmp}/truncated.ckpt", "ckpt_path='{tmp}/truncated.ckpt' is not a readable checkpoint"),
    ("ckpt_path={last} data.root={tmp}/bad_magic", "{tmp}/bad_magic/MNIST/raw/train-images-idx3-ubyte.gz is not an "
                                                   "MNIST IDX file (magic number 1234, expected 2051)"),
    ("ckpt_path={last} data.root={tmp}/truncated_idx", "{tmp}/truncated_idx/MNIST/raw/train-images-idx3-ubyte.gz is "
                                                       "truncated or corrupt"),
    # new runs: nothing may be left behind in the log folder either
    ("data.batch_size=0", "data.batch_size=0 is invalid: must be an integer >= 1"),
    ("paths.log_dir={tmp}/a_file/logs", "cannot create the run folder {tmp}/a_file/logs/train/runs/"),
]


@pytest.fixture(scope="module")
def beta_run(mnist_root, tmp_path_factory) -> Path:
    log_dir = tmp_path_factory.mktemp("beta_run")
    result = run_cli("vae_lightning.train", *tiny_overrides(mnist_root, log_dir), "trainer.max_epochs=1", "test=false",
                     "prior=beta", "prior.alpha=4", "prior.beta=3", env=ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    return only_run(log_dir)


@pytest.fixture(scope="module")
def bad_files(beta_run, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("bad")
    (tmp / "truncated.ckpt").write_bytes((beta_run / "checkpoints" / "last.ckpt").read_bytes()[:100_000])
    (tmp / "a_file").write_text("a regular file, so no folder can be created under it, even by root\n")
    raw = make_mnist_root(tmp / "bad_magic") / "MNIST" / "raw"
    write_idx(raw / "train-images-idx3-ubyte.gz", synthetic_digits(N_TRAIN, 1)[0], magic=1234)
    raw = make_mnist_root(tmp / "truncated_idx") / "MNIST" / "raw"
    content = gzip.decompress((raw / "train-images-idx3-ubyte.gz").read_bytes())
    (raw / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(content[:-784]))
    return tmp


def snapshot(run: Path) -> dict[str, bytes]:
    """Every file of a run folder but Hydra's job log (train.log), to which each command appends."""
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()
            and p.suffix != ".log"}


@pytest.mark.parametrize("command, message", BAD_INPUTS, ids=[c for c, _ in BAD_INPUTS])
def test_bad_input_is_one_line_and_changes_nothing(beta_run, bad_files, mnist_root, tmp_path, command, message):
    before = snapshot(beta_run)
    fill = {"last": beta_run / "checkpoints" / "last.ckpt", "tmp": bad_files}
    log_dir = tmp_path / "logs"
    result = run_cli("vae_lightning.train", *tiny_overrides(mnist_root, log_dir), *command.format(**fill).split(),
                     env=ENV)
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("error: "), result.stderr[-3000:]
    assert message.format(**fill) in errors[0]
    assert "Traceback" not in result.stderr
    assert snapshot(beta_run) == before  # checkpoints, configs, events: not a byte changed, nothing added
    assert not log_dir.exists() or not any((log_dir / "train" / "runs").glob("*"))


def test_full_error_shows_the_traceback(mnist_root, tmp_path):
    result = run_cli("vae_lightning.train", *tiny_overrides(mnist_root, tmp_path), "prior=foo",
                     env={**ENV, "HYDRA_FULL_ERROR": "1"})
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "Could not find 'prior/foo'" in result.stderr


def test_bad_callback_parameter_names_its_key():
    with pytest.raises(ParameterError, match=r"every_n_train_steps=-1 is invalid: must be an integer >= 0"):
        LastCheckpoint("unused", every_n_train_steps=-1)


# --- 5. NaN guard


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(mnist_root, tmp_path):
    # Adam with lr=1e30 moves every weight by ~1e30 in its first step: still finite, but the next
    # forward pass overflows to inf and NaN. One step, one epoch: a good (finite) last.ckpt.
    first = run_cli("vae_lightning.train", *tiny_overrides(mnist_root, tmp_path), "test=false", "trainer.max_epochs=1",
                    "trainer.limit_train_batches=1", "model.optimizer.lr=1e30", env=ENV)
    assert first.returncode == 0, first.stderr[-3000:]
    run = only_run(tmp_path)
    checkpoints = {p: p.read_bytes() for p in (run / "checkpoints").iterdir()}
    last = run / "checkpoints" / "last.ckpt"
    assert first_non_finite(load_checkpoint(last)["state_dict"]) is None

    second = run_cli("vae_lightning.train", f"ckpt_path={last}", "trainer.max_epochs=2",
                     "trainer.limit_train_batches=1.0", env=ENV)
    assert second.returncode == 1, second.stderr[-3000:]
    (line,) = [x for x in second.stderr.splitlines() if x.startswith("error:")]
    assert re.fullmatch(r"error: non-finite training loss at step 1 \(epoch 1, batch 0\): loss=nan, recon=\S+, "
                        r"kl=\S+, kl_weight=1; training stopped, no checkpoint written after the previous one", line)
    assert "Traceback" not in second.stderr
    assert {p: p.read_bytes() for p in (run / "checkpoints").iterdir()} == checkpoints


def test_non_finite_guard_checks_in_groups_and_names_the_first_bad_step():
    """Losses are checked every `log_every_n_steps` steps (one transfer), not at every step; the
    report names the first non-finite step of the group, not the step that ran the check."""
    guard = NonFiniteGuard()
    trainer = SimpleNamespace(global_step=0, current_epoch=4, log_every_n_steps=5)
    module = SimpleNamespace(kl_weight=0.5)
    losses = [1.0, 2.0, float("nan"), float("inf"), 3.0]
    for batch_idx, loss in enumerate(losses[:4]):
        trainer.global_step += 1
        guard.on_train_batch_end(trainer, module, {"loss": torch.tensor(loss), "kl": torch.tensor(0.25)}, None,
                                 batch_idx)  # no check before the 5th step
    trainer.global_step += 1
    with pytest.raises(NonFiniteError, match=r"^non-finite training loss at step 2 \(epoch 4, batch 2\): "
                                             r"loss=nan, kl=0.25, kl_weight=0.5; training stopped"):
        guard.on_train_batch_end(trainer, module, {"loss": torch.tensor(losses[4])}, None, 4)
    trainer.global_step += 1
    guard.on_train_batch_end(trainer, module, {"loss": torch.tensor(float("nan"))}, None, 5)
    with pytest.raises(NonFiniteError, match=r"at step 5 \(epoch 4, batch 5\)"):  # also before any save
        guard.on_save_checkpoint(trainer, module, {"state_dict": {}})


def test_no_checkpoint_with_non_finite_weights_is_written():
    weights = {"encoder.weight": torch.tensor([1.0, float("inf")])}

    class Trainer:
        global_step = 7

    with pytest.raises(NonFiniteError, match=r"at step 7: state_dict.encoder.weight holds NaN or inf"):
        NonFiniteGuard().on_save_checkpoint(Trainer(), None, {"state_dict": weights})
    state = {"state": {0: {"exp_avg": torch.tensor([float("nan")])}}}
    assert first_non_finite({"optimizer_states": [state]}) == "optimizer_states.0.state.0.exp_avg"


# --- data position inside an epoch


def test_epoch_shuffle_resumes_after_the_consumed_indices():
    sampler = EpochShuffle(10, seed=3)
    sampler.set_epoch(2)
    order = list(sampler)
    it = iter(sampler)
    seen = [next(it) for _ in range(4)]
    state = sampler.state_dict()
    assert seen == order[:4] and state == {"epoch": 2, "consumed": 4}

    resumed = EpochShuffle(10, seed=3)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)
    assert list(resumed) == order[4:]
    assert list(resumed) == order  # the skip applies to the resumed epoch only
    resumed.load_state_dict(state)
    resumed.set_epoch(3)
    assert len(list(resumed)) == 10

