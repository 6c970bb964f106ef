"""Evaluate a trained VAE: `python -m vae_lightning.evaluate ckpt_path=<run folder or .ckpt>`.

Likelihood on the test set, in the data mode the model was trained on (the grayscale test images,
or for `binarize=dynamic` the fixed-seed binarized test set the run validated on): elbo (recon,
kl), nll_iwae for each k, nll_exact for small latents, active units and KL per dimension. Sample
quality per sampler: decoder means of `n_samples` draws, scored by the cached classifier against
the grayscale test images, which are also the reference row.

Writes `<eval_dir>/metrics.json` (last, so its presence means a complete evaluation), `report.md`
and figures; logs `eval/...` scalars and an HPARAMS session to the run's TensorBoard. The
checkpoint is only read.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from vae_lightning import metrics, samplers
from vae_lightning.callbacks import CHECKPOINT_KEY
from vae_lightning.checkpoint import load_checkpoint, module_from_checkpoint, resolve_checkpoint, run_dir_of
from vae_lightning.classifier import DigitClassifier, as_input, classify, load_or_train, pick_device
from vae_lightning.config import register_resolvers
from vae_lightning.data import MNISTDataModule, load_split, locate
from vae_lightning.errors import UserError, build, exit_on_user_error, require
from vae_lightning.likelihoods import Likelihood
from vae_lightning.module import VAEModule
from vae_lightning.priors import LatentDistribution, seeded
from vae_lightning.reliability import write_atomically
from vae_lightning.samplers import needs_fit, same_distribution

log = logging.getLogger(__name__)
register_resolvers()

TEST_ROW = "test"
N_CLASSES = 10


def build_samplers(entries: DictConfig, prior: LatentDistribution) -> list[tuple[LatentDistribution, bool]]:
    """The configured samplers at the model's latent size (the prior appended when no entry has its
    distribution, as for the training grids), each with whether it is the model's prior."""
    return [(s, same_distribution(s, prior)) for s in samplers.build_samplers(entries, prior.latent_dim, prior)]


def test_set(stored_data: dict[str, Any], cfg: DictConfig, device: torch.device) -> tuple[Tensor, MNISTDataModule]:
    """The first `cfg.n_images` test images as the model's data module serves them (float [N, 1, 28, 28];
    binarized once with its fixed seed for `binarize=dynamic`), read from `cfg.data_root`, and the module."""
    data: MNISTDataModule = build(stored_data, "data", root=cfg.data_root, download=cfg.download)
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


# --- outputs ----------------------------------------------------------------------------------


def scalars(results: dict[str, Any]) -> dict[str, float]:
    """The flat `eval/...` scalars logged to TensorBoard."""
    lik = results["likelihood"]
    out = {f"eval/{k}": lik[k] for k in ("elbo", "recon", "kl", "active_units")}
    out.update({f"eval/nll_iwae_k{k}": v for k, v in lik["nll_iwae"].items()})
    out["eval/nll_iwae"] = lik["nll_iwae"][max(lik["nll_iwae"], key=int)]
    if lik["nll_exact"] is not None:
        out["eval/nll_exact"] = lik["nll_exact"]["value"]
    out.update({f"eval/kl_dim{i}": v for i, v in enumerate(lik["kl_per_dim"] or [])})
    for row in results["sample_quality"]["rows"]:
        out.update({f"eval/{m}/{row['name']}": row[m] for m in ("fid", "clarity", "diversity", "classes_90")})
    return {k: float(v) for k, v in out.items()}


