"""Why a prior wins: the mechanisms behind the study's verdicts, measured.

- **ELBO surgery** (Hoffman & Johnson 2016, eq. 2-4): the average KL term of the ELBO splits exactly into the
  mutual information between image index and code under q and the *marginal* KL between the aggregate posterior
  q(z) = (1/N) sum_n q(z|x_n) and the prior:

      (1/N) sum_n KL(q(z|x_n) || p(z)) = I_q(n; z) + KL(q(z) || p(z)),

  with I_q(n; z) = (1/N) sum_n KL(q(z|x_n) || q(z)) <= log N. The second term is the one a prior changes.
  `elbo_surgery` estimates all three on the same draws z_n ~ q(z|x_n) (one per image: together a draw from q(z)),
  with log q(z_n) computed exactly over all N posteriors, so the identity holds draw by draw.
- **Prior holes** (Rosca et al. 2018; the VampPrior paper's motivation): where the prior puts mass and the
  aggregate posterior does not, the decoder was never trained. `prior_holes` is the prior's mass where
  q(z) < ratio x p(z), estimated on prior draws, with the draws' mask (to score the samples from holes apart).
- **Precision and recall** of samples (Kynkäänniemi et al. 2019): the fraction of generated features inside the
  k-NN manifold of the real ones (fidelity), and of real features inside the manifold of the generated ones
  (coverage of the data); **density and coverage** (Naeem et al. 2020) are their outlier-robust versions.
- **Bound gaps** (Cremer, Li & Duvenaud 2018): -ELBO - (-log p(x)) = approximation gap (log p(x) - the ELBO of
  the best posterior of the family for each image) + amortization gap (that best ELBO - the encoder's ELBO).
  `optimal_elbo` finds the best posterior of the prior's own family per image by gradient ascent on the encoder's
  output space, starting from the encoder's.

All densities are in nats; the estimators take a trained `VAEModule` through its contracts (`encoder`, the prior's
`posterior`, `log_prob`, `kl_terms`, `decoder`, `likelihood`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from vae_lightning.core.rng import seeded
from vae_lightning.evaluation.settings import MechanismSettings

if TYPE_CHECKING:
    from vae_lightning.latent import LatentDistribution
    from vae_lightning.model import VAEModule


def _dtype(module: torch.nn.Module) -> torch.dtype:
    """The floating dtype of a module's parameters or buffers (float32 when it has none)."""
    return next((t.dtype for t in (*module.parameters(), *module.buffers()) if t.is_floating_point()), torch.float32)


def aggregate_log_density(prior: LatentDistribution, params: Tensor, z: Tensor, chunk_size: int = 1024) -> Tensor:
    """log q(z) = log (1/N) sum_n q(z | x_n) for latents z [M, D], the posteriors given by the encoder's outputs
    `params` [N, 2D] (the prior's posterior family); float64 [M]. Memory: chunk_size x N log-densities at once."""
    q = prior.posterior(params.double())
    out = []
    for chunk in z.double().split(chunk_size):
        log_each = q.log_prob(chunk.unsqueeze(1)).sum(dim=-1)  # [chunk, N]
        out.append(torch.logsumexp(log_each, dim=1) - math.log(len(params)))
    return torch.cat(out)


@dataclass(frozen=True)
class Surgery:
    """The ELBO's average KL term and its two parts, nats per image (each a mean over the images)."""

    kl: float  # (1/N) sum_n E_q[log q(z|x_n) - log p(z)]
    mutual_information: float  # I_q(n; z) = (1/N) sum_n E_q[log q(z|x_n) - log q(z)], at most log N
    marginal_kl: float  # KL(q(z) || p(z)) = E_q(z)[log q(z) - log p(z)]
    log_n: float  # the bound on the mutual information


@torch.no_grad()
def elbo_surgery(prior: LatentDistribution, params: Tensor, seed: int = 0) -> Surgery:
    """ELBO surgery of the posteriors `params` [N, 2D] (the encoder's outputs for N images) against `prior`: one
    seeded draw per image, all three terms on those draws, so that kl = mutual_information + marginal_kl exactly."""
    q = prior.posterior(params.double())
    with seeded(seed, params.device):
        z = prior.clamp_to_support(q.sample())  # [N, D]: draws from q(z)
    log_posterior = q.log_prob(z).sum(dim=-1)
    log_aggregate = aggregate_log_density(prior, params, z)
    log_prior = prior.log_prob(z.to(_dtype(prior))).double()
    return Surgery(kl=float((log_posterior - log_prior).mean()),
                   mutual_information=float((log_posterior - log_aggregate).mean()),
                   marginal_kl=float((log_aggregate - log_prior).mean()), log_n=math.log(len(params)))


