"""Where a page's runs come from: a checkpoint's test images (its own data config, read from a data root), the
finished runs of a multirun folder with their configuration and seed, and the lines that describe a run; the page
that training writes into its run folder (`write_trained_page`, which the train command hands to training)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from torch import Tensor

from vae_lightning.checkpoints import load_trained
from vae_lightning.core.building import build
from vae_lightning.core.checks import Check
from vae_lightning.core.errors import UserError
from vae_lightning.explorer.page import page_html, write_page
from vae_lightning.explorer.view import PageSettings, check_memory, run_view
from vae_lightning.latent import LatentDistribution
from vae_lightning.latent.sampler_sets import build_samplers
from vae_lightning.model import VAEModule
from vae_lightning.runs.folders import configuration, split_override, swept_keys
from vae_lightning.runs.sweep import job_dirs, read_status

PAGE_NAME = "explore.html"
# explore's `sweep`
SWEEP = Check(lambda v: isinstance(v, str) and v.strip() != "",
              "a multirun folder, e.g. sweep=logs/train/multiruns/<timestamp>")


def load_test_images(stored_data: dict[str, Any], root: str) -> tuple[Tensor, Tensor]:
    """The test images [N, 1, 28, 28] in [0, 1] as the model's data config serves them (binarized once for
    `binarize=dynamic`) and their labels, read from `root`; one line naming data.root when they are not there."""
    from vae_lightning.data import DataError

    data = build(stored_data, "data", root=root, download=False)
    try:
        data.prepare_data()
        data.setup("test")
    except DataError as err:
        raise UserError(f"the page shows the test images, which data.root={root} does not have; set data.root (or "
                        f"VAE_DATA_ROOT) to the folder with MNIST/raw/*.gz ({err})") from err
    test = data.splits["test"]
    return test.images.unsqueeze(1).float().div(255), test.labels


def describe(module: VAEModule, stored: dict[str, Any], step: int) -> list[str]:
    """The lines under a run's title: what it trained and how long."""
    data = stored.get("data", {})
    return [f"prior {module.prior.label}; {module.architecture}; likelihood {module.likelihood.name}; "
            f"{module.latent_dim}-D latent; {step} training steps; data {data.get('dataset', 'mnist')} "
            f"(binarize {data.get('binarize', 'none')})"]


def checkpoint_view(checkpoint: Path, samplers: Mapping[str, Any], settings: PageSettings,
                    test_images: Callable[[dict[str, Any]], tuple[Tensor, Tensor]], title: str) -> dict[str, Any]:
    """The view of a trained checkpoint: its test images (`test_images(its stored data config)`), the draws of the
    sampler configs `samplers` that need no fitting (a fitted one's density is the aggregate layer already) and
    of the model's prior."""
    module, stored, step = load_trained(checkpoint)
    if module.latent_dim < 2:
        raise UserError(f"{checkpoint} has a 1-D latent: the explorer shows latent planes, of 2-D and larger "
                        "latents; a 1-D latent has none")
    check_memory(settings, module.latent_dim)
    images, labels = test_images(stored["data"])
    drawn = [s for s in build_samplers(samplers, module.latent_dim, module.prior)
             if type(s).fit is LatentDistribution.fit]
    return run_view(module, images, labels, drawn, settings, title, describe(module, stored, step))


def write_trained_page(output: Path, cfg: Any, datamodule: Any) -> Path | None:
    """`<run>/explore.html`, the page of a run's last checkpoint just after training (as `python -m
    vae_lightning.explore ckpt_path=<run>` writes it, from the test images already in memory); None for a run
    without a last checkpoint (debug=fdr) or with a 1-D latent."""
    last = output / "checkpoints" / "last.ckpt"
    if not last.is_file() or cfg.model.latent_dim < 2:  # no plane to show in a 1-D latent
        return None
    settings = PageSettings()
    test = datamodule.splits["test"]
    images = (test.images[: settings.n_points].unsqueeze(1).float().div(255), test.labels[: settings.n_points])
    return write_run_page(output, last, cfg.get("samplers") or {}, settings, lambda _: images, output / PAGE_NAME)


