"""A run's view: everything the page shows of one trained model, computed here in Python and handed to the page
as plain JSON (numbers in base64 where there are many): the test codes on the plane, the prior's and the
aggregate posterior's log-densities on a grid over it, the samplers' draws, the decoder (or its atlas)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torch.distributions import Distribution

from vae_lightning.core.checks import COUNT, NON_NEGATIVE_COUNT, SEED, Check, integer
from vae_lightning.core.memory import FLOAT_BYTES, check_fits
from vae_lightning.explorer.decoder import bytes_b64, decoder_spec, floats, pixels
from vae_lightning.explorer.plane import extent, grid_coords, latent_plane
from vae_lightning.latent import AggregatePosterior, LatentDistribution
from vae_lightning.latent.geometry import fixed_noise

if TYPE_CHECKING:
    from vae_lightning.model import VAEModule


# draws of the model's prior whose central mass the axes cover, beside the test codes
PRIOR_DRAWS = 2000


@dataclass(frozen=True)
class PageSettings:
    """How much a page shows: test codes, grid cells per side for the densities, draws per sampler, atlas
    images per side (decoders the page cannot run), and the seed of the draws."""

    n_points: int = 2000
    grid_size: int = 96
    n_draws: int = 500
    atlas_size: int = 48
    seed: int = 0

    def check(self) -> None:
        for key, value in asdict(self).items():
            CHECKS[key].check(key, value)


CHECKS: dict[str, Check] = {"n_points": COUNT, "grid_size": integer(8, 512), "n_draws": NON_NEGATIVE_COUNT,
                            "atlas_size": integer(2, 128), "seed": SEED}


def check_memory(settings: PageSettings, latent_dim: int) -> None:
    """Refuse, before any work, a page whose tensors would not fit in memory: the codes and their projection, the
    grid's pairwise posterior densities (one chunk of 1024 posteriors), the atlas."""
    check_fits("n_points", settings.n_points, FLOAT_BYTES * (3 * latent_dim + 2 * 784),
               what="of test images, codes and their projection ")
    check_fits("grid_size", settings.grid_size, FLOAT_BYTES * latent_dim * 1024 * 2, power=2,
               what="of grid latents and their posterior densities ")
    check_fits("atlas_size", settings.atlas_size, FLOAT_BYTES * (latent_dim + 784) * 2, power=2,
               what="of atlas latents and images ")


def log_density(distribution: LatentDistribution, z: Tensor) -> Tensor:
    """`distribution.log_prob(z)` as float32 on the CPU, -inf off its support (the latents that its
    `clamp_to_support` moves), with torch's argument checks off while it runs: off (0, 1) a Beta's density is
    -inf, not an error, and not torch's value there (xlogy(0, z) = 0 makes Beta(1, 1)'s log-density 0 at any z)."""
    validate = Distribution._validate_args
    Distribution.set_default_validate_args(False)
    try:
        values = distribution.log_prob(z)
        inside = (distribution.clamp_to_support(z) == z).all(-1)
    finally:
        Distribution.set_default_validate_args(validate)
    values = torch.where(inside & ~torch.isnan(values), values, torch.full_like(values, -math.inf))
    return values.float().cpu()


def pixel_bytes(images: Tensor) -> Tensor:
    """Images in [0, 1] (any shape with 784 values per image) as uint8 [N, 784]."""
    return images.reshape(len(images), 784).mul(255).round().clamp(0, 255).to(torch.uint8)


@torch.no_grad()
def posterior_means(module: VAEModule, images: Tensor, batch_size: int = 1000) -> Tensor:
    """The posterior means [N, D] of images [N, 1, 28, 28], on the CPU."""
    return torch.cat([module.encode(chunk).mean.cpu() for chunk in images.split(batch_size)])


@torch.no_grad()
def run_view(module: VAEModule, images: Tensor, labels: Tensor, samplers: Sequence[LatentDistribution],
             settings: PageSettings, title: str, info: Sequence[str] = ()) -> dict[str, Any]:
    """The view of a trained `module` over the first `settings.n_points` test `images` [N, 1, 28, 28] in [0, 1]
    with their `labels`, with the draws of `samplers` (the model's prior among them)."""
    device = next(module.parameters()).device
    images, labels = images[: settings.n_points].to(device), labels[: settings.n_points]
    codes = posterior_means(module, images).double()
    # a diverged model's codes can overflow: those are left out (and said), the page is still written
    finite = torch.isfinite(codes).all(-1)
    if not finite.all():
        info = [*info, f"{int((~finite).sum())} of the {len(codes)} test codes are not finite (the model's weights "
                       "overflow there) and are left out"]
        codes, images, labels = codes[finite], images[finite.to(device)], labels[finite]
    plane = latent_plane(codes) if len(codes) > module.latent_dim else latent_plane(torch.eye(module.latent_dim))
    coords = plane.coords(codes)
    # the axes follow the codes and the prior's mass (where the prior puts mass and q(z) does not is a finding)
    prior_draws = plane.coords(fixed_noise(module.prior, PRIOR_DRAWS, settings.seed).double().cpu())
    box = extent(coords, prior_draws)
    grid = plane.latents(grid_coords(box, settings.grid_size)).float().to(device)
    no_mass = torch.full((len(grid),), -math.inf)
    aggregate = AggregatePosterior(module.latent_dim).to(device).fit(module, images) if len(codes) else None
    spec = decoder_spec(module)
    atlas = None
    if spec is None:
        nodes = plane.latents(grid_coords(box, settings.atlas_size))
        atlas = {"size": settings.atlas_size, "images": bytes_b64(pixels(module, nodes.to(device)))}
    return {
        "title": title,
        "info": list(info),
        "latent_dim": module.latent_dim,
        "prior": module.prior.name,
        "plane": {"origin": plane.origin.tolist(), "axes": plane.axes.tolist(), "explained": plane.explained},
        "box": box,
        "grid": {"size": settings.grid_size, "prior": floats(log_density(module.prior, grid)),
                 "aggregate": floats(log_density(aggregate, grid) if aggregate is not None else no_mass)},
        "points": {"n": len(codes), "coords": floats(coords), "codes": floats(codes), "labels": bytes_b64(labels)},
        "images": bytes_b64(pixel_bytes(images)),
        "samplers": [{"name": s.name, "label": s.label,
                      "coords": floats(plane.coords(fixed_noise(s.to(device), settings.n_draws,
                                                                settings.seed).double().cpu()))}
                     for s in samplers] if settings.n_draws else [],
        "decoder": spec,
        "atlas": atlas,
        # reconstructions: the page decodes the codes itself when it runs the decoder
        "recon": bytes_b64(pixels(module, codes.to(device))) if spec is None else None,
    }