@dataclass(frozen=True)
class Holes:
    """The prior's mass in holes (where q(z) < ratio x p(z)), and which prior draws fell in one."""

    mass: float
    ratio: float
    in_hole: Tensor  # bool [M], per prior draw
    draws: Tensor  # [M, D], the prior draws


@torch.no_grad()
def prior_holes(prior: LatentDistribution, params: Tensor, n_draws: int = 10_000, ratio: float = 0.1,
                seed: int = 0) -> Holes:
    """The prior's mass where the aggregate posterior of `params` [N, 2D] is below `ratio` times the prior's
    density, estimated on `n_draws` seeded prior draws."""
    draws = prior.sample(n_draws, generator=torch.Generator().manual_seed(seed))
    log_q = aggregate_log_density(prior, params.to(draws.device), draws)
    in_hole = log_q < prior.log_prob(draws).double().to(log_q.device) + math.log(ratio)
    return Holes(mass=float(in_hole.double().mean()), ratio=ratio, in_hole=in_hole.cpu(), draws=draws)


def _neighbour_distances(features: Tensor, ks: tuple[int, ...], chunk_size: int = 1024) -> list[Tensor]:
    """For each k of `ks`, the distance of each row of `features` [N, F] to its k-th nearest other row, float64 [N]:
    one pass over the pairwise distances for every k."""
    f = features.double()
    nearest = torch.cat([torch.cdist(chunk, f).topk(max(ks) + 1, dim=1, largest=False).values
                         for chunk in f.split(chunk_size)])  # [N, max k + 1]: column 0 is the row itself
    return [nearest[:, k] for k in ks]


@dataclass(frozen=True)
class PrecisionRecall:
    precision: float  # generated samples inside the real manifold (Kynkäänniemi et al. 2019)
    recall: float  # real samples inside the generated manifold
    density: float  # Naeem et al. 2020: mean number of real balls holding a generated sample, / k
    coverage: float  # Naeem et al. 2020: real samples whose ball holds a generated sample


def precision_recall(real: Tensor, fake: Tensor, k: int = 3, k_density: int = 5,
                     chunk_size: int = 1024) -> PrecisionRecall:
    """Improved precision and recall (Kynkäänniemi et al. 2019, eq. 1-3, k-NN balls with k = 3) and density and
    coverage (Naeem et al. 2020, eq. 4-5, k = 5) of generated features `fake` [M, F] against real ones [N, F].

    All four come from one pass over the generated-to-real distances, `chunk_size` generated rows at a time: a row
    d[i, j] = |fake_i - real_j| says whether fake_i lies in real_j's balls (precision, density, coverage) and whether
    real_j lies in fake_i's ball (recall)."""
    real_radii, density_radii = _neighbour_distances(real, (k, k_density))
    (fake_radii,) = _neighbour_distances(fake, (k,))
    in_real_manifold = 0
    in_balls = 0.0
    recalled = torch.zeros(len(real), dtype=torch.bool)
    covered = torch.zeros(len(real), dtype=torch.bool)
    r = real.double()
    for chunk, radii in zip(fake.double().split(chunk_size), fake_radii.split(chunk_size), strict=True):
        d = torch.cdist(chunk, r)  # [chunk, N]
        in_real_manifold += int((d <= real_radii).any(dim=1).sum())
        inside = d <= density_radii
        in_balls += float(inside.sum())
        covered |= inside.any(dim=0)
        recalled |= (d <= radii.unsqueeze(1)).any(dim=0)
    return PrecisionRecall(precision=in_real_manifold / len(fake), recall=float(recalled.double().mean()),
                           density=in_balls / (k_density * len(fake)), coverage=float(covered.double().mean()))