def write_run_page(run: Path, checkpoint: Path, samplers: Mapping[str, Any], settings: PageSettings,
                   test_images: Callable[[dict[str, Any]], tuple[Tensor, Tensor]], output: Path) -> Path:
    """The page of one run (`checkpoint_view`), written to `output`."""
    view = checkpoint_view(checkpoint, samplers, settings, test_images, run.name)
    return write_page(output, page_html(f"{run.name}: latent space", [view], note=str(run.absolute())))


@dataclass(frozen=True)
class SweepRun:
    folder: Path
    config: str
    seed: int


def sweep_runs(folder: Path, seeds: Sequence[int] | None = None) -> list[SweepRun]:
    """The finished runs of a multirun folder (status completed, with a checkpoint), by job, each with its
    configuration (its overrides of the keys the sweep varies, seed aside) and seed; UserError when it is not a
    multirun folder or none of its runs finished (at one of `seeds`, when given)."""
    form = "give a multirun folder such as sweep=logs/train/multiruns/<timestamp>"
    if not folder.is_dir():
        raise UserError(f"sweep={folder} is not a folder; {form}")
    jobs = job_dirs(folder)
    if not jobs:
        raise UserError(f"sweep={folder} holds no sweep jobs; {form} (one run: ckpt_path=<run folder>)")
    swept = swept_keys(folder / "multirun.yaml")  # a configuration is named by the keys the sweep varies
    runs = []
    for job in jobs:
        status = read_status(job) or {}
        if status.get("status") != "completed" or not (job / "checkpoints" / "last.ckpt").is_file():
            continue
        overrides = [str(o) for o in OmegaConf.load(job / ".hydra" / "overrides.yaml")]
        seed = OmegaConf.load(job / ".hydra" / "config.yaml").get("seed", 0)
        label = [o for o in configuration(overrides) if swept is None or split_override(o)[0] in swept]
        if seeds is None or int(seed) in seeds:
            runs.append(SweepRun(job, " ".join(label) or "(the defaults)", int(seed)))
    if not runs:
        at = "" if seeds is None else f" at seeds={list(seeds)}"
        raise UserError(f"sweep={folder} has no finished run{at}: none of its {len(jobs)} jobs completed with a "
                        "checkpoint; wait for its jobs to finish, or give another multirun folder")
    return runs


def write_sweep_page(folder: Path, runs: Sequence[SweepRun], samplers: Mapping[str, Any], settings: PageSettings,
                     test_images: Callable[[dict[str, Any]], tuple[Tensor, Tensor]], output: Path) -> Path:
    """The page of a sweep's finished `runs` (`sweep_runs`), with a selector of configurations and, in each, of
    seeds, written to `output`."""
    views = [checkpoint_view(r.folder / "checkpoints" / "last.ckpt", samplers, settings, test_images,
                             f"{r.folder.name}: {r.config}, seed {r.seed}") for r in runs]
    configs: dict[str, list[dict[str, int]]] = {}
    for index, r in enumerate(runs):
        configs.setdefault(r.config, []).append({"seed": r.seed, "view": index})
    selectors = [{"label": label, "runs": sorted(entries, key=lambda e: e["seed"])}
                 for label, entries in configs.items()]
    return write_page(output, page_html(f"{folder.name}: {len(runs)} runs, {len(configs)} configurations", views,
                                        selectors, note=str(folder.absolute())))


def check_writable(output: Path, key: str = "output") -> None:
    """UserError unless `output` can be written: not a folder, and its nearest existing folder writable (the page
    is written last, so a refused command writes nothing)."""
    if output.is_dir():
        raise UserError(f"{key}={output} is a folder; give the page's file name, e.g. {key}={output / PAGE_NAME}")
    parent = output.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{key}={output} cannot be written: {parent} is not a folder this user can write to; "
                        f"choose {key}= in a folder you can write")
