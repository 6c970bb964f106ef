"""Training speed of our path against a bare PyTorch loop and the conventional torchvision pipeline.

    python -m vae_lightning.bench [--epochs 1] [--repeats 3] [override ...]

In one process, on the same data, network, batch size, optimizer and seed, it times epochs of
  (a) ours: `vae_lightning.train.train` on the composed default config (Trainer, our datamodule,
      default callbacks and logger), exactly what `python -m vae_lightning.train` runs;
  (b) bare: a plain PyTorch loop over the same in-memory uint8 tensors (the practical limit);
  (c) torchvision: `datasets.MNIST` + `transforms.ToTensor()` + `DataLoader(batch_size, shuffle=True)`,
      the loop of (b).
An epoch is the training pass over the 55k training images plus the ELBO over the 5k validation
images, as in (a). Variants alternate, `--repeats` times; medians are printed with the ratios
(a)/(b) and (c)/(a) of epoch time, the peak resident memory of each (measured in a fresh
subprocess per variant, since a process's peak only grows), and evaluation throughput.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import cached_property
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig, open_dict
from torch import Tensor, nn
from torch.nn.functional import binary_cross_entropy_with_logits
from torch.utils.data import DataLoader, Subset
from torchvision import transforms

from vae_lightning.config import compose_config
from vae_lightning.data import DATASETS, MNISTDataModule, locate, split_indices
from vae_lightning.train import train

VARIANTS = ("a", "b", "c")
NAMES = {"a": "(a) vae_lightning.train", "b": "(b) bare PyTorch loop", "c": "(c) torchvision pipeline"}


class EpochTimer(Callback):
    """Wall time of each training epoch of a Lightning run, validation and checkpointing included."""

    durations: list[float] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._lap()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._lap()

    def _lap(self) -> None:
        now = time.perf_counter()
        if getattr(self, "_start", None) is not None:
            EpochTimer.durations.append(now - self._start)
        self._start = now


def bare_loss(encoder: nn.Module, decoder: nn.Module, x: Tensor) -> Tensor:
    """The textbook negative ELBO of a Normal-prior VAE, written out without the project's classes:
    BCE summed over pixels + analytic KL(N(mu, sigma^2) || N(0, 1)), both averaged over the batch."""
    x = x.flatten(1)
    mean, log_var = encoder(x).chunk(2, dim=1)
    z = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)
    recon = binary_cross_entropy_with_logits(decoder(z), x, reduction="sum")
    kl = -0.5 * torch.sum(1 + log_var - mean.pow(2) - log_var.exp())
    return (recon + kl) / len(x)


def _networks(cfg: DictConfig) -> tuple[nn.Module, nn.Module, torch.optim.Optimizer]:
    """The config's encoder, decoder and optimizer, initialised from the config's seed like (a)."""
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    module = instantiate(cfg.model, prior=instantiate(cfg.prior))
    return module.encoder, module.decoder, module.configure_optimizers()


def plain_loop(cfg: DictConfig, batches: Callable[[], object], val_batches: Callable[[], object],
               epochs: int) -> list[float]:
    """Epoch times of the bare loop over `batches()` (uint8 or float image batches), with validation."""
    encoder, decoder, optimizer = _networks(cfg)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        for x in batches():
            loss = bare_loss(encoder, decoder, x.float().div_(255) if x.dtype == torch.uint8 else x)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            for x in val_batches():
                bare_loss(encoder, decoder, x.float().div_(255) if x.dtype == torch.uint8 else x)
        times.append(time.perf_counter() - start)
    return times


class Bench:
    """The three variants on one composed config."""

    def __init__(self, overrides: list[str], workdir: Path) -> None:
        self.overrides, self.workdir, self.runs = overrides, workdir, 0
        cfg = self.config()
        self.cfg = cfg
        dm: MNISTDataModule = instantiate(cfg.data)
        dm.prepare_data()
        dm.setup()
        self.train_images, self.val_images = dm.splits["train"].images, dm.splits["val"].images
        self.batch_size, self.seed, self.datamodule = dm.batch_size, cfg.seed, dm

    @cached_property
    def torchvision_splits(self) -> tuple[Subset, Subset]:
        """(c)'s data: the same files read through torchvision, split by the same indices (built
        only when (c) runs, so that the other variants' peak memory does not include it)."""
        dm = self.datamodule
        full = DATASETS[dm.dataset](locate(dm.root, dm.dataset, download=False), train=True,
                                    transform=transforms.ToTensor())
        train_idx, val_idx = split_indices(len(full), dm.val_size, dm.split_seed)
        return Subset(full, train_idx.tolist()), Subset(full, val_idx.tolist())

    def config(self) -> DictConfig:
        self.runs += 1
        cfg = compose_config("train", [*self.overrides, "test=false"], self.workdir / f"run_{self.runs}")
        with open_dict(cfg):
            cfg.callbacks = {**(cfg.callbacks or {}), "bench_timer": {"_target_": f"{__name__}.EpochTimer"}}
        return cfg

    def run(self, variant: str, epochs: int) -> list[float]:
        cfg = self.cfg
        if variant == "a":
            cfg = self.config()
            with open_dict(cfg):
                cfg.trainer.max_epochs = epochs
            EpochTimer.durations = []
            train(cfg)
            return list(EpochTimer.durations)
        if variant == "b":
            generator = torch.Generator().manual_seed(self.seed)
            images, size = self.train_images, self.batch_size
            order = lambda: torch.randperm(len(images), generator=generator).split(size)  # noqa: E731
            return plain_loop(cfg, lambda: (images[i] for i in order()), lambda: self.val_images.split(1000), epochs)
        tv_train, tv_val = self.torchvision_splits
        train_loader = DataLoader(tv_train, batch_size=self.batch_size, shuffle=True)
        val_loader = DataLoader(tv_val, batch_size=1000)
        return plain_loop(cfg, lambda: (x for x, _ in train_loader), lambda: (x for x, _ in val_loader), epochs)

    def eval_throughput(self) -> float:
        """Images per second of the test-set ELBO (batches of 1000) with the config's model."""
        module = instantiate(self.cfg.model, prior=instantiate(self.cfg.prior)).eval()
        images = self.val_images.repeat(2, 1, 1)  # 10k images, like the test set
        start = time.perf_counter()
        with torch.no_grad():
            for x in images.split(1000):
                module.loss_terms(x.unsqueeze(1).float().div_(255))
        return len(images) / (time.perf_counter() - start)