def elbo_of(module: VAEModule, x: Tensor, params: Tensor, n_draws: int, seed: int = 0) -> Tensor:
    """The ELBO of each image x [B, ...] under the posteriors `params` [B, 2D] of the prior's family, with `n_draws`
    seeded reparameterised draws per image (differentiable in `params`): [B]."""
    prior = module.prior
    q = prior.posterior(params)
    with seeded(seed, params.device):
        z = prior.rsample_posterior(q.expand((n_draws, *q.batch_shape)))  # [S, B, D]
    log_likelihood = module.likelihood.log_prob(module.decoder(z), x.flatten(1).expand(n_draws, -1, -1).to(z))
    kl = prior.kl_terms(q.expand((n_draws, *q.batch_shape)), z).sum(dim=-1)
    return (log_likelihood - kl).mean(dim=0)


def optimal_elbo(module: VAEModule, x: Tensor, steps: int = 200, n_draws: int = 32, lr: float = 0.05,
                 seed: int = 0) -> tuple[Tensor, Tensor]:
    """(the encoder's ELBO, the best ELBO of the posterior family) per image x [B, ...], both evaluated with the same
    `4 * n_draws` seeded draws: the best by `steps` of Adam on each image's own posterior parameters (the encoder's
    output space), started at the encoder's, a fresh draw per step. Their difference is the amortization gap."""
    with torch.no_grad():
        start = module.encoder(x).detach()
    params = start.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([params], lr=lr)
    for step in range(steps):
        optimizer.zero_grad()
        (-elbo_of(module, x, params, n_draws, seed=seed + 1 + step).sum()).backward()
        optimizer.step()
    with torch.no_grad():
        encoder = elbo_of(module, x, start, 4 * n_draws, seed=seed)
        best = elbo_of(module, x, params.detach(), 4 * n_draws, seed=seed)
    return encoder, torch.maximum(best, encoder)  # never below the start: the search may only improve on it


@torch.no_grad()
def encoder_outputs(module: VAEModule, x: Tensor, batch_size: int) -> Tensor:
    """The encoder's posterior parameters [N, 2D] of images x, `batch_size` at a time."""
    return torch.cat([module.encoder(chunk) for chunk in x.split(batch_size)])


def mechanism_metrics(module: VAEModule, x: Tensor, nll_exact: Tensor | None, clarity_of: Callable[[Tensor], float],
                      settings: MechanismSettings, batch_size: int, seed: int,
                      timings: dict[str, float]) -> dict[str, Any]:
    """metrics.json's `mechanisms` (`evaluate`'s `mechanisms:` settings): the ELBO surgery of the test posteriors,
    the prior's holes with the clarity of the digits decoded from prior draws inside and outside them
    (`clarity_of(images)`: the classifier's mean top probability), and the bound gaps of the first
    `settings.gaps.n_images` test images against their exact likelihood (per image `nll_exact`, when computed)."""
    start = time.perf_counter()
    params = encoder_outputs(module, x, batch_size)
    surgery = elbo_surgery(module.prior, params, seed=seed)
    out: dict[str, Any] = {"surgery": vars(surgery)}
    timings["surgery"] = time.perf_counter() - start

    start = time.perf_counter()
    holes = prior_holes(module.prior, params, settings.holes.n_draws, settings.holes.ratio, seed=seed)
    with torch.no_grad():
        images = torch.cat([module.decode(chunk) for chunk in holes.draws.to(params.device).split(batch_size)])
    inside, outside = images[holes.in_hole.to(images.device)], images[~holes.in_hole.to(images.device)]
    out["prior_holes"] = {"ratio": holes.ratio, "n_draws": len(holes.draws), "mass": holes.mass,
                          "clarity_in_holes": clarity_of(inside) if len(inside) else None,
                          "clarity_elsewhere": clarity_of(outside) if len(outside) else None}
    timings["prior_holes"] = time.perf_counter() - start

    n = min(settings.gaps.n_images, len(x))
    if n > 0:
        start = time.perf_counter()
        with torch.enable_grad():
            gap = settings.gaps
            encoder, best = optimal_elbo(module, x[:n], gap.steps, gap.n_draws, gap.lr, seed=seed)
        gaps: dict[str, Any] = {"n_images": n, "steps": settings.gaps.steps, "elbo_encoder": float(encoder.mean()),
                                "elbo_best": float(best.mean()), "amortization_gap": float((best - encoder).mean())}
        if nll_exact is not None:
            log_px = -nll_exact[:n].to(best)
            gaps.update({"log_px": float(log_px.mean()), "approximation_gap": float((log_px - best).mean()),
                         "inference_gap": float((log_px - encoder).mean())})
        out["bound_gaps"] = gaps
        timings["bound_gaps"] = time.perf_counter() - start
    return out
