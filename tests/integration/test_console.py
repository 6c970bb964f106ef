"""What a new user sees: the headline command's console (the run it starts, a closing summary with the next
commands, none of the libraries' chatter), its log file, and TensorBoard runs named by their settings."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from helpers.commands import QUICK, evaluate_overrides, run_cli, tiny_overrides
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from vae_lightning.tracking import event_folder

HEADLINE = ["prior=beta", "prior.alpha=4", "prior.beta=3"]
FEW_STEPS = ["trainer.max_epochs=2", "trainer.limit_train_batches=3", "trainer.limit_val_batches=1",
             "trainer.limit_test_batches=1", "callbacks.prior_grid.latent_every_n_epochs=1"]
CHATTER = ("GPU available", "TPU available", "Tip:", "litlogger", "limit_train_batches", "limit_val_batches",
           "was configured so", "Seed set to", "LeafSpec", "Total params", "Total FLOPs", "srun")


@pytest.fixture(scope="module")
def headline(mnist_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    logs = tmp_path_factory.mktemp("headline")
    result = run_cli("vae_lightning.train", *tiny_overrides(mnist_root, logs), *FEW_STEPS, *HEADLINE)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = (logs / "train" / "runs").iterdir()
    return result, run


def test_the_console_names_the_run_and_says_what_to_do_next(headline):
    result, run = headline
    lines = result.stdout.splitlines()
    assert lines[0].startswith("run: ") and str(run) in lines[0] and "prior Beta(4, 3)" in lines[0]
    assert "seed 12345" in lines[0] and "device cpu" in lines[0]
    done = next(line for line in lines if line.startswith("done in "))
    assert "test elbo -" in done and "recon" in done and "kl" in done
    assert any(line.startswith("best checkpoint (val/elbo): ") and "epoch_" in line for line in lines)
    text = result.stdout
    for command in (f"open {run}/explore.html in a browser", f"tensorboard --logdir {run}",
                    f"python -m vae_lightning.evaluate ckpt_path={run}",
                    f"python -m vae_lightning.sample ckpt_path={run}",
                    f"python -m vae_lightning.train ckpt_path={run}/checkpoints/last.ckpt"):
        assert command in text, command


def test_the_console_has_none_of_the_libraries_chatter(headline):
    result, _ = headline
    both = result.stdout + result.stderr
    assert not [word for word in CHATTER if word in both], both[-3000:]
    assert "Test metric" not in both and "┃" not in both  # neither Lightning's test table nor a model summary


def test_train_log_has_the_summary_and_the_libraries_lines(headline):
    _, run = headline
    log = (run / "train.log").read_text()
    assert "done in " in log and "test elbo -" in log and "next:" in log
    assert "GPU available" in log  # kept in the file, only the console is quiet


def test_a_sweep_jobs_tensorboard_run_is_named_by_its_overrides_and_hparams_record_prior_and_seed(mnist_root,
                                                                                                 tmp_path):
    logs = tmp_path / "logs"
    result = run_cli("vae_lightning.train", "-m", *tiny_overrides(mnist_root, logs), *FEW_STEPS, "test=false",
                     "~callbacks.prior_grid", "prior=normal,beta_4_3", "annealing=linear", "seed=7")
    assert result.returncode == 0, result.stderr[-3000:]
    # each job's one line and result; what to open next once, for the sweep, not five lines for every job
    assert "next:" not in result.stdout and result.stdout.count("done in ") == 2
    assert result.stdout.strip().splitlines()[-1].startswith("sweep done: 2 jobs, 0 failed; its report: ")
    (sweep,) = (logs / "train" / "multiruns").iterdir()
    assert result.stdout.strip().endswith(f"its latent spaces: python -m vae_lightning.explore sweep={sweep}")
    assert all((job / "explore.html").is_file() for job in sweep.glob("[0-9]"))  # each job's own page
    names = sorted(event_folder(job).name for job in sorted(sweep.glob("[0-9]")))
    assert names == ["prior=beta_4_3,seed=7", "prior=normal,seed=7"]
    accumulator = EventAccumulator(str(event_folder(sweep / "1")), size_guidance={"tensors": 0})
    accumulator.Reload()
    start = accumulator.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
    info = plugin_data_pb2.HParamsPluginData.FromString(start).session_start_info.hparams
    assert info["prior"].string_value == "Beta(4, 3)" and info["seed"].number_value == 7
    assert "LinearWarmup" in info["annealing"].string_value


def test_a_resumed_run_keeps_its_tensorboard_run(headline, mnist_root):
    _, run = headline
    before = event_folder(run)
    result = run_cli("vae_lightning.train", f"ckpt_path={run}/checkpoints/last.ckpt", f"data.root={mnist_root}",
                     "trainer.max_epochs=3", "callbacks.progress_bar.refresh_rate=0")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("resuming: ")
    assert [p for p in (run / "tensorboard").iterdir() if p.is_dir()] == [before]
    assert before.name.startswith("prior=beta,prior.alpha=4,prior.beta=3")


def test_redirected_output_gets_one_line_per_epoch_and_no_redraws(mnist_root, tmp_path):
    """stdout is a file here (as in a log, a SLURM job's output, CI): no progress-bar redraws, one line per epoch."""
    overrides = [o for o in tiny_overrides(mnist_root, tmp_path) if not o.startswith("callbacks.progress_bar.")]
    result = run_cli("vae_lightning.train", *overrides, *FEW_STEPS, "test=false", "~callbacks.prior_grid",
                     "trainer.log_every_n_steps=1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "\r" not in result.stdout + result.stderr
    epochs = [line for line in result.stdout.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epochs] == ["epoch 1/2", "epoch 2/2"]
    assert all(re.fullmatch(r"epoch \d/2: loss [\d.]+, kl [\d.]+, w [\d.]+, val elbo -[\d.]+ \([\d.]+ s\)", line)
               for line in epochs), epochs
    (run,) = (tmp_path / "train" / "runs").iterdir()
    assert epochs[-1] in (run / "train.log").read_text()


def test_redirected_evaluate_reports_each_stage_in_one_line(trained_run, mnist_root, tmp_path):
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))  # evaluate writes into the run folder
    overrides = [o for o in evaluate_overrides(run, mnist_root, tmp_path / "cache") if o != "progress=false"]
    result = run_cli("vae_lightning.evaluate", *overrides, *QUICK, "sampler_set=study", "progress=true")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "\r" not in result.stdout + result.stderr
    stages = [line for line in result.stdout.splitlines() if re.fullmatch(r".+: \d+ of \d+ done in [\d.]+ s", line)]
    assert [s.split(":")[0] for s in stages if s.startswith(("nll_iwae", "sample quality"))] == [
        "nll_iwae k=20", "sample quality"]
