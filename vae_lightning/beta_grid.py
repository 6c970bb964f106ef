"""The study's plot across Beta parameters: `python -m vae_lightning.beta_grid ckpt_path=... 'alphas=[1,4]'`.

One figure, rows = alphas, columns = betas, each panel the model's samples under Beta(alpha, beta)
titled so; every panel decodes the same quantiles (one seeded draw of uniforms), so a cell
moves only because the parameters do.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from vae_lightning import cli

if TYPE_CHECKING:
    from omegaconf import DictConfig

HELP = """\
python -m vae_lightning.beta_grid ckpt_path=<run folder or .ckpt> ['alphas=[...]'] ['betas=[...]']

The study's plot across Beta parameters: one figure with a panel of the model's samples for every
(alpha, beta), rows = alphas, columns = betas; every panel decodes the same quantiles, so a digit moves
only because the parameters do.

Reads    the checkpoint
Writes   output=<file.png>, else {logs}/beta_grid/runs/<timestamp>/beta_grid.png; an existing output=<file.png>
         is replaced only by the same picture again (same checkpoint, step and settings) or with overwrite=true
"""
EXAMPLES = (
    f"python -m vae_lightning.beta_grid ckpt_path={cli.EXAMPLE_RUN}",
    f"python -m vae_lightning.beta_grid ckpt_path={cli.EXAMPLE_RUN} 'alphas=[1,4]' 'betas=[1,2,3]' "
    "n=16 nrow=4",
    f"python -m vae_lightning.beta_grid ckpt_path={cli.EXAMPLE_RUN}/checkpoints/last.ckpt output=grid.png",
)


def beta_grid(cfg: DictConfig) -> Path:
    """Write the alphas x betas figure of the checkpoint's samples."""
    from vae_lightning.checkpoints import CKPT_PATH, load_trained, resolve_checkpoint
    from vae_lightning.core.checks import COUNT, OUTPUT, POSITIVE, SEED, check_settings, list_of
    from vae_lightning.core.memory import FLOAT_BYTES, check_fits
    from vae_lightning.latent import BetaPrior
    from vae_lightning.latent.geometry import fixed_uniforms
    from vae_lightning.pictures import decoded_grid, panel_figure, write_png
    from vae_lightning.runs.earlier import PICTURE_KEY, check_picture, picture_record

    parameters = list_of(POSITIVE, what="a non-empty list of numbers > 0, e.g. [1,1.1,4]")
    check_settings(cfg, {"alphas": parameters, "betas": parameters, "ckpt_path": CKPT_PATH, "n": COUNT,
                         "nrow": COUNT, "seed": SEED,
                         "output": OUTPUT})
    module, _, step = load_trained(cfg.ckpt_path)
    path = Path(cfg.output) if cfg.output else Path(cfg.paths.output_dir) / "beta_grid.png"
    record = picture_record("beta_grid", cfg, str(resolve_checkpoint(cfg.ckpt_path).absolute()), step)
    check_picture(path, record, cfg.get("overwrite", False))
    panels = len(cfg.alphas) * len(cfg.betas)
    check_fits("n", cfg.n, panels * FLOAT_BYTES * (module.latent_dim + 784 + 2 * 3 * 30 * 30),
               what=f"for {len(cfg.alphas)} x {len(cfg.betas)} panels of n digits ")
    u = fixed_uniforms(cfg.n, module.latent_dim, cfg.seed)
    panels = []
    for alpha in cfg.alphas:
        for beta in cfg.betas:
            sampler = BetaPrior(module.latent_dim, alpha=alpha, beta=beta)
            panels.append((sampler.label, decoded_grid(module, sampler.icdf(u), cfg.nrow)))
    figure = panel_figure(panels, ncols=len(cfg.betas),
                          title="Beta(α, β) samples: rows α, columns β, the same quantiles in every panel")
    return write_png(figure, path, {PICTURE_KEY: record})


def main(cfg: DictConfig) -> None:
    from vae_lightning.core.console import say

    say("wrote %s", cli.run_task(lambda: beta_grid(cfg)))


if __name__ == "__main__":
    cli.run(main, HELP, EXAMPLES, "beta_grid")
