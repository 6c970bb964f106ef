"""Decode a sampler's draws with a trained model: `python -m vae_lightning.sample ckpt_path=... [sampler=...]`.

Needs no dataset and no training: the model is rebuilt from the config stored in the checkpoint.
The noise is `n` seeded uniforms through the sampler's quantile function (samplers.py), so two
samplers with the same seed show the same quantiles cell by cell. Multirun works as usual:
`python -m vae_lightning.sample -m ckpt_path=... sampler=beta sampler.alpha=1,1.1,4 sampler.beta=1,2`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig
from torch import Tensor

from vae_lightning import cli
from vae_lightning.checkpoint import load_model
from vae_lightning.config import register_resolvers
from vae_lightning.errors import build, require
from vae_lightning.module import VAEModule
from vae_lightning.plots import decoded_grid, png_bytes
from vae_lightning.samplers import fixed_uniforms

log = logging.getLogger(__name__)
register_resolvers()

EXAMPLES = (
    f"python -m vae_lightning.sample ckpt_path={cli.EXAMPLE_RUN}",
    f"python -m vae_lightning.sample ckpt_path={cli.EXAMPLE_RUN} sampler=gaussian sampler.loc=1 "
    "sampler.scale=2",
    f"python -m vae_lightning.sample ckpt_path={cli.EXAMPLE_RUN} sampler=beta sampler.alpha=4 sampler.beta=3 "
    "n=100 nrow=10 output=beta_4_3.png",
    f"python -m vae_lightning.sample -m ckpt_path={cli.EXAMPLE_RUN} sampler=beta sampler.alpha=1,1.1,4 "
    "sampler.beta=1,2",
)


def load_trained(cfg: DictConfig) -> VAEModule:
    """The checked command-line values (`n`, `nrow`) and the model of `cfg.ckpt_path`."""
    require(bool(cfg.get("ckpt_path")), "ckpt_path", cfg.get("ckpt_path"),
            "a checkpoint file or a run folder, e.g. ckpt_path=logs/train/runs/<timestamp>")
    for key in ("n", "nrow"):
        require(isinstance(cfg[key], int) and cfg[key] >= 1, key, cfg[key], "an integer >= 1")
    return load_model(cfg.ckpt_path)


def write_png(image: Tensor, output: str | None, default: Path) -> Path:
    """Save an image [3, H, W] at `output`, or at `default` when it is not given."""
    path = Path(output) if output else default
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(image))
    log.info("wrote %s", path)
    return path


def sample(cfg: DictConfig) -> Path:
    """Write the grid of `cfg.n` draws of `cfg.sampler` decoded by the checkpoint's model."""
    module = load_trained(cfg)
    sampler = build(cfg.sampler, "sampler", latent_dim=module.latent_dim)
    z = sampler.icdf(fixed_uniforms(cfg.n, module.latent_dim, cfg.seed))
    grid = decoded_grid(module, z, cfg.nrow)
    return write_png(grid, cfg.output, Path(cfg.paths.output_dir) / f"{sampler.name}.png")


@hydra.main(version_base="1.3", config_path="../conf", config_name="sample")
def main(cfg: DictConfig) -> None:
    cli.run_task(lambda: sample(cfg))


if __name__ == "__main__":
    cli.run(main, __doc__, EXAMPLES)
