"""Decode latent draws with a trained model: `python -m vae_lightning.sample ckpt_path=... [prior=...|fitted=...]`.

The model is rebuilt from the config stored in the checkpoint (a learned prior with its trained
parameters) and draws from its own prior by default. `prior=<option>` draws from another distribution of
conf/prior/ instead (the same spelling as training with it: `prior=beta prior.alpha=4 prior.beta=3`);
`fitted=<option>` from one of conf/fitted/ (aggregate, gmm, flow), fitted to the model first from the training
images of `data.root`. For samplers with quantiles the noise is `n` seeded uniforms through the quantile
function, so two samplers with the same seed show the same quantiles cell by cell. Multirun works as
usual: `python -m vae_lightning.sample -m ckpt_path=... prior=beta prior.alpha=1,1.1,4 prior.beta=1,2`.
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
python -m vae_lightning.sample ckpt_path=<run folder or .ckpt> [prior=option | fitted=option] [key=value ...]

Draws n latents and writes the trained decoder's images as one PNG grid: of the model's own prior by
default, of another distribution of conf/prior/ (prior=beta prior.alpha=4 prior.beta=3), or of one of
conf/fitted/ fitted to the model (fitted=gmm). The same seed gives every sampler the same draws (quantile by
quantile where it can), so two grids compare cell by cell.

Reads    the checkpoint; the samplers fitted to the model (fitted=aggregate, gmm, flow) also read the training images
         from data.root = {data}  (VAE_DATA_ROOT sets it)
Writes   output=<file.png>, else {logs}/sample/runs/<timestamp>/<sampler>.png; an existing output=<file.png>
         is replaced only by the same picture again (same checkpoint, step and settings) or with overwrite=true
"""
EXAMPLES = (
    f"python -m vae_lightning.sample ckpt_path={cli.EXAMPLE_RUN}",
    f"python -m vae_lightning.sample ckpt_path={cli.EXAMPLE_RUN} fitted=aggregate data.root=data",
    f"python -m vae_lightning.sample ckpt_path={cli.EXAMPLE_RUN} prior=gaussian prior.loc=1 prior.scale=2",
    f"python -m vae_lightning.sample ckpt_path={cli.EXAMPLE_RUN} prior=beta prior.alpha=4 prior.beta=3 "
    "n=100 nrow=10 output=beta_4_3.png",
    f"python -m vae_lightning.sample -m ckpt_path={cli.EXAMPLE_RUN} prior=beta prior.alpha=1,1.1,4 "
    "prior.beta=1,2",
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
    """The distribution to draw from, at the model's latent size: `cfg.prior` or `cfg.fitted` (fitted to the
    model), else the model's own prior."""
    from vae_lightning.core.building import build
    from vae_lightning.core.errors import UserError
    from vae_lightning.latent.sampler_sets import fit_samplers

    chosen = [group for group in ("prior", "fitted") if cfg.get(group)]
    if not chosen:
        return module.prior
    if len(chosen) > 1:
        raise UserError("prior= and fitted= both choose the distribution to draw from: give one of them (neither: "
                        "the model's own prior)")
    sampler = build(cfg[chosen[0]], chosen[0], latent_dim=module.latent_dim)
    fit_samplers([sampler], module, lambda: training_images(cfg, stored, sampler.name))
    return sampler


def sample(cfg: DictConfig) -> Path:
    """Write the grid of `cfg.n` draws of the chosen distribution decoded by the checkpoint's model."""
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
