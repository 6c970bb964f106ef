"""Training speed of our path against a bare PyTorch loop and the conventional torchvision pipeline.

    python -m vae_lightning.bench [--epochs 1] [--repeats 3] [--breakdown] [--iwae-images 500] [override ...]

In one process, on the same data, network, batch size, optimizer and seed, it times epochs of
  (a) ours: `vae_lightning.runs.training.train` on the composed default config (Trainer, our datamodule,
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

`--members 1,2,4,8,16` adds what a seed costs: epochs of K-member runs (`train 'seeds=[...]'`, K seeds of one
configuration as one stacked model, runs/members.py) on all the process's threads, alternating with the baseline
the study trained its seeds with (two single runs side by side, one thread each, in two fresh processes), as
seconds per seed-epoch, and one line `per-seed cost at K=8 vs baseline: <ratio>` (the largest K when 8 is not
among them). `--evaluate-cost` trains one single run at one thread and evaluates it at the study's settings
(iwae.k=100, n_samples=10000, sampler_set=study_fitted, all test images, one thread), and prints
`evaluate vs train, one study job: <ratio>`: evaluation seconds over 20 epochs' training seconds (evaluate
overrides may follow the flag: `--evaluate-cost classifier.epochs=1`).

Device: (b), (c) and the throughput run where (a)'s Trainer runs: on the GPU under `trainer.accelerator=gpu`
(or `auto` with CUDA present), with (b)'s images moved there once and (c)'s batches moved per step, as a
conventional loop does; a GPU epoch ends with a synchronisation, so its time is the kernels' too.
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import sys
import tempfile
from argparse import Namespace
from pathlib import Path
from typing import Any

from vae_lightning import cli

HELP = """\
Times epochs of training three ways on the same data, network, batch size, optimizer and seed: (a) this
project's training (what python -m vae_lightning.train runs), (b) a bare PyTorch loop over the same
in-memory images (the practical limit) and (c) the conventional torchvision pipeline (datasets.MNIST +
ToTensor + DataLoader). It prints seconds per epoch, the ratios (a)/(b) and (c)/(a), the peak memory of
each, and the evaluation throughput. Variants alternate within one process, so compare the ratios, not
seconds from different runs. Reads MNIST from data.root (VAE_DATA_ROOT); writes nothing that stays.
"""
EXAMPLES = (
    "python -m vae_lightning.bench",
    "python -m vae_lightning.bench --epochs 5 --repeats 3 data.root=/data/mnist",
    "python -m vae_lightning.bench --breakdown --iwae-images 0",
    "python -m vae_lightning.bench --repeats 1 data.batch_size=256 trainer.accelerator=cpu",
    "python -m vae_lightning.bench --iwae-images 0 --members 1,2,4,8,16 --evaluate-cost",
)
VARIANTS = ("a", "b", "c")
BREAKDOWN = ("a_no_grid", "a_lightning")  # (a) without the prior grids, (a) as Lightning alone


def argument_parser() -> cli.ArgumentParser:
    """The command's flags; its help lists train's config groups, which the overrides choose from."""
    groups = ("Config groups of python -m vae_lightning.train, whose overrides come after the flags ([current]):\n"
              + cli.command_groups("train"))
    parser = cli.ArgumentParser("python -m vae_lightning.bench", HELP, EXAMPLES, groups=groups)
    parser.add_argument("--epochs", type=int, default=1, help="epochs per timed run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each variant, alternating")
    parser.add_argument("--breakdown", action="store_true",
                        help="also time (a) without the prior grids and Lightning alone")
    parser.add_argument("--iwae-images", type=int, default=500,
                        help="images for the IWAE k=1000 throughput (0: skip it)")
    parser.add_argument("--members", type=members_list, default=None, metavar="K,...",
                        help="also time K-member runs (seeds as one stacked model) against single runs two at a "
                             "time, e.g. 1,2,4,8,16")
    parser.add_argument("--evaluate-cost", nargs="*", metavar="OVERRIDE", default=None,
                        help="also time one study job's evaluation against its training (minutes), with these "
                             "evaluate overrides after the study's; put the train overrides before this flag")
    parser.add_argument("--only", choices=VARIANTS, help="run one variant and print its peak memory as JSON")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the train config, e.g. data.root=...")
    return parser


def members_list(text: str) -> list[int]:
    """--members: member counts, each an integer >= 1."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is invalid: must be member counts >= 1 separated by commas, "
                                         "e.g. 1,2,4,8")
    return values


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser()
    args = parser.parse_args(argv)
    for flag, value, least in (("--epochs", args.epochs, 1), ("--repeats", args.repeats, 1),
                               ("--iwae-images", args.iwae_images, 0)):
        if value < least:
            parser.error(f"{flag}={value} is invalid: must be an integer >= {least}")
    cli.run_plain(lambda: benchmark(args))


