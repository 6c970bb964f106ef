"""Evaluate a trained VAE: `python -m vae_lightning.evaluate ckpt_path=<run folder or .ckpt>`.

Likelihood on the test set, in the data mode the model was trained on (the grayscale test images,
or for `binarize=dynamic` the fixed-seed binarized test set the run validated on): elbo (recon,
kl), nll_iwae for each k, nll_exact for small latents, active units and KL per dimension. Sample
quality per sampler: decoder means of `n_samples` draws, scored by the cached classifier against
the grayscale test images, which are also the reference row.

Writes `<eval_dir>/metrics.json` (last, so its presence means a complete evaluation), `report.md`
and figures; logs `eval/...` scalars and an HPARAMS session to the run's TensorBoard (those
outputs: evaluation_report.py). The checkpoint is only read.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from vae_lightning import cli, metrics, samplers
from vae_lightning.checkpoint import (
    CHECKPOINT_KEY,
    load_checkpoint,
    module_from_checkpoint,
    resolve_checkpoint,
    run_dir_of,
)
from vae_lightning.classifier import SETTINGS as CLASSIFIER_SETTINGS
from vae_lightning.classifier import DigitClassifier, as_input, classify, load_or_train, pick_device
from vae_lightning.config import register_resolvers
from vae_lightning.data import MNISTDataModule, load_split, locate
from vae_lightning.errors import UserError, build, require
from vae_lightning.evaluation_report import N_CLASSES, TEST_ROW, log_tensorboard, report, save_figures, scalars
from vae_lightning.likelihoods import Likelihood
from vae_lightning.module import VAEModule
from vae_lightning.priors import LatentDistribution, seeded
from vae_lightning.reliability import write_atomically
from vae_lightning.samplers import needs_fit, same_distribution

log = logging.getLogger(__name__)
register_resolvers()

# This command's values, checked before the checkpoint is read (cli.check_settings); `n_images` and
# `iwae.k` are checked against the test set.
SETTINGS: dict[str, cli.Setting] = {
    "batch_size": cli.integer(1), "n_samples": cli.integer(1), "seed": cli.integer(0),
    "iwae.images_per_batch": cli.integer(1), "iwae.chunk_size": cli.integer(1),
    "exact.max_latent_dim": cli.integer(0), "exact.points_per_dim": cli.integer(2),
    "exact.max_points_per_dim": cli.integer(2), "exact.chunk_size": cli.integer(1),
    "exact.tolerance": cli.number(0, above=True), "exact.tail": cli.number(0, 0.5, above=True),
    "active_units_threshold": cli.number(0),
    **CLASSIFIER_SETTINGS,
}
EXAMPLES = (
    f"python -m vae_lightning.evaluate ckpt_path={cli.EXAMPLE_RUN}",
    f"python -m vae_lightning.evaluate ckpt_path={cli.EXAMPLE_RUN} data.root=/data/mnist data.download=false",
    f"python -m vae_lightning.evaluate ckpt_path={cli.EXAMPLE_RUN} 'iwae.k=[1000,5000]' n_images=2000",
    "python -m vae_lightning.evaluate ckpt_path=run.ckpt samplers=study '~samplers.beta_1_1' device=cpu",
)


def build_samplers(entries: DictConfig, prior: LatentDistribution) -> list[tuple[LatentDistribution, bool]]:
    """The configured samplers at the model's latent size (the prior appended when no entry has its
    distribution, as for the training grids), each with whether it is the model's prior."""
    return [(s, same_distribution(s, prior)) for s in samplers.build_samplers(entries, prior.latent_dim, prior)]


def test_set(stored_data: dict[str, Any], cfg: DictConfig, device: torch.device) -> tuple[Tensor, MNISTDataModule]:
    """The first `cfg.n_images` test images as the model's data module serves them (float [N, 1, 28, 28];
    binarized once with its fixed seed for `binarize=dynamic`), read from `cfg.data.root`, and the module."""
    data: MNISTDataModule = build(stored_data, "data", root=cfg.data.root, download=cfg.data.download)
    data.prepare_data()
    data.setup("test")
    test = data.splits["test"]
    n = len(test) if cfg.n_images is None else cfg.n_images
    require(isinstance(n, int) and 1 <= n <= len(test), "n_images", cfg.n_images, f"null or 1..{len(test)}")
    x, _ = data.on_after_batch_transfer((test.images[:n].to(device), test.labels[:n]), 0)
    return x, data


# --- likelihood -------------------------------------------------------------------------------


