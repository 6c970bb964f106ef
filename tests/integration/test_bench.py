"""The speed benchmark: runs end to end, and its bare loop trains the same thing as ours."""

from __future__ import annotations

import re

import pytest
import torch
from helpers.commands import TINY_CLASSIFIER, run_cli, tiny_overrides
from omegaconf import OmegaConf

from vae_lightning.benchmark import bare_loss, trainer_device
from vae_lightning.latent import NormalPrior
from vae_lightning.model import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder, VAEModule


@pytest.mark.parametrize(("encoder", "decoder"), [(MLPEncoder, MLPDecoder), (ConvEncoder, ConvDecoder)],
                         ids=["mlp", "conv"])
@pytest.mark.parametrize("shape", [(16, 1, 28, 28), (16, 28, 28)], ids=["images", "bare_batches"])
def test_bare_loop_loss_equals_the_module_loss(encoder, decoder, shape):
    """(a) and (b) compute the same objective for the same parameters, batch and noise, for the study's MLP
    and for the conv variant (`bench model=conv`), from images as the datamodule or the bare loop serves them."""
    torch.manual_seed(0)
    module = VAEModule(encoder(latent_dim=2), decoder(latent_dim=2), NormalPrior(2), torch.optim.Adam, latent_dim=2)
    x = torch.rand(shape)
    torch.manual_seed(1)
    recon, kl = module.loss_terms(x.view(16, 1, 28, 28))
    ours = recon.mean() + kl.mean()
    torch.manual_seed(1)
    bare = bare_loss(module.encoder, module.decoder, x)
    torch.testing.assert_close(ours, bare, rtol=1e-5, atol=1e-4)
    torch.manual_seed(2)  # other noise, other value: the comparison is not vacuous
    assert not torch.isclose(bare_loss(module.encoder, module.decoder, x), bare)


def test_benchmark_runs_end_to_end_and_prints_ratios(mnist_root, tmp_path):
    result = run_cli("vae_lightning.bench", "--epochs", "1", "--repeats", "1", "--breakdown", "--iwae-images", "8",
                     *tiny_overrides(mnist_root, tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for name in ("(a) vae_lightning.train", "(b) bare PyTorch loop", "(c) torchvision pipeline"):
        row = re.search(re.escape(name) + r"\s+([\d.]+)\s+(\d+)\s+([\d.]+)\s+(\d+)", out)
        assert row and float(row.group(1)) > 0 and int(row.group(4)) > 0, out
    for name in ("(a) without prior_grid", "(a) Lightning alone"):  # --breakdown: times, no memory
        assert re.search(re.escape(name) + r"\s+[\d.]+\s+\d+\s+[\d.]+\s+-", out), out
    assert re.search(r"\(a\) outside its epochs .*: \d+\.\d+ s per run", out)
    assert re.search(r"\(a\)/\(b\) epoch time: \d+\.\d+", out)
    assert re.search(r"\(c\)/\(a\) epoch time: \d+\.\d+", out)
    assert re.search(r"test ELBO throughput: \d+ images/s", out)
    assert re.search(r"IWAE k=1000 throughput: \d+ images/s", out)
    assert not list(tmp_path.glob("train/runs/*")), "the benchmark must not leave runs in the log folder"
    # its own progress and table only: no model summary, no device report or tips from Lightning
    for noise in ("Total params", "GPU available", "Tip:", "Seed set", "srun"):  # srun: SLURM installed, no job
        assert noise not in out + result.stderr


@pytest.mark.parametrize(("accelerator", "device"), [("cpu", "cpu"), ("gpu", "cuda"), ("cuda", "cuda"),
                                                     ("auto", "cuda" if torch.cuda.is_available() else "cpu")])
def test_the_bare_loops_run_where_the_trainer_runs(accelerator, device):
    """(b), (c) and the throughput follow `trainer.accelerator`: a GPU (a) against a CPU (b) would be no ratio."""
    assert trainer_device(OmegaConf.create({"trainer": {"accelerator": accelerator}})).type == device


@pytest.mark.full
def test_the_per_seed_view_times_member_runs_against_two_single_runs(mnist_root, tmp_path):
    result = run_cli("vae_lightning.bench", "--epochs", "1", "--repeats", "1", "--iwae-images", "0", "--members", "1,2",
                     *tiny_overrides(mnist_root, tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert re.search(r"baseline \(2 single runs\)\s+[\d.]+\s+1\.000", out), out
    for k in (1, 2):
        assert re.search(rf"K={k} members\s+[\d.]+\s+[\d.]+", out), out
    assert re.search(r"per-seed cost at K=2 vs baseline: \d+\.\d+", out), out
    assert "run 1/1 baseline (2 single runs, 1 thread each)" in result.stderr


def test_a_bad_member_count_is_one_line(mnist_root, tmp_path):
    result = run_cli("vae_lightning.bench", "--members", "4,0", *tiny_overrides(mnist_root, tmp_path))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("error: argument --members: '4,0' is invalid: must be member counts >= 1 "
                                    "separated by commas, e.g. 1,2,4,8; see python -m vae_lightning.bench --help")


@pytest.mark.full
def test_the_evaluation_cost_line_times_one_evaluation_against_twenty_epochs(mnist_root, tmp_path):
    result = run_cli("vae_lightning.bench", "--epochs", "1", "--repeats", "1", "--iwae-images", "0",
                     *tiny_overrides(mnist_root, tmp_path), "--evaluate-cost", *TINY_CLASSIFIER, "n_samples=200",
                     "exact.points_per_dim=16", "exact.max_points_per_dim=64", f"classifier.cache_dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    line = re.search(r"one study job at one thread: evaluate (\d+) s, training 20 x ([\d.]+) s = (\d+) s",
                     result.stdout)
    assert line and float(line.group(2)) > 0, result.stdout
    assert re.search(r"evaluate vs train, one study job: \d+\.\d+", result.stdout)
