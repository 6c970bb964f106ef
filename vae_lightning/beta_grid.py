"""The study's plot across Beta parameters: `python -m vae_lightning.beta_grid ckpt_path=... 'alphas=[1,4]'`.

One figure, rows = alphas, columns = betas, each panel the model's samples under Beta(alpha, beta)
titled so; every panel decodes the same quantiles (one seeded draw of uniforms), so a cell
moves only because the parameters do.
"""

from __future__ import annotations

import math
from pathlib import Path

import hydra
from omegaconf import DictConfig

from vae_lightning import cli
from vae_lightning.errors import require
from vae_lightning.plots import decoded_grid, panel_figure
from vae_lightning.priors import BetaPrior
from vae_lightning.sample import load_trained, write_png
from vae_lightning.samplers import fixed_uniforms

EXAMPLES = (
    f"python -m vae_lightning.beta_grid ckpt_path={cli.EXAMPLE_RUN}",
    f"python -m vae_lightning.beta_grid ckpt_path={cli.EXAMPLE_RUN} 'alphas=[1,4]' 'betas=[1,2,3]' "
    "n=16 nrow=4",
    f"python -m vae_lightning.beta_grid ckpt_path={cli.EXAMPLE_RUN}/checkpoints/last.ckpt output=grid.png",
)


def beta_grid(cfg: DictConfig) -> Path:
    """Write the alphas x betas figure of the checkpoint's samples."""
    for key in ("alphas", "betas"):
        values = list(cfg[key]) if cfg[key] is not None else []
        require(len(values) > 0 and all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in values),
                key, values, "a non-empty list of numbers > 0, e.g. [1,1.1,4]")
    module, _ = load_trained(cfg)
    u = fixed_uniforms(cfg.n, module.latent_dim, cfg.seed)
    panels = []
    for alpha in cfg.alphas:
        for beta in cfg.betas:
            sampler = BetaPrior(module.latent_dim, alpha=alpha, beta=beta)
            panels.append((sampler.label, decoded_grid(module, sampler.icdf(u), cfg.nrow)))
    figure = panel_figure(panels, ncols=len(cfg.betas),
                          title="Beta(α, β) samples: rows α, columns β, the same quantiles in every panel")
    return write_png(figure, cfg.output, Path(cfg.paths.output_dir) / "beta_grid.png")


@hydra.main(version_base="1.3", config_path="../conf", config_name="beta_grid")
def main(cfg: DictConfig) -> None:
    cli.run_task(lambda: beta_grid(cfg))


if __name__ == "__main__":
    cli.run(main, __doc__, EXAMPLES)
