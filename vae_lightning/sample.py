"""Decode a sampler's draws with a trained model: `python -m vae_lightning.sample ckpt_path=... [sampler=...]`.

The model is rebuilt from the config stored in the checkpoint (a learned prior with its trained
parameters); `sampler=prior` (the default) draws from it. No dataset is needed, except by the samplers
fitted to the model (`sampler=aggregate`, `sampler=gmm`, `sampler=flow`), which read the training images from
`data.root`. For samplers with quantiles the noise is `n` seeded uniforms through the quantile
function, so two samplers with the same seed show the same quantiles cell by cell. Multirun works as
usual: `python -m vae_lightning.sample -m ckpt_path=... sampler=beta sampler.alpha=1,1.1,4 sampler.beta=1,2`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from vae_lightning import cli

if TYPE_CHECKING:
    from omegaconf import DictConfig
    from torch import Tensor

    from vae_lightning.latent import LatentDistribution
    from vae_lightning.model import VAEModule


HELP = """\
python -m vae_lightning.sample ckpt_path=<run folder or .ckpt> [sampler=option] [key=value ...]

Draws n latents from a sampler and writes the trained decoder's images as one PNG grid: the model's own
prior by default, or any other (sampler=beta sampler.alpha=4 sampler.beta=3). The same seed gives every
sampler the same draws (quantile by quantile where it can), so two grids compare cell by cell.

Reads    the checkpoint; the samplers fitted to the model (aggregate, gmm, flow) also read the training images
         from data.root = {data}  (VAE_DATA_ROOT sets it)
Writes   output=<file.png>, else {logs}/sample/runs/<timestamp>/<sampler>.png; an existing output=<file.png>
         is replaced only by the same picture again (same checkpoint, step and settings) or with overwrite=true
"""
EXAMPLES = (
    f"python -m vae_lightning.sample ckpt_path={cli.EXAMPLE_RUN}",
    f"python -m vae_lightning.sample ckpt_path={cli.EXAMPLE_RUN} sampler=aggregate data.root=data",
    f"python -m vae_lightning.sample ckpt_path={cli.EXAMPLE_RUN} sampler=gaussian sampler.loc=1 "
    "sampler.scale=2",
    f"python -m vae_lightning.sample ckpt_path={cli.EXAMPLE_RUN} sampler=beta sampler.alpha=4 sampler.beta=3 "
    "n=100 nrow=10 output=beta_4_3.png",
    f"python -m vae_lightning.sample -m ckpt_path={cli.EXAMPLE_RUN} sampler=beta sampler.alpha=1,1.1,4 "
    "sampler.beta=1,2",
)


def training_images(cfg: DictConfig, stored: dict[str, Any], name: str) -> Tensor:
    """The training images of `cfg.data.root`, in the data mode the model was trained on, for a sampler
    fitted to the model; one line naming data.root when they are not there."""
    from vae_lightning.core.building import build
    from vae_lightning.core.errors import UserError
    from vae_lightning.data import DataError

    data = build(stored["data"], "data", root=cfg.data.root, download=False)
    try:
        return data.fit_images()
    except DataError as err:
        raise UserError(f"sampler {name} is fitted to the training images, which data.root={cfg.data.root} does "
                        "not have; set data.root (or VAE_DATA_ROOT) to the folder with MNIST/raw/*.gz "
                        f"({err})") from err


def chosen_sampler(cfg: DictConfig, module: VAEModule, stored: dict[str, Any]) -> LatentDistribution:
    """`cfg.sampler` for the model, fitted to it: its own prior for `sampler=prior`."""
    from vae_lightning.core.building import build
    from vae_lightning.latent.samplers import fit_samplers

    if cfg.sampler.get("model_prior"):
        return module.prior
    sampler = build(cfg.sampler, "sampler", latent_dim=module.latent_dim)
    fit_samplers([sampler], module, lambda: training_images(cfg, stored, sampler.name))
    return sampler


def sample(cfg: DictConfig) -> Path:
    """Write the grid of `cfg.n` draws of `cfg.sampler` decoded by the checkpoint's model."""
    from vae_lightning.checkpoints import CKPT_PATH, load_trained, resolve_checkpoint
    from vae_lightning.core.checks import COUNT, OUTPUT, SEED, check_settings
    from vae_lightning.core.memory import FLOAT_BYTES, check_fits
    from vae_lightning.latent.geometry import fixed_noise
    from vae_lightning.pictures import decoded_grid, write_png
    from vae_lightning.runs.earlier import PICTURE_KEY, check_picture, picture_record

    check_settings(cfg, {"ckpt_path": CKPT_PATH, "n": COUNT, "nrow": COUNT, "seed": SEED, "output": OUTPUT})
    module, stored, step = load_trained(cfg.ckpt_path)
    check_fits("n", cfg.n, FLOAT_BYTES * (module.latent_dim + 784 + 3 * 30 * 30),
               what="of latents, decoded images and grid pixels ")
    sampler = chosen_sampler(cfg, module, stored)
    path = Path(cfg.output) if cfg.output else Path(cfg.paths.output_dir) / f"{sampler.name}.png"
    record = picture_record("sample", cfg, str(resolve_checkpoint(cfg.ckpt_path).absolute()), step)
    check_picture(path, record, cfg.get("overwrite", False))
    grid = decoded_grid(module, fixed_noise(sampler, cfg.n, cfg.seed), cfg.nrow)
    return write_png(grid, path, {PICTURE_KEY: record})


def main(cfg: DictConfig) -> None:
    from vae_lightning.core.console import say

    say("wrote %s", cli.run_task(lambda: sample(cfg)))


if __name__ == "__main__":
    cli.run(main, HELP, EXAMPLES, "sample")
