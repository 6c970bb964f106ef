"""The benchmark's variants (the library half of `python -m vae_lightning.bench`): our training path,
a bare PyTorch loop and the conventional torchvision pipeline, on the same data, network, batch size,
optimizer and seed, timed per epoch in one process; evaluation throughput; peak memory per variant
in a fresh process.

(b) and (c) run as in a process that never imported Lightning: importing it sets
PYTORCH_NVML_BASED_CUDA_CHECK=1, which makes every Adam step load the NVML library (see
`runs.threads.cached_cuda_check`, which spares (a) that cost on the CPU).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from functools import cached_property
from pathlib import Path

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import Tensor, nn
from torch.nn.functional import binary_cross_entropy_with_logits
from torch.utils.data import DataLoader, Subset
from torchvision import transforms

from vae_lightning.callbacks import EpochTimer
from vae_lightning.core.building import build
from vae_lightning.data import DATASETS, MNISTDataModule, locate
from vae_lightning.data.datamodule import split_indices
from vae_lightning.evaluation.likelihood import iwae_log_likelihood
from vae_lightning.model.building import build_module
from vae_lightning.runs.folders import CONF_DIR, compose_config
from vae_lightning.runs.members import train_any
from vae_lightning.runs.threads import cached_cuda_check
from vae_lightning.runs.training import train

NAMES = {"a": "(a) vae_lightning.train", "b": "(b) bare PyTorch loop", "c": "(c) torchvision pipeline",
         "a_no_grid": "(a) without prior_grid", "a_lightning": "(a) Lightning alone"}


def _no_grid(cfg: DictConfig) -> None:
    cfg.callbacks.pop("prior_grid", None)


def _lightning_alone(cfg: DictConfig) -> None:
    cfg.callbacks = OmegaConf.load(CONF_DIR / "callbacks" / "none.yaml")  # those that make a checkpoint, no other
    cfg.logger = {}
    cfg.trainer.update(enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False)


# The breakdown's versions of (a): changes to the composed config of the command
BREAKDOWN: dict[str, Callable[[DictConfig], None]] = {"a_no_grid": _no_grid, "a_lightning": _lightning_alone}


def bare_loss(encoder: nn.Module, decoder: nn.Module, x: Tensor) -> Tensor:
    """The textbook negative ELBO of a Normal-prior VAE with a Bernoulli decoder, written out without the
    project's classes: BCE summed over pixels + analytic KL(N(mu, sigma^2) || N(0, 1)), both averaged over
    the batch. Images [B, 28, 28] or [B, 1, 28, 28] go to the encoder as [B, 1, 28, 28] (networks.py)."""
    mean, log_var = encoder(x.view(len(x), 1, 28, 28)).chunk(2, dim=1)
    z = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)
    recon = binary_cross_entropy_with_logits(decoder(z), x.flatten(1), reduction="sum")
    kl = -0.5 * torch.sum(1 + log_var - mean.pow(2) - log_var.exp())
    return (recon + kl) / len(x)


def trainer_device(cfg: DictConfig) -> torch.device:
    """The device (a)'s Trainer trains on: CUDA for `trainer.accelerator` gpu/cuda, or auto with CUDA present."""
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    cuda = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    return torch.device("cuda" if cuda else "cpu")


def _networks(cfg: DictConfig, device: torch.device) -> tuple[nn.Module, nn.Module, torch.optim.Optimizer]:
    """The config's encoder, decoder and optimizer on `device`, initialised from the config's seed like (a)."""
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    module = build_module(cfg, seed=cfg.seed).to(device)
    return module.encoder, module.decoder, module.configure_optimizers()


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plain_loop(cfg: DictConfig, batches: Callable[[], object], val_batches: Callable[[], object],
               epochs: int, device: torch.device) -> list[float]:
    """Epoch times of the bare loop on `device` over `batches()` (uint8 or float image batches, moved to
    `device` when not there), with validation."""
    encoder, decoder, optimizer = _networks(cfg, device)

    def loss(x: Tensor) -> Tensor:
        x = x.to(device, non_blocking=True)
        return bare_loss(encoder, decoder, x.float().div_(255) if x.dtype == torch.uint8 else x)

    times = []
    for _ in range(epochs):
        _synchronize(device)
        start = time.perf_counter()
        for x in batches():
            optimizer.zero_grad(set_to_none=True)
            loss(x).backward()
            optimizer.step()
        with torch.no_grad():
            for x in val_batches():
                loss(x)
        _synchronize(device)
        times.append(time.perf_counter() - start)
    return times


