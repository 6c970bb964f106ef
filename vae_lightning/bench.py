"""Training speed of our path against a bare PyTorch loop and the conventional torchvision pipeline.

    python -m vae_lightning.bench [--epochs 1] [--repeats 3] [--breakdown] [--iwae-images 500] [override ...]

In one process, on the same data, network, batch size, optimizer and seed, it times epochs of
  (a) ours: `vae_lightning.train.train` on the composed default config (Trainer, our datamodule,
      default callbacks and logger), exactly what `python -m vae_lightning.train` runs;
  (b) bare: a plain PyTorch loop over the same in-memory uint8 tensors (the practical limit);
  (c) torchvision: `datasets.MNIST` + `transforms.ToTensor()` + `DataLoader(batch_size, shuffle=True)`,
      the loop of (b).
An epoch is the training pass over the 55k training images plus the ELBO over the 5k validation
images, as in (a). Variants alternate, `--repeats` times; each run's mean epoch time counts once
(so a run's epochs that draw more pictures count with their share, as in a long run: use
`--epochs 5` for the default's latent figures every 5th epoch); medians are printed with the ratios
(a)/(b) and (c)/(a) of epoch time, the peak resident memory of each (measured in a fresh
subprocess per variant), and evaluation throughput: the test ELBO and IWAE with k=1000.

Any network: `python -m vae_lightning.bench model=conv` times the convolutional model, and (b) and (c)
train the same `ConvEncoder`/`ConvDecoder` (built from the same config and seed) in the bare loop. The
bare loop is the Bernoulli likelihood with the N(0, I) prior, the defaults.

`--breakdown` adds two more versions of (a), to show what its time is spent on: without the
prior-grid callback, and Lightning alone (no callbacks, logger, progress bar or checkpoints).

(b) and (c) run as in a process that never imported Lightning: importing it sets
PYTORCH_NVML_BASED_CUDA_CHECK=1, which makes every Adam step load the NVML library (see
`train.cached_cuda_check`, which spares (a) that cost on the CPU).

Device: (b), (c) and the throughput run where (a)'s Trainer runs: on the GPU under `trainer.accelerator=gpu`
(or `auto` with CUDA present), with (b)'s images moved there once and (c)'s batches moved per step, as a
conventional loop does; a GPU epoch ends with a synchronisation, so its time is the kernels' too.
"""

from __future__ import annotations

import json
import logging
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from argparse import Namespace
from collections.abc import Callable
from functools import cached_property
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import Tensor, nn
from torch.nn.functional import binary_cross_entropy_with_logits
from torch.utils.data import DataLoader, Subset
from torchvision import transforms

from vae_lightning import cli, metrics
from vae_lightning.checkpoint import build_module
from vae_lightning.config import CONF_DIR, compose_config
from vae_lightning.data import DATASETS, MNISTDataModule, locate, split_indices
from vae_lightning.errors import build
from vae_lightning.train import cached_cuda_check, train

EXAMPLES = (
    "python -m vae_lightning.bench",
    "python -m vae_lightning.bench --epochs 5 --repeats 3 data.root=/data/mnist",
    "python -m vae_lightning.bench --breakdown --iwae-images 0",
    "python -m vae_lightning.bench --repeats 1 data.batch_size=256 trainer.accelerator=cpu",
)
VARIANTS = ("a", "b", "c")
NAMES = {"a": "(a) vae_lightning.train", "b": "(b) bare PyTorch loop", "c": "(c) torchvision pipeline",
         "a_no_grid": "(a) without prior_grid", "a_lightning": "(a) Lightning alone"}


def _no_grid(cfg: DictConfig) -> None:
    cfg.callbacks.pop("prior_grid", None)


def _lightning_alone(cfg: DictConfig) -> None:
    cfg.callbacks, cfg.logger = {}, {}
    cfg.trainer.update(enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False)