def benchmark(args: Namespace) -> None:
    """Time the variants as `args` say and print the table."""
    import json

    import torch

    from vae_lightning.benchmark import (
        NAMES,
        STUDY_EPOCHS,
        Bench,
        peak_memory_mb,
        peak_memory_since_reset,
        reset_peak_memory,
        study_evaluation_seconds,
    )

    # Lightning's own messages (devices found, seed, tips) would bury the table; its loggers are set up
    # when it is first imported (just above), so they are quietened afterwards
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    variants = [*VARIANTS, *(BREAKDOWN if args.breakdown else [])]
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(args.overrides, Path(tmp))
        if args.only:
            reset = reset_peak_memory()
            epochs = bench.run(args.only, args.epochs)
            print(json.dumps({"peak_rss_mb": peak_memory_since_reset(reset), "epoch_s": statistics.fmean(epochs)}))
            return
        times: dict[str, list[float]] = {v: [] for v in variants}
        for repeat in range(args.repeats):
            for variant in variants:
                times[variant].append(statistics.fmean(bench.run(variant, args.epochs)))
                print(f"run {repeat + 1}/{args.repeats} {NAMES[variant]}: {times[variant][-1]:.2f} s per epoch",
                      file=sys.stderr)
        per_seed = per_seed_costs(bench, args) if args.members else None
        evaluation = (study_evaluation_seconds(bench, args.epochs, args.evaluate_cost)
                      if args.evaluate_cost is not None else None)
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
    if per_seed is not None:
        print_per_seed(*per_seed, args)
    if evaluation is not None:
        eval_s, epoch_s = evaluation
        print(f"one study job at one thread: evaluate {eval_s:.0f} s, training {STUDY_EPOCHS} x {epoch_s:.1f} s = "
              f"{STUDY_EPOCHS * epoch_s:.0f} s")
        print(f"evaluate vs train, one study job: {eval_s / (STUDY_EPOCHS * epoch_s):.2f}   (target <= 1)")
    if not all(math.isfinite(m) for m in median.values()):
        raise SystemExit("a variant produced no timing")


def per_seed_costs(bench: Any, args: Namespace) -> tuple[list[float], dict[int, list[float]]]:
    """Per-seed seconds per epoch of the baseline (two single runs side by side, one thread each) and of each K,
    alternating `--repeats` times."""
    from vae_lightning.benchmark import baseline_epoch_seconds, member_epoch_seconds

    baseline: list[float] = []
    members: dict[int, list[float]] = {k: [] for k in args.members}
    for repeat in range(args.repeats):
        pair = baseline_epoch_seconds(args.epochs, args.overrides)
        baseline.append(statistics.fmean(pair) / 2)
        print(f"run {repeat + 1}/{args.repeats} baseline (2 single runs, 1 thread each): "
              f"{baseline[-1]:.2f} s per seed-epoch", file=sys.stderr)
        for k in args.members:
            members[k].append(member_epoch_seconds(bench, k, args.epochs) / k)
            print(f"run {repeat + 1}/{args.repeats} K={k} members: {members[k][-1]:.2f} s per seed-epoch",
                  file=sys.stderr)
    return baseline, members


def print_per_seed(baseline: list[float], members: dict[int, list[float]], args: Namespace) -> None:
    import torch

    base = statistics.median(baseline)
    print(f"\nper-seed cost (seconds per seed-epoch, median of {args.repeats} runs): K-member runs on "
          f"{torch.get_num_threads()} threads against the baseline, single runs two at a time, one thread each")
    print(f"{'runs':28} {'s per seed-epoch':>17} {'vs baseline':>12}")
    print(f"{'baseline (2 single runs)':28} {base:17.2f} {1.0:12.3f}")
    for k, times in members.items():
        print(f"{f'K={k} members':28} {statistics.median(times):17.2f} {statistics.median(times) / base:12.3f}")
    k = 8 if 8 in members else max(members)
    print(f"per-seed cost at K={k} vs baseline: {statistics.median(members[k]) / base:.3f}   (target <= 0.5)")

if __name__ == "__main__":
    main()