class Bench:
    """The variants, (a) and its breakdown versions, (b) and (c), on one composed config."""

    def __init__(self, overrides: list[str], workdir: Path) -> None:
        self.overrides, self.workdir, self.runs = overrides, workdir, 0
        self.outside_epochs: list[float] = []  # seconds of each (a) run before and after its epochs
        cfg = self.config()
        self.cfg = cfg
        dm: MNISTDataModule = build(cfg.data, "data")
        dm.prepare_data()
        dm.setup()
        self.train_images, self.val_images = dm.splits["train"].images, dm.splits["val"].images
        self.batch_size, self.seed, self.datamodule = dm.batch_size, cfg.seed, dm
        self.device = trainer_device(cfg)
        self.threads = torch.get_num_threads()

    @cached_property
    def torchvision_splits(self) -> tuple[Subset, Subset]:
        """(c)'s data: the same files read through torchvision, split by the same indices (built
        only when (c) runs, so that the other variants' peak memory does not include it)."""
        dm = self.datamodule
        full = DATASETS[dm.dataset](locate(dm.root, dm.dataset, download=False), train=True,
                                    transform=transforms.ToTensor())
        train_idx, val_idx = split_indices(len(full), dm.val_size, dm.split_seed)
        return Subset(full, train_idx.tolist()), Subset(full, val_idx.tolist())

    def config(self, change: Callable[[DictConfig], None] | None = None) -> DictConfig:
        self.runs += 1
        cfg = compose_config("train", [*self.overrides, "test=false", "explore=false"],
                             self.workdir / f"run_{self.runs}")
        with open_dict(cfg):
            cfg.trainer.enable_model_summary = False  # the benchmark prints its own table only
            if change is not None:
                change(cfg)
            cfg.callbacks = {**(cfg.callbacks or {}), "bench_timer": {"_target_": "vae_lightning.callbacks.EpochTimer"}}
        return cfg

    def run(self, variant: str, epochs: int) -> list[float]:
        cfg = self.cfg
        if variant.startswith("a"):
            cfg = self.config(BREAKDOWN.get(variant))
            with open_dict(cfg):
                cfg.trainer.max_epochs = epochs
            EpochTimer.durations = []
            start = time.perf_counter()
            train(cfg)
            if variant == "a":
                self.outside_epochs.append(time.perf_counter() - start - sum(EpochTimer.durations))
            return list(EpochTimer.durations)
        with cached_cuda_check():  # as in a process that never imported Lightning
            return self._run_plain(variant, epochs)

    def _run_plain(self, variant: str, epochs: int) -> list[float]:
        cfg, device = self.cfg, self.device
        if variant == "b":
            generator = torch.Generator().manual_seed(self.seed)
            images, size = self.train_images.to(device), self.batch_size
            val_images = self.val_images.to(device)
            order = lambda: torch.randperm(len(images), generator=generator).to(device).split(size)  # noqa: E731
            return plain_loop(cfg, lambda: (images[i] for i in order()), lambda: val_images.split(1000), epochs,
                              device)
        tv_train, tv_val = self.torchvision_splits
        train_loader = DataLoader(tv_train, batch_size=self.batch_size, shuffle=True)
        val_loader = DataLoader(tv_val, batch_size=1000)
        return plain_loop(cfg, lambda: (x for x, _ in train_loader), lambda: (x for x, _ in val_loader), epochs,
                          device)

    def eval_throughput(self, iwae_images: int) -> dict[str, float]:
        """Images per second of the test-set ELBO (10k images, batches of 1000) and of IWAE with
        k=1000 on `iwae_images` images (evaluate's default batching), with the config's model."""
        device = self.device
        module = build_module(self.cfg, seed=self.cfg.seed).to(device).eval()
        images = self.val_images.repeat(2, 1, 1).to(device)  # 10k images, like the test set
        rates = {}
        with torch.no_grad():
            _synchronize(device)
            start = time.perf_counter()
            for x in images.split(1000):
                module.loss_terms(x.unsqueeze(1).float().div_(255))
            _synchronize(device)
            rates["test ELBO"] = len(images) / (time.perf_counter() - start)
            if iwae_images > 0:
                iwae = OmegaConf.load(CONF_DIR / "evaluate.yaml").iwae
                x = images[:iwae_images].float().div_(255)
                start = time.perf_counter()
                for i, batch in enumerate(x.split(iwae.images_per_batch)):
                    iwae_log_likelihood(module, batch.unsqueeze(1), [1000], iwae.chunk_size, seed=i)
                _synchronize(device)
                rates["IWAE k=1000"] = len(x) / (time.perf_counter() - start)
        return rates