def elbo_terms(module: VAEModule, x: Tensor, batch_size: int, seed: int) -> dict[str, Any]:
    """Test ELBO (one posterior draw per image, as in training), its parts, the KL per dimension (None for a
    prior without an analytic per-dimension KL: a Monte Carlo KL of a whole vector does not split) and the
    posterior means behind the active-unit count."""
    recon, kl, kl_dims, means = [], [], [], []
    batches = x.split(batch_size)
    for batch, seed_b in zip(batches, metrics.chunk_seeds(seed, len(batches)), strict=True):
        with seeded(seed_b, x.device):
            r, k = module.loss_terms(batch)
        recon.append(r)
        kl.append(k)
        q = module.encode(batch)
        kl_dims.append(module.prior.analytic_kl(q))
        means.append(q.mean)
    recon_all, kl_all = torch.cat(recon).double(), torch.cat(kl).double()
    per_dim = None if kl_dims[0] is None else torch.cat(kl_dims).double().mean(dim=0).tolist()
    return {"recon": float(recon_all.mean()), "kl": float(kl_all.mean()), "elbo": float(-(recon_all + kl_all).mean()),
            "kl_per_dim": per_dim, "posterior_means": torch.cat(means)}


def nll_iwae(module: VAEModule, x: Tensor, cfg: DictConfig, seed: int, track: metrics.Track) -> dict[str, float]:
    """-mean log p(x) by the importance-weighted bound, for every k of `cfg.k` (one nested draw)."""
    ks = sorted(set(cfg.k if OmegaConf.is_list(cfg.k) else [cfg.k]))
    require(all(isinstance(k, int) and k >= 1 for k in ks), "iwae.k", list(ks), "an integer >= 1 or a list of them")
    batches = x.split(cfg.images_per_batch)
    seeds = metrics.chunk_seeds(seed, len(batches))
    work = track(list(zip(batches, seeds, strict=True)), f"nll_iwae k={','.join(map(str, ks))}", len(batches))
    bounds = [metrics.iwae_log_likelihood(module, batch, ks, cfg.chunk_size, s) for batch, s in work]
    nll = -torch.cat(bounds, dim=1).double().mean(dim=1)
    return {str(k): float(v) for k, v in zip(ks, nll, strict=True)}


def nll_exact(module: VAEModule, x: Tensor, cfg: DictConfig, track: metrics.Track) -> dict[str, Any]:
    """-mean log p(x) by quadrature on the prior's grid, the points per dimension doubled until the
    result changes by less than `cfg.tolerance`; reports the finest grid computed."""
    n, previous, change, image_change = cfg.points_per_dim, None, math.inf, math.inf
    while True:
        log_px, mass = metrics.exact_log_likelihood(module, x, n, cfg.chunk_size, cfg.tail, track)
        nll = -log_px.double()
        if previous is not None:
            change, image_change = float((nll.mean() - previous.mean()).abs()), float((nll - previous).abs().max())
        log.info("nll_exact %.4f on a %d^%d grid%s", nll.mean(), n, module.latent_dim,
                 "" if previous is None else f" (change {change:.4f})")
        if change < cfg.tolerance or 2 * n > cfg.max_points_per_dim:
            break
        previous, n = nll, 2 * n
    if change >= cfg.tolerance:
        log.warning("nll_exact not converged: changed by %.3f nats at %d points per dimension "
                    "(raise exact.max_points_per_dim)", change, n)
    return {"value": float(nll.mean()), "points_per_dim": n, "grid_points": n ** module.latent_dim,
            "change_from_half_grid": change, "max_image_change": image_change, "converged": change < cfg.tolerance,
            "prior_mass_on_grid": mass}


def likelihood(module: VAEModule, x: Tensor, cfg: DictConfig, track: metrics.Track,
               timings: dict[str, float]) -> dict[str, Any]:
    start = time.perf_counter()
    terms = elbo_terms(module, x, cfg.batch_size, cfg.seed)
    count, variance = metrics.active_units(terms.pop("posterior_means"), cfg.active_units_threshold)
    result: dict[str, Any] = {**terms, "active_units": count, "posterior_mean_variance": variance.tolist()}
    timings["elbo"] = time.perf_counter() - start

    start = time.perf_counter()
    result["nll_iwae"] = nll_iwae(module, x, cfg.iwae, cfg.seed + 1, track)
    timings["nll_iwae"] = time.perf_counter() - start

    result["nll_exact"] = None
    if module.latent_dim <= cfg.exact.max_latent_dim:
        start = time.perf_counter()
        result["nll_exact"] = nll_exact(module, x, cfg.exact, track)
        timings["nll_exact"] = time.perf_counter() - start
    return result


# --- sample quality ---------------------------------------------------------------------------


def quality_row(name: str, label: str, features: Tensor, probs: Tensor,
                reference: tuple[Tensor, Tensor]) -> dict[str, Any]:
    """fid against the reference statistics, clarity, diversity and class coverage of one image set."""
    predicted = probs.argmax(dim=1)
    return {"name": name, "label": label,
            "fid": metrics.frechet_distance(*metrics.feature_statistics(features), *reference),
            "clarity": metrics.clarity(probs), "diversity": metrics.diversity(probs),
            "classes_90": metrics.classes_covering(predicted, N_CLASSES, 0.9),
            "class_frequencies": (torch.bincount(predicted, minlength=N_CLASSES).double() / len(predicted)).tolist()}


