"""Decode a sampler's draws with a trained model: `python -m vae_lightning.sample ckpt_path=... [sampler=...]`.

The model is rebuilt from the config stored in the checkpoint (a learned prior with its trained
parameters); `sampler=prior` (the default) draws from it. No dataset is needed, except by the samplers
fitted to the model (`sampler=aggregate`, `sampler=gmm`), which read the training images from
`data.root`. The noise is `samplers.fixed_noise`: for samplers with quantiles, `n` seeded uniforms
through the quantile function, so two samplers with the same seed show the same quantiles cell by
cell. Multirun works as usual:
`python -m vae_lightning.sample -m ckpt_path=... sampler=beta sampler.alpha=1,1.1,4 sampler.beta=1,2`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig
from torch import Tensor

from vae_lightning import cli
from vae_lightning.checkpoint import CHECKPOINT_KEY, load_checkpoint, module_from_checkpoint, resolve_checkpoint
from vae_lightning.config import register_resolvers
from vae_lightning.data import DataError
from vae_lightning.errors import UserError, build, require
from vae_lightning.module import VAEModule
from vae_lightning.plots import decoded_grid, png_bytes
from vae_lightning.priors import LatentDistribution
from vae_lightning.samplers import fixed_noise, needs_fit

log = logging.getLogger(__name__)
register_resolvers()

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


def load_trained(cfg: DictConfig) -> tuple[VAEModule, dict[str, Any]]:
    """The checked command-line values (`n`, `nrow`), the model of `cfg.ckpt_path` and the config sections
    stored with it."""
    require(bool(cfg.get("ckpt_path")), "ckpt_path", cfg.get("ckpt_path"),
            "a checkpoint file or a run folder, e.g. ckpt_path=logs/train/runs/<timestamp>")
    for key in ("n", "nrow"):
        require(isinstance(cfg[key], int) and cfg[key] >= 1, key, cfg[key], "an integer >= 1")
    checkpoint = load_checkpoint(resolve_checkpoint(cfg.ckpt_path))
    return module_from_checkpoint(checkpoint), checkpoint[CHECKPOINT_KEY]


def build_sampler(cfg: DictConfig, module: VAEModule, stored: dict[str, Any]) -> LatentDistribution:
    """`cfg.sampler` for the model: its own prior for `sampler=prior`; a sampler fitted to the model is
    fitted to the training images of `cfg.data.root` (in the data mode the model was trained on)."""
    if cfg.sampler.get("model_prior"):
        return module.prior
    sampler = build(cfg.sampler, "sampler", latent_dim=module.latent_dim)
    if needs_fit(sampler):
        data = build(stored["data"], "data", root=cfg.data.root, download=False)
        try:
            images = data.fit_images()
        except DataError as err:
            raise UserError(f"sampler {sampler.name} is fitted to the training images, which data.root="
                            f"{cfg.data.root} does not have; set data.root (or VAE_DATA_ROOT) to the folder with "
                            f"MNIST/raw/*.gz ({err})") from err
        sampler.fit(module, images)
    return sampler


def write_png(image: Tensor, output: str | None, default: Path) -> Path:
    """Save an image [3, H, W] at `output`, or at `default` when it is not given."""
    path = Path(output) if output else default
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(image))
    log.info("wrote %s", path)
    return path


def sample(cfg: DictConfig) -> Path:
    """Write the grid of `cfg.n` draws of `cfg.sampler` decoded by the checkpoint's model."""
    module, stored = load_trained(cfg)
    sampler = build_sampler(cfg, module, stored)
    z = fixed_noise(sampler, cfg.n, cfg.seed)
    grid = decoded_grid(module, z, cfg.nrow)
    return write_png(grid, cfg.output, Path(cfg.paths.output_dir) / f"{sampler.name}.png")


@hydra.main(version_base="1.3", config_path="../conf", config_name="sample")
def main(cfg: DictConfig) -> None:
    cli.run_task(lambda: sample(cfg))


if __name__ == "__main__":
    cli.run(main, __doc__, EXAMPLES)