def peak_memory_mb(variant: str, epochs: int, overrides: list[str]) -> float:
    """Peak RSS (MB) of a fresh process that runs only `variant`."""
    module = __spec__.name if __spec__ is not None else __name__  # "vae_lightning.bench" also under -m
    out = subprocess.run([sys.executable, "-m", module, "--only", variant, "--epochs", str(epochs),
                          "--repeats", "1", *overrides], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mb"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=1, help="epochs per timed run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each variant, alternating")
    parser.add_argument("--only", choices=VARIANTS, help="run one variant and print its peak memory as JSON")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the train config, e.g. data.root=...")
    args = parser.parse_args(argv)
    torch.set_num_threads(torch.get_num_threads())
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(args.overrides, Path(tmp))
        if args.only:
            bench.run(args.only, args.epochs)
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(json.dumps({"peak_rss_mb": peak}))
            return
        times: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for _ in range(args.repeats):
            for variant in VARIANTS:
                times[variant] += bench.run(variant, args.epochs)
        images_per_s = bench.eval_throughput()
    n_train = len(bench.train_images)
    median = {v: statistics.median(t) for v, t in times.items()}
    print(f"\n{n_train} training + {len(bench.val_images)} validation images per epoch, batch {bench.batch_size}, "
          f"{torch.get_num_threads()} threads, {args.repeats} x {args.epochs} epoch(s) per variant")
    print(f"{'variant':28} {'epoch s (median)':>17} {'samples/s':>10} {'peak RSS MB':>12}")
    for v in VARIANTS:
        memory = peak_memory_mb(v, 1, args.overrides)
        print(f"{NAMES[v]:28} {median[v]:17.2f} {n_train / median[v]:10.0f} {memory:12.0f}")
    print(f"(a)/(b) epoch time: {median['a'] / median['b']:.3f}   (target <= 1.10)")
    print(f"(c)/(a) epoch time: {median['c'] / median['a']:.3f}   (target >= 1.6)")
    print(f"test ELBO throughput: {images_per_s:.0f} images/s")
    if not all(math.isfinite(m) for m in median.values()):
        raise SystemExit("a variant produced no timing")


if __name__ == "__main__":
    main()