# The study's evaluation (docs/results/study.md): what `evaluate vs train, one study job` evaluates with
STUDY_EVALUATION = ["iwae.k=100", "n_samples=10000", "sampler_set=study_fitted", "progress=false"]
STUDY_EPOCHS = 20


def member_epoch_seconds(bench: Bench, k: int, epochs: int) -> float:
    """Mean epoch time of a K-member run (seeds 0..K-1, runs/members.py) of the bench's config, in this process."""
    cfg = bench.config()
    with open_dict(cfg):
        cfg.seeds, cfg.trainer.max_epochs = list(range(k)), epochs
    EpochTimer.durations = []
    train_any(cfg)
    return sum(EpochTimer.durations) / len(EpochTimer.durations)


def baseline_epoch_seconds(epochs: int, overrides: list[str]) -> list[float]:
    """The study's way to train seeds: single runs two at a time, one thread each. Two fresh processes run variant
    (a) side by side with threads=1; returns each one's mean epoch time."""
    command = [sys.executable, "-m", "vae_lightning.bench", "--only", "a", "--epochs", str(epochs), "--repeats", "1",
               *overrides, "threads=1"]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
    outputs = [p.communicate() for p in processes]
    for process, (_, err) in zip(processes, outputs, strict=True):
        if process.returncode != 0:
            raise RuntimeError(f"the baseline's single run failed: {err[-2000:]}")
    return [json.loads(out.strip().splitlines()[-1])["epoch_s"] for out, _ in outputs]


def study_evaluation_seconds(bench: Bench, epochs: int, extra: list[str]) -> tuple[float, float]:
    """(seconds of one thread to evaluate a study job at the study's settings, seconds of one thread per training
    epoch of that job): a single run of `epochs` epochs trained here at one thread, then evaluated as the study's
    report evaluates a job."""
    from vae_lightning.runs.evaluation import evaluate_checkpoint

    torch.set_num_threads(1)
    try:
        cfg = bench.config()
        with open_dict(cfg):
            cfg.trainer.max_epochs, cfg.threads = epochs, 1
        EpochTimer.durations = []
        train(cfg)
        epoch_s = sum(EpochTimer.durations) / len(EpochTimer.durations)
        run = Path(cfg.trainer.default_root_dir)
        eval_cfg = compose_config("evaluate", [f"ckpt_path={run}", f"data.root={bench.datamodule.root}",
                                               *STUDY_EVALUATION, *extra], run / "eval")
        start = time.perf_counter()
        evaluate_checkpoint(eval_cfg)
        return time.perf_counter() - start, epoch_s
    finally:
        torch.set_num_threads(bench.threads)


def reset_peak_memory() -> bool:
    """Reset this process's peak resident memory (Linux: VmHWM); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_memory_since_reset(reset: bool) -> float:
    """Peak resident memory in MB since `reset_peak_memory` (else since the process started)."""
    if reset:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_memory_mb(variant: str, epochs: int, overrides: list[str]) -> float:
    """Peak RSS (MB) of a fresh process while it runs only `variant` (after its common setup:
    imports, config, data loaded)."""
    out = subprocess.run([sys.executable, "-m", "vae_lightning.bench", "--only", variant, "--epochs", str(epochs),
                          "--repeats", "1", *overrides], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mb"]
