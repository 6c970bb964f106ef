"""Likelihood estimators of a trained VAE, in nats per image under the model's own p(x|z)
(`module.likelihood`): the test ELBO, the importance-weighted bound (IWAE) and the exact likelihood
by quadrature over the prior for small latents, and the suite evaluate runs (`likelihood_metrics`).

They reach the model only through its contracts: `module.encode(x)` for q(z|x), `module.decoder` for
logits [..., 784] at latents with any leading dimensions, `module.prior` for p(z). With the Bernoulli
likelihood and binary x this is a normalised likelihood; on grayscale targets (the study's
`binarize=none`) it is what the model optimised but not a normalised density of gray images, while the
continuous Bernoulli is one.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from vae_lightning.core.progress import Track, no_track
from vae_lightning.core.rng import chunk_seeds, seeded
from vae_lightning.evaluation.diagnostics import active_units
from vae_lightning.evaluation.settings import ExactSettings, IwaeSettings, LikelihoodSettings
from vae_lightning.latent import LatentDistribution, has_quantiles

if TYPE_CHECKING:
    from vae_lightning.model import VAEModule

log = logging.getLogger(__name__)

# nll_exact refines a region for an image only while the region holds more than e^-NEGLIGIBLE of the image's
# p(x) (or neighbours one that does): 30 nats, a share of 1e-13
NEGLIGIBLE = 30.0


def quadrature_grid(prior: LatentDistribution, points_per_dim: int, tail: float = 1e-9,
               chunk_size: int = 1 << 16) -> tuple[Tensor, Tensor]:
    """Quadrature nodes and log-weights for p(x) = integral p(x|z) p(z) dz: a product grid of equal-width
    cells over the box `prior.bounds(tail)` (for a prior with quantiles: its quantile range [tail, 1 - tail]
    in every dimension), each cell represented by its midpoint.

    With the `Quantiles` capability a cell is weighted by its exact prior mass (a product of CDF
    differences; the mass beyond the range goes to the end cells, so the weights sum to 1): that keeps
    a Beta prior with an unbounded density at 0 or 1 right. Without it (mixtures, any prior with
    dependent dimensions) a cell is weighted by density x cell area (the midpoint rule, its log-density
    computed `chunk_size` cells at a time); the weights then sum to the mass the box holds, which
    `exact_log_likelihood` reports.

    Why equal widths in z rather than equal masses (midpoints in quantile space): the integrand is a
    bump as wide as the posterior, which is about as wide in the prior's tails as in its centre, while
    a quantile-space cell there is very wide in z. Measured on a 2-D MNIST model: this grid converges
    at 128^2 points where the quantile grid was still 0.02 nats (and up to 11 nats per image) off at
    512^2. Returns z [n^D, D] and log-weights [n^D], float64.
    """
    n, dims = points_per_dim, prior.latent_dim
    lo, hi = prior.bounds(tail).double().cpu()
    edges = lo + (hi - lo) * torch.linspace(0, 1, n + 1, dtype=torch.float64).unsqueeze(1)  # [n + 1, D]
    mids = (edges[:-1] + edges[1:]) / 2
    z = torch.cartesian_prod(*mids.T).reshape(-1, dims)
    if has_quantiles(prior):
        cum = prior.cdf(edges).cpu()
        cum[0], cum[-1] = 0, 1
        log_mass = torch.log(cum.diff(dim=0))  # [n, D]
        return z, torch.cartesian_prod(*log_mass.T).reshape(-1, dims).sum(dim=1)
    log_area = torch.log((hi - lo) / n).sum()
    reference = next(iter([*prior.parameters(), *prior.buffers()]), torch.empty(0))
    log_density = torch.cat([prior.log_prob(chunk.to(reference.device, torch.get_default_dtype())).double().cpu()
                             for chunk in z.split(chunk_size)])
    return z, log_density + log_area


def by_region(z: Tensor, log_weights: Tensor, regions_per_dim: int) -> tuple[Tensor, Tensor]:
    """A `quadrature_grid` (z [n^D, D], log-weights [n^D]) regrouped by region: the cells of each of the
    regions_per_dim^D equal boxes that tile the grid, z [R, C, D] and log-weights [R, C] (region r holds C =
    (n / regions_per_dim)^D cells). Regions are numbered as the cells of the `regions_per_dim` grid are, so the
    regions of a grid and its cells at any finer grid are the same boxes."""
    cells, dims = z.shape
    n = round(cells ** (1 / dims))
    k = n // regions_per_dim
    order = [*range(0, 2 * dims, 2), *range(1, 2 * dims, 2)]  # region index per dimension first, then the cell's
    shape = [regions_per_dim, k] * dims
    regions = regions_per_dim ** dims
    return (z.reshape(*shape, dims).permute(*order, 2 * dims).reshape(regions, k ** dims, dims),
            log_weights.reshape(shape).permute(order).reshape(regions, k ** dims))


def integrate_regions(module: VAEModule, x: Tensor, z: Tensor, log_weights: Tensor, active: Tensor,
                      log_px_by_region: Tensor, chunk_size: int, track: Track = no_track) -> None:
    """Write log sum_{g in r} w_g p(x_n | z_g), the quadrature over region r's cells, into
    `log_px_by_region[n, r]` [N, R] for every image n and region r that `active` [N, R] marks; other entries keep
    their values. z [R, C, D] and log-weights [R, C] as `by_region` gives them.

    The cells are decoded once, `chunk_size` at a time (a block of whole regions, or part of one region),
    and scored against the images as one matrix product (the likelihood's `log_prob_pairs`): against all
    images for a block whose regions are active for all of them, else region by region against its
    active images (all images when at least half are active: the inactive ones are then computed too,
    which only makes them exact). Sums run as log-sum-exps, so memory is bounded by N x chunk_size
    whatever the grid size.
    """
    regions, cells, dims = z.shape
    wanted = active.any(dim=0).nonzero().squeeze(1).tolist()
    per_block = max(1, chunk_size // cells)
    blocks = [wanted[i:i + per_block] for i in range(0, len(wanted), per_block)]
    for block in track(blocks, f"exact NLL, {regions * cells} grid points", len(blocks)):
        everyone = bool(active[:, block].all())
        # a region active for at least half the images is scored against all of them: gathering would cost more
        images = [slice(None)] if everyone else [slice(None) if 2 * int(active[:, r].sum()) >= len(x)
                                                 else active[:, r].nonzero().squeeze(1) for r in block]
        totals = [torch.full((len(x) if isinstance(i, slice) else len(i), len(block) if everyone else 1), -math.inf,
                             dtype=x.dtype, device=x.device) for i in images]
        for start in range(0, cells, chunk_size):
            logits = module.decoder(z[block, start:start + chunk_size].reshape(-1, dims).to(x))
            weights = log_weights[block, start:start + chunk_size].to(x)
            parts = [(logits, weights.reshape(-1))] if everyone else zip(
                logits.reshape(len(block), -1, logits.shape[-1]), weights, strict=True)
            for j, (part_logits, part_weights) in enumerate(parts):  # the images gathered one region at a time
                log_p = module.likelihood.log_prob_pairs(x[images[j]], part_logits) + part_weights  # [N_j, cells]
                log_p = log_p.reshape(len(log_p), totals[j].shape[1], -1)  # [N_j, regions, cells]
                totals[j] = torch.logaddexp(totals[j], torch.logsumexp(log_p, dim=2))
        if everyone:
            log_px_by_region[:, block] = totals[0]
        else:
            for r, i, total in zip(block, images, totals, strict=True):
                log_px_by_region[i, r] = total[:, 0]


def exact_log_likelihood(module: VAEModule, x: Tensor, points_per_dim: int, chunk_size: int, tail: float = 1e-9,
                         track: Track = no_track) -> tuple[Tensor, float]:
    """log p(x) per image [N] by quadrature on the prior's grid (see `quadrature_grid`), and the prior mass the
    grid holds (1 for a prior with quantiles; for others what the box and the midpoint rule capture)."""
    z, log_weights = quadrature_grid(module.prior, points_per_dim, tail)
    log_px = torch.empty(len(x), 1, dtype=x.dtype, device=x.device)
    integrate_regions(module, x, *by_region(z, log_weights, 1), torch.ones_like(log_px, dtype=torch.bool), log_px,
                      chunk_size, track)
    return log_px[:, 0], float(log_weights.exp().sum())


def dilate(mask: Tensor) -> Tensor:
    """A boolean mask [N, n, ..., n] over each image's grid of regions, grown by one region in every direction
    (diagonals included)."""
    for axis in range(1, mask.dim()):
        grown, n = mask.clone(), mask.shape[axis]
        grown.narrow(axis, 1, n - 1).logical_or_(mask.narrow(axis, 0, n - 1))
        grown.narrow(axis, 0, n - 1).logical_or_(mask.narrow(axis, 1, n - 1))
        mask = grown
    return mask


def regions_that_matter(log_px_by_region: Tensor, regions_per_dim: int, dims: int) -> Tensor:
    """[N, R]: for each image, the regions whose share of its p(x) is above e^-NEGLIGIBLE, and their neighbours."""
    log_px = torch.logsumexp(log_px_by_region, dim=1, keepdim=True)
    matters = (log_px_by_region - log_px) > -NEGLIGIBLE
    return dilate(matters.reshape(len(matters), *[regions_per_dim] * dims)).reshape(matters.shape)


def iwae_log_likelihood(module: VAEModule, x: Tensor, ks: Sequence[int], chunk_size: int, seed: int) -> Tensor:
    """The importance-weighted bound log (1/k) sum_j p(x, z_j) / q(z_j | x), z_j ~ q(z|x), for each
    k in `ks`, shape [len(ks), B] in the order of `sorted(set(ks))` (Burda et al. 2016).

    The estimates are nested: one stream of max(ks) draws, the bound for k uses its first k. The
    stream comes in blocks of `chunk_size` draws, block j drawn with seed `seed + j`, folded into a
    running log-sum-exp: memory is bounded by B x chunk_size decoded images, and the first k draws
    are the same whatever the other ks are (k = 1000 alone equals k = 1000 next to k = 5000).
    """
    ks = sorted(set(ks))
    prior, q = module.prior, module.encode(x)
    total = torch.full((len(x),), -math.inf, dtype=x.dtype, device=x.device)
    bounds = []
    for j, start in enumerate(range(0, ks[-1], chunk_size)):
        with seeded(seed + j, x.device):
            z = prior.clamp_to_support(q.sample((min(chunk_size, ks[-1] - start),)))  # [n, B, D]
        log_px = module.likelihood.log_prob(module.decoder(z), x)  # [n, B]
        log_w = log_px + prior.log_prob(z) - q.log_prob(z).sum(-1)  # [n, B]: log p(z) of the whole vector
        for k in ks:
            if start < k <= start + len(z):
                bounds.append(torch.logaddexp(total, torch.logsumexp(log_w[: k - start], dim=0)) - math.log(k))
        total = torch.logaddexp(total, torch.logsumexp(log_w, dim=0))
    return torch.stack(bounds)


def standard_error(values: Tensor) -> float:
    """The standard error of the mean of per-image values [N] (sample standard deviation / sqrt(N)); NaN for
    fewer than two values."""
    values = values.double()
    return float(values.std(unbiased=True) / math.sqrt(len(values))) if len(values) > 1 else math.nan


def elbo_terms(module: VAEModule, x: Tensor, batch_size: int, seed: int) -> dict[str, Any]:
    """Test ELBO (one posterior draw per image, as in training), its parts, the KL per dimension (None for a
    prior without an analytic per-dimension KL: a Monte Carlo KL of a whole vector does not split), the
    posterior means behind the active-unit count and the negative ELBO of each image (`per_image` [N])."""
    recon, kl, kl_dims, means = [], [], [], []
    batches = x.split(batch_size)
    for batch, seed_b in zip(batches, chunk_seeds(seed, len(batches)), strict=True):
        with seeded(seed_b, x.device):
            r, k = module.loss_terms(batch)
        recon.append(r)
        kl.append(k)
        q = module.encode(batch)
        kl_dims.append(module.prior.analytic_kl(q))
        means.append(q.mean)
    recon_all, kl_all = torch.cat(recon).double(), torch.cat(kl).double()
    per_dim = None if kl_dims[0] is None else torch.cat(kl_dims).double().mean(dim=0).tolist()
    neg_elbo = (recon_all + kl_all).cpu()
    return {"recon": float(recon_all.mean()), "kl": float(kl_all.mean()), "elbo": float(-neg_elbo.mean()),
            "elbo_se": standard_error(neg_elbo), "kl_per_dim": per_dim, "posterior_means": torch.cat(means),
            "per_image": neg_elbo}


def nll_iwae(module: VAEModule, x: Tensor, settings: IwaeSettings, seed: int, track: Track) -> dict[str, Tensor]:
    """-log p(x) of every image [N] by the importance-weighted bound, for every k of `settings.ks` (one nested
    draw), keyed by k as a string."""
    ks = settings.ks
    batches = x.split(settings.images_per_batch)
    seeds = chunk_seeds(seed, len(batches))
    work = track(list(zip(batches, seeds, strict=True)), f"nll_iwae k={','.join(map(str, ks))}", len(batches))
    bounds = [iwae_log_likelihood(module, batch, ks, settings.chunk_size, s) for batch, s in work]
    nll = -torch.cat(bounds, dim=1).double().cpu()
    return {str(k): per_image for k, per_image in zip(ks, nll, strict=True)}


def nll_exact(module: VAEModule, x: Tensor, settings: ExactSettings, track: Track) -> tuple[dict[str, Any], Tensor]:
    """-mean log p(x) by quadrature on the prior's grid, the points per dimension doubled until the
    result changes by less than `settings.tolerance`; reports the finest grid computed, and returns the
    -log p(x) of every image [N] on it.

    The integral is kept per image and per region, the regions being the cells of the first grid
    (`settings.points_per_dim`): log p(x_n) = log sum_r P[n, r], P[n, r] the quadrature over region r's cells.
    Doubling the grid splits every cell of a region into 2^D; only the pairs (image, region) that matter
    are integrated again on the finer grid: those whose P[n, r] is above e^-NEGLIGIBLE of the image's p(x),
    and their neighbouring regions (so a bump that straddles a region's edge, or that the coarser grid
    placed in the next region, is refined too). Any other pair keeps its value from the last grid that
    computed it: all of them together hold at most R e^-NEGLIGIBLE of an image's p(x) (R = regions), so
    the result equals the full finer grid's to far below the tolerance, while a trained model's images,
    each with its own narrow bump, need only a few regions each. The first two grids are computed in full
    (regions are judged from 2^D points each), and a region is judged afresh at every grid.

    What this gives up: a second bump of an image that lies more than NEGLIGIBLE nats below the image's
    p(x) at every point of its region and of the neighbouring ones on the grids computed so far, and rises
    above that only on a finer grid, keeps its coarse value, where refining every cell would have found it.
    Such a bump is narrower than the grid's spacing; the doubling check assumes the integrand resolved
    anyway.
    """
    dims, n0 = module.latent_dim, settings.points_per_dim
    log_px_by_region = torch.empty(len(x), n0 ** dims, dtype=x.dtype, device=x.device)
    active = torch.ones_like(log_px_by_region, dtype=torch.bool)
    n, previous, change, image_change = n0, None, math.inf, math.inf
    while True:
        z, log_weights = quadrature_grid(module.prior, n, settings.tail)
        integrate_regions(module, x, *by_region(z, log_weights, n0), active, log_px_by_region, settings.chunk_size,
                          track)
        nll = -torch.logsumexp(log_px_by_region, dim=1).double().cpu()
        if previous is not None:
            change, image_change = float((nll.mean() - previous.mean()).abs()), float((nll - previous).abs().max())
        log.info("nll_exact %.4f on a %d^%d grid (%.1f%% of the image-region pairs integrated)%s", nll.mean(), n,
                 dims, 100 * float(active.double().mean()), "" if previous is None else f" (change {change:.4f})")
        if change < settings.tolerance or 2 * n > settings.max_points_per_dim:
            break
        if n > n0:
            active = regions_that_matter(log_px_by_region, n0, dims)
        previous, n = nll, 2 * n
    if change >= settings.tolerance:
        log.warning("nll_exact not converged: changed by %.3f nats at %d points per dimension "
                    "(raise exact.max_points_per_dim)", change, n)
    summary = {"value": float(nll.mean()), "se": standard_error(nll), "points_per_dim": n,
               "grid_points": n ** dims, "change_from_half_grid": change, "max_image_change": image_change,
               "converged": change < settings.tolerance, "prior_mass_on_grid": float(log_weights.exp().sum())}
    return summary, nll


def likelihood_metrics(module: VAEModule, x: Tensor, settings: LikelihoodSettings, track: Track,
                       timings: dict[str, float]) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """The likelihood part of an evaluation: its summary (metrics.json's `likelihood`: means with their
    standard errors) and the per-image columns behind them (`neg_elbo`, `nll_iwae_k<k>`, `nll_exact`)."""
    start = time.perf_counter()
    terms = elbo_terms(module, x, settings.batch_size, settings.seed)
    per_image = {"neg_elbo": terms.pop("per_image")}
    count, variance = active_units(terms.pop("posterior_means"), settings.active_units_threshold)
    result: dict[str, Any] = {**terms, "active_units": count, "posterior_mean_variance": variance.tolist()}
    timings["elbo"] = time.perf_counter() - start

    start = time.perf_counter()
    iwae = nll_iwae(module, x, settings.iwae, settings.seed + 1, track)
    result["nll_iwae"] = {k: float(v.mean()) for k, v in iwae.items()}
    result["nll_iwae_se"] = {k: standard_error(v) for k, v in iwae.items()}
    per_image.update({f"nll_iwae_k{k}": v for k, v in iwae.items()})
    timings["nll_iwae"] = time.perf_counter() - start

    result["nll_exact"] = None
    if module.latent_dim <= settings.exact.max_latent_dim:
        start = time.perf_counter()
        result["nll_exact"], per_image["nll_exact"] = nll_exact(module, x, settings.exact, track)
        timings["nll_exact"] = time.perf_counter() - start
    return result, per_image
