"""The plane a page shows: the latent plane itself for 2-D latents, else the plane of the posterior means'
first two principal components through their mean (PCA), with the share of their variance it holds."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Plane:
    """z = origin + u * axes[0] + v * axes[1]; `explained`: the variance share of each axis (PCA), None when
    the plane is the whole latent space."""

    origin: Tensor  # [D]
    axes: Tensor  # [2, D], orthonormal rows
    explained: tuple[float, float] | None = None

    def coords(self, z: Tensor) -> Tensor:
        """Plane coordinates [..., 2] of latents [..., D] (their orthogonal projection)."""
        return (z - self.origin) @ self.axes.T

    def latents(self, uv: Tensor) -> Tensor:
        """Latents [..., D] of plane coordinates [..., 2]."""
        return self.origin + uv @ self.axes


def latent_plane(codes: Tensor) -> Plane:
    """The plane of posterior means `codes` [N, D]: the latent plane for D = 2, else their PCA plane
    (each axis's sign chosen so that its largest component is positive, so the plane does not flip)."""
    codes = codes.double()
    dim = codes.shape[-1]
    if dim == 2:
        return Plane(torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64))
    if dim < 2:
        raise ValueError("a latent plane needs at least 2 latent dimensions")
    mean = codes.mean(0)
    _, s, vh = torch.linalg.svd(codes - mean, full_matrices=False)
    axes = vh[:2]
    signs = torch.sign(axes.gather(1, axes.abs().argmax(1, keepdim=True)))
    variance = s**2
    share = variance / variance.sum().clamp_min(1e-300)
    return Plane(mean, axes * signs, (float(share[0]), float(share[1])))


def extent(*point_sets: Tensor, margin: float = 0.15, tail: float = 0.005) -> list[float]:
    """[u_lo, u_hi, v_lo, v_hi]: a square box around sets of plane coordinates [N, 2]: around each set's `tail`
    to 1 - `tail` quantiles (so that a few stray points do not stretch the axes) together, widened by `margin`
    of the wider side on each side. The axes follow the data and keep one scale; points that are not finite (a
    diverged model's codes) are left out."""
    q = torch.tensor([tail, 1 - tail], dtype=torch.float64)
    finite = [p.double()[torch.isfinite(p).all(-1)] for p in point_sets]
    quantiles = [torch.quantile(p, q, dim=0) for p in finite if len(p)]
    if not quantiles:  # nothing finite to follow: the unit square around 0
        return [-1.0, 1.0, -1.0, 1.0]
    bounds = torch.stack(quantiles)  # [S, 2 (lo, hi), 2 (u, v)]
    lo, hi = bounds[:, 0].min(0).values, bounds[:, 1].max(0).values
    centre, half = (lo + hi) / 2, float((hi - lo).max()) / 2
    half = max(half * (1 + 2 * margin), 1e-3)
    return [float(centre[0]) - half, float(centre[0]) + half, float(centre[1]) - half, float(centre[1]) + half]


def grid_coords(box: list[float], size: int) -> Tensor:
    """The centres [size * size, 2] of a size x size grid of cells over `box`, row by row from the top (v
    falling), each row left to right (u rising): the order of an image's pixels."""
    u_lo, u_hi, v_lo, v_hi = box
    u = u_lo + (torch.arange(size, dtype=torch.float64) + 0.5) * (u_hi - u_lo) / size
    v = v_hi - (torch.arange(size, dtype=torch.float64) + 0.5) * (v_hi - v_lo) / size
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    return torch.stack([uu.reshape(-1), vv.reshape(-1)], dim=-1)