@torch.no_grad()
def sample_quality(module: VAEModule, samplers: list[tuple[LatentDistribution, bool]], classifier: DigitClassifier,
                   test_images: Tensor, fit_images: Tensor, cfg: DictConfig, track: metrics.Track,
                   timings: dict[str, float]) -> list[dict[str, Any]]:
    """One row per sampler (decoder means of `cfg.n_samples` seeded draws), then the test set's own. Samplers
    fitted to the model are fitted to `fit_images` (the training images) first; `timings` gets the time
    of each fit and draw (`fit <name>`, `draw <name>`)."""
    test_features, test_probs = classify(classifier, as_input(test_images), cfg.batch_size)
    reference = metrics.feature_statistics(test_features)
    rows = []
    for sampler, own in track(samplers, "sample quality", len(samplers)):
        sampler = sampler.to(next(module.parameters()).device)
        if needs_fit(sampler):
            start = time.perf_counter()
            sampler.fit(module, fit_images)
            timings[f"fit {sampler.name}"] = time.perf_counter() - start
        start = time.perf_counter()
        z = sampler.sample(cfg.n_samples, generator=torch.Generator().manual_seed(cfg.seed))
        timings[f"draw {sampler.name}"] = time.perf_counter() - start
        images = torch.cat([module.decode(chunk) for chunk in z.split(cfg.batch_size)])
        row = quality_row(sampler.name, sampler.label, *classify(classifier, images, cfg.batch_size), reference)
        rows.append({**row, "model_prior": own})
    rows.append({**quality_row(TEST_ROW, "test set", test_features, test_probs, reference), "model_prior": False})
    return rows


# --- the command ------------------------------------------------------------------------------


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


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Everything `python -m vae_lightning.evaluate` computes and writes; returns metrics.json's content."""
    if not cfg.get("ckpt_path"):
        raise UserError("ckpt_path is required: give a run folder (logs/train/runs/<timestamp>) or a .ckpt file")
    cli.check_settings(cfg, SETTINGS)
    ckpt = resolve_checkpoint(cfg.ckpt_path)
    checkpoint = load_checkpoint(ckpt)
    stored, step = checkpoint[CHECKPOINT_KEY], int(checkpoint.get("global_step", 0))
    device = pick_device(cfg.device)
    track = metrics.progress_bar if cfg.progress else metrics.no_track
    module = module_from_checkpoint(checkpoint).to(device)
    del checkpoint
    x, data = test_set(stored["data"], cfg, device)

    timings: dict[str, float] = {}
    with torch.no_grad():
        lik = likelihood(module, x, cfg, track, timings)
    start = time.perf_counter()
    classifier, record = load_or_train(cfg.classifier, cfg.data.root, data.dataset, cfg.data.download, device,
                                     track=track)
    timings["classifier"] = time.perf_counter() - start
    start = time.perf_counter()
    gray_test, _ = load_split(locate(cfg.data.root, data.dataset, download=False), data.dataset, train=False)
    rows = sample_quality(module, build_samplers(cfg.samplers, module.prior), classifier, gray_test,
                          data.fit_images(), cfg, track, timings)
    timings["sample_quality"] = time.perf_counter() - start

    units = likelihood_units(module.likelihood, data.binarize)
    results = {
        "checkpoint": str(ckpt), "global_step": step, "prior": module.prior.label, "latent_dim": module.latent_dim,
        "model": module.architecture, "pixel_likelihood": module.likelihood.name,
        "data": {"dataset": data.dataset, "binarize": data.binarize, "n_images": len(x), "units": units},
        "active_units_threshold": cfg.active_units_threshold,
        "likelihood": lik,
        "sample_quality": {"n_samples": cfg.n_samples, "n_test": len(gray_test), "classifier": record, "rows": rows},
        "timings_s": timings,
    }
    text = report(results)
    print(text)
    out = Path(cfg.eval_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = save_figures(results, out)
    (out / "report.md").write_text(text + "\n" + "\n".join(f"![{f}]({f})" for f in figures) + "\n")
    if cfg.tensorboard:
        run = run_dir_of(ckpt)
        log_tensorboard((run if run is not None else out) / "tensorboard", step, scalars(results), stored)
    payload = json.dumps(results, indent=2) + "\n"  # last and atomically: a metrics.json is a complete evaluation
    write_atomically(out / "metrics.json", lambda f: f.write(payload.encode()))
    log.info("Wrote %s", out)
    return results


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    cli.run_task(lambda: evaluate(cfg))


if __name__ == "__main__":
    cli.run(main, __doc__, EXAMPLES)
