"""Labelled matplotlib figures of a trained VAE: sample grids side by side, the latent manifold, the
latent scatter. Figures are drawn on matplotlib's Agg canvas directly (no pyplot, no display, no
global figure state) and returned as images [3, H, W] in [0, 1], like the grids.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

from vae_lightning.pictures.grids import to_uint8

DPI = 100


def figure_image(fig: Figure) -> Tensor:
    """Render a figure on the Agg canvas and return its pixels."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3]
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).float().div_(255)


def panel_figure(panels: Sequence[tuple[str, Tensor]], ncols: int, title: str | None = None) -> Tensor:
    """Grids side by side, `ncols` per row, each under its title (e.g. the sampler's distribution).

    The grids are pasted pixel for pixel (`figimage`: no axes, no resampling), which is also
    several times cheaper to draw than one set of axes per grid.
    """
    ncols = max(1, min(ncols, len(panels)))
    nrows = -(-len(panels) // ncols)
    height, width = (max(grid.shape[d] for _, grid in panels) for d in (1, 2))
    gap, title_px, head_px = 12, 24, 30 if title else 0
    fig_w, fig_h = ncols * (width + gap) + gap, nrows * (height + title_px + gap) + head_px
    fig = Figure(figsize=(fig_w / DPI, fig_h / DPI), dpi=DPI)
    for k, (panel_title, grid) in enumerate(panels):
        row, col = divmod(k, ncols)
        x0 = gap + col * (width + gap)
        top = fig_h - head_px - row * (height + title_px + gap) - title_px  # pixels from the bottom
        fig.figimage(to_uint8(grid), xo=x0, yo=top - grid.shape[1], origin="upper")
        fig.text((x0 + width / 2) / fig_w, (top + 6) / fig_h, panel_title, ha="center", va="bottom", fontsize=11)
    if title:
        fig.text(0.5, 1 - 8 / fig_h, title, ha="center", va="top", fontsize=12)
    return figure_image(fig)


def manifold_figure(grid: Tensor, z0: Tensor, z1: Tensor, title: str, every: int = 4) -> Tensor:
    """A padding-free grid of decoded digits whose column j is z0[j] and row i is z1[-1 - i] (so z1
    grows upwards), with every `every`-th latent value on the axes."""
    size = len(z0)
    cell = grid.shape[-1] / size
    fig = Figure(figsize=(6.4, 6.4), dpi=DPI)
    ax = fig.add_axes((0.12, 0.1, 0.84, 0.84))
    ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
    ticks = list(range(0, size, every))
    ax.set_xticks([(j + 0.5) * cell for j in ticks], [f"{float(z0[j]):.2g}" for j in ticks])
    ax.set_yticks([(i + 0.5) * cell for i in ticks], [f"{float(z1[size - 1 - i]):.2g}" for i in ticks])
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    ax.set_title(title, fontsize=10)
    return figure_image(fig)


def scatter_figure(z: Tensor, labels: Tensor, regions: Sequence[tuple[str, Tensor]], title: str) -> Tensor:
    """2-D latent codes coloured by digit label (0-9), with each region (name, [2, 2] lower/upper corners)
    drawn as a box over them."""
    fig = Figure(figsize=(7.5, 6), dpi=DPI)
    ax = fig.add_axes((0.09, 0.08, 0.74, 0.86))
    # one marker line per digit: Agg draws those several times faster than a per-point scatter
    digits = ScalarMappable(Normalize(-0.5, 9.5), colormaps["tab10"])
    for digit in labels.unique().tolist():
        mine = z[labels == digit]
        ax.plot(mine[:, 0].numpy(), mine[:, 1].numpy(), ".", markersize=2, alpha=0.6, linestyle="none",
                color=digits.to_rgba(digit))
    fig.colorbar(digits, cax=fig.add_axes((0.86, 0.08, 0.03, 0.86)), ticks=range(10), label="label")
    colours, styles = colormaps["Dark2"].colors, ["-", "--", "-.", ":"]
    for k, (name, corners) in enumerate(regions):
        (x0, y0), (x1, y1) = corners[:, :2].tolist()
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, linewidth=1.8, label=name,
                               edgecolor=colours[k % len(colours)], linestyle=styles[k % len(styles)]))
    ax.autoscale_view()
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    ax.legend(fontsize=8, loc="best", framealpha=0.8)
    ax.set_title(title, fontsize=10)
    return figure_image(fig)