# The breakdown's versions of (a): changes to the composed config of the command
BREAKDOWN: dict[str, Callable[[DictConfig], None]] = {"a_no_grid": _no_grid, "a_lightning": _lightning_alone}


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
    module = build_module(cfg).to(device)
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
        cfg = compose_config("train", [*self.overrides, "test=false"], self.workdir / f"run_{self.runs}")
        with open_dict(cfg):
            cfg.trainer.enable_model_summary = False  # the benchmark prints its own table only
            if change is not None:
                change(cfg)
            cfg.callbacks = {**(cfg.callbacks or {}), "bench_timer": {"_target_": f"{__name__}.EpochTimer"}}
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
        module = build_module(self.cfg).to(device).eval()
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
                    metrics.iwae_log_likelihood(module, batch.unsqueeze(1), [1000], iwae.chunk_size, seed=i)
                _synchronize(device)
                rates["IWAE k=1000"] = len(x) / (time.perf_counter() - start)
        return rates


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
    module = __spec__.name if __spec__ is not None else __name__  # "vae_lightning.bench" also under -m
    out = subprocess.run([sys.executable, "-m", module, "--only", variant, "--epochs", str(epochs),
                          "--repeats", "1", *overrides], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mb"]


def argument_parser() -> cli.ArgumentParser:
    """The command's flags; its help lists train's config groups, which the overrides choose from."""
    groups = f"Overrides: those of python -m vae_lightning.train, e.g. its config groups\n{cli.command_groups('train')}"
    parser = cli.ArgumentParser("python -m vae_lightning.bench", __doc__, EXAMPLES, groups=groups)
    parser.add_argument("--epochs", type=int, default=1, help="epochs per timed run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each variant, alternating")
    parser.add_argument("--breakdown", action="store_true",
                        help="also time (a) without the prior grids and Lightning alone")
    parser.add_argument("--iwae-images", type=int, default=500,
                        help="images for the IWAE k=1000 throughput (0: skip it)")
    parser.add_argument("--only", choices=VARIANTS, help="run one variant and print its peak memory as JSON")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the train config, e.g. data.root=...")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser()
    args = parser.parse_args(argv)
    for flag, value, least in (("--epochs", args.epochs, 1), ("--repeats", args.repeats, 1),
                               ("--iwae-images", args.iwae_images, 0)):
        if value < least:
            parser.error(f"{flag}={value} is invalid: must be an integer >= {least}")
    # Lightning's own messages (devices found, seed, tips) would bury the table
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    cli.run_plain(lambda: benchmark(args))


def benchmark(args: Namespace) -> None:
    """Time the variants as `args` say and print the table."""
    variants = [*VARIANTS, *(BREAKDOWN if args.breakdown else [])]
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(args.overrides, Path(tmp))
        if args.only:
            reset = reset_peak_memory()
            bench.run(args.only, args.epochs)
            print(json.dumps({"peak_rss_mb": peak_memory_since_reset(reset)}))
            return
        times: dict[str, list[float]] = {v: [] for v in variants}
        for repeat in range(args.repeats):
            for variant in variants:
                times[variant].append(statistics.fmean(bench.run(variant, args.epochs)))
                print(f"run {repeat + 1}/{args.repeats} {NAMES[variant]}: {times[variant][-1]:.2f} s per epoch",
                      file=sys.stderr)
        throughput = bench.eval_throughput(args.iwae_images)
    n_train = len(bench.train_images)
    median = {v: statistics.median(t) for v, t in times.items()}
    print(f"\n{n_train} training + {len(bench.val_images)} validation images per epoch, batch {bench.batch_size}, "
          f"{torch.get_num_threads()} threads, device {bench.device}, {args.repeats} runs of {args.epochs} epoch(s) "
          "per variant, epoch s = median over the runs of their mean epoch time")
    print(f"{'variant':28} {'epoch s (median)':>17} {'samples/s':>10} {'vs (b)':>7} {'peak RSS MB':>12}")
    for v in variants:
        memory = f"{peak_memory_mb(v, 1, args.overrides):12.0f}" if v in VARIANTS else f"{'-':>12}"
        print(f"{NAMES[v]:28} {median[v]:17.2f} {n_train / median[v]:10.0f} {median[v] / median['b']:7.3f} {memory}")
    print(f"(a) outside its epochs (setup, sanity check, pictures' setup, teardown; test=false): "
          f"{statistics.median(bench.outside_epochs):.2f} s per run")
    print(f"(a)/(b) epoch time: {median['a'] / median['b']:.3f}   (target <= 1.10)")
    print(f"(c)/(a) epoch time: {median['c'] / median['a']:.3f}   (target >= 1.6)")
    for name, rate in throughput.items():
        print(f"{name} throughput: {rate:.0f} images/s")
    if not all(math.isfinite(m) for m in median.values()):
        raise SystemExit("a variant produced no timing")

if __name__ == "__main__":
    main()
