"""The whole evaluation of a trained VAE, as `python -m vae_lightning.evaluate` runs it, and of many
(`evaluate_jobs`: `report --evaluate` for every job of a sweep, several processes at once).

This is the orchestration above the estimators of `evaluation/`: reading the checkpoint, the test set, the
folder policies (an earlier evaluation is not replaced unasked), the classifier, and logging to the run's
trackers. The estimators get typed settings built once from the config (evaluation/settings.py) and the
numbers come back as an `Evaluation` (evaluation/results.py).

Likelihood on the test set, in the data mode the model was trained on (the grayscale test images,
or for `binarize=dynamic` the fixed-seed binarized test set the run validated on): elbo (recon,
kl), nll_iwae for each k, nll_exact for small latents, active units and KL per dimension. Sample
quality per sampler: decoder means of `n_samples` draws, scored by the cached classifier against
the grayscale test images, which are also the reference row.

Writes `<eval_dir>/metrics.json` (last, so its presence means a complete evaluation), `report.md`
and figures (evaluation/results.py), and logs the metric table's tracker scalars (evaluation/metrics.py) and
the figures with the run's hyperparameters to the trackers the run trained with (its saved `logger` section:
TensorBoard, CSV, the same MLflow run; tracking/) when `log_to_trackers` is true. The checkpoint is
only read.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from vae_lightning.checkpoints import (
    CHECKPOINT_KEY,
    CKPT_PATH,
    load_checkpoint,
    module_from_checkpoint,
    resolve_checkpoint,
)
from vae_lightning.core.building import build
from vae_lightning.core.checks import (
    COUNT,
    NON_NEGATIVE,
    NON_NEGATIVE_COUNT,
    POSITIVE,
    SEED,
    Check,
    check_settings,
    integer,
    number,
)
from vae_lightning.core.devices import pick_device
from vae_lightning.core.errors import ParameterError, UserError
from vae_lightning.core.files import write_text_atomically
from vae_lightning.core.memory import FLOAT_BYTES, check_fits
from vae_lightning.core.progress import no_track, progress_bar
from vae_lightning.data import MNISTDataModule, load_split, locate
from vae_lightning.evaluation import classifier
from vae_lightning.evaluation.classifier import classify, load_or_train
from vae_lightning.evaluation.likelihood import likelihood_metrics
from vae_lightning.evaluation.mechanisms import mechanism_metrics
from vae_lightning.evaluation.metrics import compute_test_metrics
from vae_lightning.evaluation.quality import clarity, reference_of, sample_quality
from vae_lightning.evaluation.results import Evaluation, results_markdown, save_figures, tracker_scalars
from vae_lightning.evaluation.settings import IWAE_K, EvaluationSettings
from vae_lightning.latent.sampler_sets import build_samplers, same_distribution
from vae_lightning.model import Likelihood
from vae_lightning.runs.earlier import refuse_replacing
from vae_lightning.runs.folders import run_dir_of, run_loggers
from vae_lightning.tracking import hyperparameters, log_evaluation

log = logging.getLogger(__name__)
T = TypeVar("T")

# evaluate's per-image results beside metrics.json (docs: Evaluation)
PER_IMAGE_FILE = "per_image.csv"

# The evaluate config's values, checked before the checkpoint is read; `n_images` and `iwae.k` are
# checked against the test set.
SETTINGS: dict[str, Check] = {
    "ckpt_path": CKPT_PATH, "batch_size": COUNT, "n_samples": COUNT, "seed": SEED,
    "iwae.k": IWAE_K, "iwae.images_per_batch": COUNT, "iwae.chunk_size": COUNT,
    "exact.max_latent_dim": NON_NEGATIVE_COUNT, "exact.points_per_dim": integer(2),
    "exact.max_points_per_dim": integer(2), "exact.chunk_size": COUNT,
    "exact.tolerance": POSITIVE, "exact.tail": number(0, 0.5, above=True),
    "active_units_threshold": NON_NEGATIVE,
    "mechanisms.holes.ratio": number(0, 1, above=True, below=True), "mechanisms.holes.n_draws": COUNT,
    "mechanisms.gaps.n_images": NON_NEGATIVE_COUNT, "mechanisms.gaps.steps": COUNT,
    "mechanisms.gaps.n_draws": COUNT, "mechanisms.gaps.lr": POSITIVE,
    "mechanisms.precision_recall.n_images": NON_NEGATIVE_COUNT, "mechanisms.precision_recall.k": COUNT,
    **classifier.SETTINGS,
}


class SharedInputs:
    """What the evaluations of many checkpoints (a sweep's jobs) share, made once and kept: the data
    modules (test set and training images of each data config), the classifier and the test images'
    classifier features. Keys are the settings that make each one, so a different data root, data
    config or classifier config makes its own."""

    def __init__(self) -> None:
        self._made: dict[str, Any] = {}

    def get(self, key: Any, make: Callable[[], T]) -> tuple[T, bool]:
        """The thing made by `make` for `key` (made now if new), and whether it was made now."""
        name = json.dumps(key, sort_keys=True, default=str)
        new = name not in self._made
        if new:
            self._made[name] = make()
        return self._made[name], new


def data_module(stored_data: dict[str, Any], cfg: DictConfig, shared: SharedInputs) -> MNISTDataModule:
    """The model's data module (its stored data config, `cfg.data.root`), its splits loaded."""
    def make() -> MNISTDataModule:
        data: MNISTDataModule = build(stored_data, "data", root=cfg.data.root, download=cfg.data.download)
        data.prepare_data()
        data.setup("test")
        return data

    return shared.get(("data", stored_data, str(cfg.data.root), cfg.data.download), make)[0]


def load_test_set(stored_data: dict[str, Any], cfg: DictConfig, device: torch.device,
                  shared: SharedInputs | None = None) -> tuple[Tensor, MNISTDataModule]:
    """The first `cfg.n_images` test images as the model's data module serves them (float [N, 1, 28, 28];
    binarized once with its fixed seed for `binarize=dynamic`), read from `cfg.data.root`, and the module."""
    data = data_module(stored_data, cfg, shared or SharedInputs())
    test = data.splits["test"]
    n = len(test) if cfg.n_images is None else cfg.n_images
    integer(1, len(test)).or_null("all").check("n_images", cfg.n_images)
    x, _ = data.on_after_batch_transfer((test.images[:n].to(device), test.labels[:n]), 0)
    return x, data


def likelihood_units(pixel_likelihood: Likelihood, binarize: str) -> str:
    """What the likelihood numbers are: a normalised likelihood of the binarized test images, a density of
    gray images (continuous Bernoulli), or the Bernoulli expression on gray targets, which is neither."""
    if binarize == "dynamic":
        return f"{pixel_likelihood.name} log-likelihood of the binarized test images."
    if pixel_likelihood.normalised_on_gray:
        return (f"Grayscale targets under the {pixel_likelihood.name} likelihood: a normalised density of gray "
                "images in [0, 1]^784 (nats), comparable with other densities of the same images.")
    return (f"Grayscale targets: the {pixel_likelihood.name} 'likelihood' is -BCE against gray pixels (what the "
            "model optimised), not a normalised density, so compare these numbers within this study only "
            "(likelihood=continuous_bernoulli gives a density).")


def check_sizes(cfg: DictConfig, latent_dim: int, n_images: int) -> None:
    """Refuse, before any work, sizes whose tensors would not fit in memory (core.memory): the samples scored
    per sampler (latents, decoded images, classifier features), an IWAE chunk of decoded images, the
    quadrature grid and one chunk of its pairwise likelihoods."""
    check_fits("n_samples", cfg.n_samples, FLOAT_BYTES * (latent_dim + 784 + 138),
               what="of latents, decoded images and classifier outputs ")
    check_fits("iwae.chunk_size", cfg.iwae.chunk_size, 3 * FLOAT_BYTES * 784 * min(cfg.iwae.images_per_batch, n_images),
               what="of decoded images (chunk_size x images_per_batch x 784 floats, three times) ")
    if cfg.mechanisms.enabled and cfg.mechanisms.gaps.n_images > n_images:
        raise ParameterError("mechanisms.gaps.n_images", cfg.mechanisms.gaps.n_images,
                             f"at most the {n_images} test images evaluated (0: no bound gaps)")
    if cfg.mechanisms.enabled:  # the aggregate posterior's densities of one chunk of draws against every image
        check_fits("mechanisms.holes.n_draws", cfg.mechanisms.holes.n_draws, 8 * (latent_dim + 784 + 4),
                   what="of prior draws, their decoded images and densities ")
    if latent_dim <= cfg.exact.max_latent_dim:
        largest = max(cfg.exact.points_per_dim, cfg.exact.max_points_per_dim)
        key = "exact.max_points_per_dim" if largest == cfg.exact.max_points_per_dim else "exact.points_per_dim"
        check_fits(key, largest, 8 * (latent_dim + 2), what=f"for a {largest}^{latent_dim}-point grid ",
                   power=latent_dim)
        check_fits("exact.chunk_size", cfg.exact.chunk_size, FLOAT_BYTES * (n_images + 784) * 2,
                   what="of pairwise likelihoods (chunk_size x test images) ")


def write_per_image(path: Path, labels: Tensor, columns: dict[str, Tensor]) -> None:
    """One CSV row per test image: its index in the test set, its label and its per-image values (nats),
    written atomically."""
    lines = [",".join(["index", "label", *columns])]
    values = torch.stack([c.double().cpu() for c in columns.values()], dim=1).tolist()
    lines += [",".join([str(i), str(int(label)), *(repr(v) for v in row)])
              for i, (label, row) in enumerate(zip(labels.tolist(), values, strict=True))]
    text = "\n".join(lines) + "\n"
    write_text_atomically(path, text)


def record_config(cfg: DictConfig, folder: Path) -> None:
    """The evaluation's config and command-line overrides in `folder` (config.yaml, overrides.yaml), as Hydra
    would have written them before the task: written only after the evaluation succeeded."""
    from hydra.core.hydra_config import HydraConfig

    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    for name, node in (("config.yaml", cfg), ("overrides.yaml", OmegaConf.create(overrides))):
        text = OmegaConf.to_yaml(node)
        write_text_atomically(folder / name, text)


def run_seed(run: Path | None) -> int | None:
    """The `seed` a run folder trained with (its saved config), None without a run folder."""
    config = run / ".hydra" / "config.yaml" if run is not None else None
    return OmegaConf.load(config).get("seed") if config is not None and config.is_file() else None


def evaluate_checkpoint(cfg: DictConfig, shared: SharedInputs | None = None) -> Evaluation:
    """Everything `python -m vae_lightning.evaluate` computes and writes, for the composed evaluate config
    `cfg`; returns the Evaluation (`results_markdown` of its `as_json()` is what the command prints). `shared`
    keeps what the evaluations of several checkpoints have in common (`evaluate_jobs` passes one)."""
    shared = shared or SharedInputs()
    if not cfg.get("ckpt_path"):
        raise UserError("ckpt_path is required: give a run folder (logs/train/runs/<timestamp>) or a .ckpt file")
    check_settings(cfg, SETTINGS)
    settings = EvaluationSettings.from_config(cfg)
    ckpt = resolve_checkpoint(cfg.ckpt_path)
    checkpoint = load_checkpoint(ckpt)
    stored, step = checkpoint[CHECKPOINT_KEY], int(checkpoint.get("global_step", 0))
    device = pick_device(cfg.device)
    track = progress_bar if cfg.progress else no_track
    module = module_from_checkpoint(checkpoint).to(device)
    del checkpoint
    x, data = load_test_set(stored["data"], cfg, device, shared)
    check_sizes(cfg, module.latent_dim, len(x))
    with torch.random.fork_rng(devices=[]):  # the samplers' settings checked before anything is computed
        build_samplers(cfg.samplers, module.latent_dim, module.prior)
    refuse_replacing(Path(cfg.eval_dir), cfg, ckpt, step)  # an earlier, different evaluation is not replaced unasked

    timings: dict[str, float] = {}
    with torch.no_grad():
        lik, per_image = likelihood_metrics(module, x, settings.likelihood, track, timings)
        registered, registered_per_image = compute_test_metrics(module, x)
    per_image.update(registered_per_image)
    labels = data.splits["test"].labels[: len(x)]
    start = time.perf_counter()
    classifier_key = ("classifier", OmegaConf.to_container(cfg.classifier, resolve=True), str(cfg.data.root),
                      data.dataset, str(device))
    (classifier, record), made = shared.get(classifier_key, lambda: load_or_train(
        cfg.classifier, cfg.data.root, data.dataset, cfg.data.download, device, track=track))
    reference, made_reference = shared.get(("reference", classifier_key, cfg.batch_size), lambda: reference_of(
        classifier, load_split(locate(cfg.data.root, data.dataset, download=False), data.dataset, train=False)[0],
        cfg.batch_size))
    if made or made_reference:  # an evaluation that reuses them did not spend this time
        timings["classifier"] = time.perf_counter() - start
    start = time.perf_counter()
    samplers = [(s, same_distribution(s, module.prior))
                for s in build_samplers(cfg.samplers, module.latent_dim, module.prior)]
    rows = sample_quality(module, samplers, classifier, reference, data.fit_images, settings.quality, track, timings)
    timings["sample_quality"] = time.perf_counter() - start
    mechanisms = None
    if settings.mechanisms is not None:  # why a prior wins (evaluation/mechanisms.py)
        def clarity_of(images: torch.Tensor) -> float:
            return clarity(classify(classifier, images, cfg.batch_size)[1])

        mechanisms = mechanism_metrics(module, x, per_image.get("nll_exact"), clarity_of, settings.mechanisms,
                                       cfg.batch_size, cfg.seed, timings)
        if lik["nll_exact"] is not None:  # how far the bounds the field reports are from the exact likelihood
            mechanisms["iwae_gap"] = {k: v - lik["nll_exact"]["value"] for k, v in lik["nll_iwae"].items()}

    units = likelihood_units(module.likelihood, data.binarize)
    evaluation = Evaluation(
        checkpoint=str(ckpt), global_step=step, prior=module.prior.label, latent_dim=module.latent_dim,
        model=module.architecture, pixel_likelihood=module.likelihood.name,
        data={"dataset": data.dataset, "binarize": data.binarize, "n_images": len(x), "units": units},
        active_units_threshold=cfg.active_units_threshold, likelihood=lik,
        per_image={"file": PER_IMAGE_FILE, "rows": len(x), "columns": ["index", "label", *per_image]},
        sample_quality={"n_samples": cfg.n_samples, "n_test": reference.n_images, "classifier": record, "rows": rows},
        mechanisms=mechanisms, metrics=registered, timings_s=timings)
    results = evaluation.as_json()
    text = results_markdown(results)
    out = Path(cfg.eval_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = save_figures(results, out)
    write_text_atomically(out / "report.md", text + "\n" + "\n".join(f"![{f}]({f})" for f in figures) + "\n")
    if cfg.log_to_trackers:
        run = run_dir_of(ckpt)
        params = hyperparameters(module, repr(build(stored["annealing"], "annealing")),
                                 OmegaConf.select(OmegaConf.create(stored), "model.optimizer.lr"), run_seed(run))
        log_evaluation(run_loggers(run, out), step, tracker_scalars(results), params, [out / f for f in figures])
    write_per_image(out / PER_IMAGE_FILE, labels, per_image)
    record_config(cfg, out / ".hydra")
    payload = json.dumps(results, indent=2) + "\n"  # last and atomically: a metrics.json is a complete evaluation
    write_text_atomically(out / "metrics.json", payload)
    log.info("Wrote %s", out)
    return evaluation


def evaluate_jobs(paths: Sequence[Path], overrides: Sequence[str], jobs: int = 1) -> None:
    """Evaluate each run folder in `paths` (with these evaluate command-line `overrides`; results in `<run>/eval/`),
    `jobs` at a time (each in its own process, with cores / jobs torch threads). The classifier, the test set
    and its classifier features and each data config's training images are made once per process and shared
    by its evaluations (SharedInputs)."""
    if jobs <= 1 or len(paths) <= 1:
        evaluate_paths(paths, list(overrides))
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from vae_lightning.runs.threads import cpu_count

    chunks = [paths[i::jobs] for i in range(jobs)]
    threads = max(1, cpu_count() // jobs)
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        for done in [pool.submit(evaluate_paths, chunk, list(overrides), threads) for chunk in chunks if chunk]:
            done.result()


def evaluate_paths(paths: Sequence[Path], overrides: list[str], threads: int | None = None) -> None:
    """Evaluate each run folder in turn in this process, sharing what their evaluations have in common."""
    from vae_lightning.runs.folders import compose_config

    if threads is not None:
        torch.set_num_threads(threads)
    shared = SharedInputs()
    for path in paths:
        log.info("evaluating %s", path)
        cfg = compose_config("evaluate", [f"ckpt_path={path}", *overrides], path / "eval")
        evaluate_checkpoint(cfg, shared)
