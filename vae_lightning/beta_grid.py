"""The study's plot across Beta parameters: `python -m vae_lightning.beta_grid ckpt_path=... 'alphas=[1,4]'`.

One figure, rows = alphas, columns = betas, each panel the model's samples under Beta(alpha, beta)
titled so; every panel decodes the same quantiles (one seeded draw of uniforms), so a cell
moves only because the parameters do.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from vae_lightning import cli
from vae_lightning.runs.folders import register_resolvers

register_resolvers()

EXAMPLES = (
    f"python -m vae_lightning.beta_grid ckpt_path={cli.EXAMPLE_RUN}",
    f"python -m vae_lightning.beta_grid ckpt_path={cli.EXAMPLE_RUN} 'alphas=[1,4]' 'betas=[1,2,3]' "
    "n=16 nrow=4",
    f"python -m vae_lightning.beta_grid ckpt_path={cli.EXAMPLE_RUN}/checkpoints/last.ckpt output=grid.png",
)


def beta_grid(cfg: DictConfig) -> Path:
    """Write the alphas x betas figure of the checkpoint's samples."""
    from vae_lightning.core.checks import COUNT, POSITIVE, check_settings, list_of
    from vae_lightning.latent import BetaPrior
    from vae_lightning.latent.geometry import fixed_uniforms
    from vae_lightning.pictures import decoded_grid, panel_figure, write_png
    from vae_lightning.runs.checkpoint import CKPT_PATH, load_trained

    parameters = list_of(POSITIVE, what="a non-empty list of numbers > 0, e.g. [1,1.1,4]")
    check_settings(cfg, {"alphas": parameters, "betas": parameters, "ckpt_path": CKPT_PATH, "n": COUNT,
                         "nrow": COUNT})
    module, _, _ = load_trained(cfg.ckpt_path)
    u = fixed_uniforms(cfg.n, module.latent_dim, cfg.seed)
    panels = []
    for alpha in cfg.alphas:
        for beta in cfg.betas:
            sampler = BetaPrior(module.latent_dim, alpha=alpha, beta=beta)
            panels.append((sampler.label, decoded_grid(module, sampler.icdf(u), cfg.nrow)))
    figure = panel_figure(panels, ncols=len(cfg.betas),
                          title="Beta(α, β) samples: rows α, columns β, the same quantiles in every panel")
    return write_png(figure, Path(cfg.output) if cfg.output else Path(cfg.paths.output_dir) / "beta_grid.png")


@hydra.main(version_base="1.3", config_path="../conf", config_name="beta_grid")
def main(cfg: DictConfig) -> None:
    cli.run_task(lambda: beta_grid(cfg))


if __name__ == "__main__":
    cli.run(main, __doc__, EXAMPLES)