def flat_hparams(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config -> {dotted key: number, string or bool}, as TensorBoard's HPARAMS takes them."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flat_hparams(value, f"{name}."))
        else:
            flat[name] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return flat


def log_tensorboard(log_dir: Path, step: int, values: dict[str, float], config: dict[str, Any]) -> None:
    """Scalars at the checkpoint's global step, plus an HPARAMS session (the run's config) whose metrics
    TensorBoard reads from those scalars. No experiment summary: TensorBoard then builds the HPARAMS
    table from all runs' sessions, so a sweep over different priors shows every key."""
    writer = SummaryWriter(log_dir=str(log_dir))
    for tag, value in values.items():
        writer.add_scalar(tag, value, step)
    _, session_start, session_end = hparams(flat_hparams(config), values)
    writer._get_file_writer().add_summary(session_start, step)
    writer._get_file_writer().add_summary(session_end, step)
    writer.close()


def kl_per_dim(likelihood: dict[str, Any]) -> list[float | None]:
    """The KL of each latent dimension, None for each when the prior's KL does not split by dimension."""
    return likelihood["kl_per_dim"] or [None] * len(likelihood["posterior_mean_variance"])


def report(results: dict[str, Any]) -> str:
    """The markdown tables of metrics.json (printed, and the body of report.md)."""
    lik, quality = results["likelihood"], results["sample_quality"]
    exact = lik["nll_exact"]
    if exact is None:
        exact_text = f"— (latent_dim {results['latent_dim']} > exact.max_latent_dim)"
    else:
        status = "" if exact["converged"] else ", NOT converged"
        mass = exact["prior_mass_on_grid"]
        mass_text = "" if abs(mass - 1) < 1e-9 else f"; prior mass on the grid {mass:.6f}"
        exact_text = (f"{exact['value']:.2f} ({exact['points_per_dim']}^{results['latent_dim']} grid; from the "
                      f"half grid: mean change {exact['change_from_half_grid']:.3f}, largest per image "
                      f"{exact['max_image_change']:.2f}{mass_text}{status})")
    lines = [
        f"# Evaluation of {results['checkpoint']}",
        "",
        f"Prior {results['prior']}, latent_dim {results['latent_dim']}, networks {results['model']}, "
        f"p(x|z) {results['pixel_likelihood']}, global step {results['global_step']}; "
        f"{results['data']['dataset']} test set, first {results['data']['n_images']} images, "
        f"binarize={results['data']['binarize']}. {results['data']['units']}",
        "",
        "| metric | nats per image |",
        "|---|---|",
        f"| elbo | {lik['elbo']:.2f} |",
        f"| recon | {lik['recon']:.2f} |",
        f"| kl | {lik['kl']:.2f} |",
        *(f"| nll_iwae (k={k}) | {v:.2f} |" for k, v in lik["nll_iwae"].items()),
        f"| nll_exact | {exact_text} |",
        f"| active units (Var > {results['active_units_threshold']}) | {lik['active_units']} of "
        f"{results['latent_dim']} |",
        "",
        "| latent dim | KL (nats) | Var of posterior mean |",
        "|---|---|---|",
        *(f"| {i} | {'—' if kl is None else f'{kl:.3f}'} | {var:.4f} |"
          for i, (kl, var) in enumerate(zip(kl_per_dim(lik), lik["posterior_mean_variance"], strict=True))),
        "",
        f"Sample quality: {quality['n_samples']} decoder means per sampler against the {quality['n_test']} "
        f"grayscale test images; classifier test accuracy {quality['classifier']['test_accuracy']:.4f}. "
        "fid: lower is better; clarity: mean max class probability; diversity: entropy of the mean "
        f"class distribution (ln 10 = {math.log(10):.3f}); classes_90: classes covering 90% of samples.",
        "",
        "| sampler | fid | clarity | diversity | classes_90 |",
        "|---|---|---|---|---|",
        *(f"| {r['label']}{' (model prior)' if r['model_prior'] else ''} | {r['fid']:.2f} | {r['clarity']:.3f} | "
          f"{r['diversity']:.3f} | {r['classes_90']} |" for r in quality["rows"]),
        "",
        "Time (s): " + ", ".join(f"{k} {v:.0f}" for k, v in results["timings_s"].items()),
    ]
    return "\n".join(lines) + "\n"


def save_figures(results: dict[str, Any], out: Path) -> list[str]:
    """sample_quality.png (fid, clarity, diversity per sampler), class_frequencies.png (predicted
    digit shares per sampler), latent_dimensions.png (KL and posterior-mean variance per dimension)."""
    rows = results["sample_quality"]["rows"]
    labels = [r["label"] + (" *" if r["model_prior"] else "") for r in rows]
    fig = Figure(figsize=(13, 0.45 * len(rows) + 1.5), layout="tight")
    axes = fig.subplots(1, 3, sharey=True)
    for ax, key in zip(axes, ("fid", "clarity", "diversity"), strict=True):
        ax.barh(labels, [r[key] for r in rows], color=["grey" if r["name"] == TEST_ROW else "C0" for r in rows])
        ax.set_title(key)
    axes[2].axvline(math.log(N_CLASSES), color="k", ls=":", lw=1)
    axes[0].invert_yaxis()
    fig.suptitle("sample quality per sampler (* model prior; grey: test set)")
    fig.savefig(out / "sample_quality.png", dpi=100)

    fig = Figure(figsize=(7, 0.45 * len(rows) + 1.5), layout="tight")
    ax = fig.subplots()
    image = ax.imshow([r["class_frequencies"] for r in rows], cmap="viridis", vmin=0, aspect="auto")
    ax.set_xticks(range(N_CLASSES))
    ax.set_yticks(range(len(rows)), labels)
    ax.set_xlabel("predicted digit")
    fig.colorbar(image, ax=ax, label="share of samples")
    fig.savefig(out / "class_frequencies.png", dpi=100)

    lik = results["likelihood"]
    dims = range(len(lik["posterior_mean_variance"]))
    fig = Figure(figsize=(10, 3.5), layout="tight")
    axes = fig.subplots(1, 2)
    for ax in axes:
        ax.set_xticks(dims)
    axes[0].bar(dims, [math.nan if kl is None else kl for kl in kl_per_dim(lik)])
    axes[0].set(title="KL per latent dimension (nats)" if lik["kl_per_dim"] else
                "KL per dimension: none (Monte Carlo KL of the whole vector)", xlabel="dimension")
    axes[1].bar(dims, lik["posterior_mean_variance"])
    axes[1].axhline(results["active_units_threshold"], color="r", ls="--", lw=1, label="active threshold")
    axes[1].set(title="Var over test images of E[z | x]", xlabel="dimension", yscale="log")
    axes[1].legend()
    fig.savefig(out / "latent_dimensions.png", dpi=100)
    return ["sample_quality.png", "class_frequencies.png", "latent_dimensions.png"]


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
    classifier, record = load_or_train(cfg.classifier, cfg.data_root, data.dataset, cfg.download, device, track=track)
    timings["classifier"] = time.perf_counter() - start
    start = time.perf_counter()
    gray_test, _ = load_split(locate(cfg.data_root, data.dataset, download=False), data.dataset, train=False)
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


def discard_unfinished(eval_dir: Path) -> Callable[[], None]:
    """After a bad-input error: remove what Hydra created in an eval folder without results."""
    def cleanup() -> None:
        if (eval_dir / "metrics.json").exists():
            return
        logging.shutdown()  # release the job's log file before removing it
        shutil.rmtree(eval_dir / ".hydra", ignore_errors=True)
        (eval_dir / f"{HydraConfig.get().job.name}.log").unlink(missing_ok=True)
        if eval_dir.is_dir() and not any(eval_dir.iterdir()):
            eval_dir.rmdir()
    return cleanup


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error(discard_unfinished(Path(cfg.eval_dir))):
        evaluate(cfg)


if __name__ == "__main__":
    main()
