"""Write a latent-space explorer page: `python -m vae_lightning.explore ckpt_path=<run>` or `sweep=<multirun folder>`.

One self-contained HTML file (no server, no network): the test codes on the latent plane (a PCA plane for latents
of more than 2 dimensions), the prior's and the aggregate posterior's densities and the samplers' draws as layers,
the decoder's image at the pointer (decoded in the page from the model's weights), a clicked test image beside its
reconstruction; for a sweep, two panels with selectors of configuration and seed (explorer/).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from vae_lightning import cli

if TYPE_CHECKING:
    from omegaconf import DictConfig


HELP = """\
python -m vae_lightning.explore ckpt_path=<run folder or .ckpt> | sweep=<multirun folder> [key=value ...]

Writes one self-contained HTML page (opens from disk: no server, no network) to look at a trained latent
space: the test images' posterior means on the latent plane coloured by digit (for a latent of more than 2
dimensions, the plane of their first two principal components), with layers to switch on: the prior's
density, the aggregate posterior's, their log-ratio (the prior's holes) and the samplers' draws. Pointing
anywhere shows the decoder's image there, decoded in the page from the model's weights; clicking a test code
shows the image and its reconstruction. For a sweep: two panels side by side, each with selectors for the
configuration and the seed, compared at the same pointer position.

Reads    the checkpoint(s); the test images from data.root = {data}  (VAE_DATA_ROOT sets it)
Writes   output=<file.html>, else <run>/explore.html (a sweep: <multirun folder>/explore.html)
"""
EXAMPLES = (
    f"python -m vae_lightning.explore ckpt_path={cli.EXAMPLE_RUN}",
    f"python -m vae_lightning.explore ckpt_path={cli.EXAMPLE_RUN} data.root=data n_points=5000 output=run.html",
    "python -m vae_lightning.explore sweep=logs/train/multiruns/2026-01-31_09-30-00_000000",
    "python -m vae_lightning.explore sweep=logs/train/multiruns/2026-01-31_09-30-00_000000 'seeds=[0,1]'",
)


def settings_of(cfg: DictConfig) -> Any:
    from vae_lightning.explorer import PageSettings

    settings = PageSettings(n_points=cfg.n_points, grid_size=cfg.grid_size, n_draws=cfg.n_draws,
                            atlas_size=cfg.atlas_size, seed=cfg.seed)
    settings.check()
    return settings


def test_images(cfg: DictConfig) -> Any:
    """stored data config -> its test images and labels from cfg.data.root, each read once."""
    import json

    from vae_lightning.explorer.sources import load_test_images

    read: dict[str, Any] = {}

    def images(stored_data: dict[str, Any]) -> Any:
        key = json.dumps(stored_data, sort_keys=True, default=str)
        if key not in read:
            read[key] = load_test_images(stored_data, cfg.data.root)
        return read[key]

    return images


def explore(cfg: DictConfig) -> Path:
    """Write the page of `cfg.ckpt_path` (a run) or of `cfg.sweep` (a multirun folder); returns its path."""
    from vae_lightning.checkpoints import CKPT_PATH, resolve_checkpoint
    from vae_lightning.core.checks import OUTPUT, SEED, check_settings, list_of
    from vae_lightning.core.errors import UserError
    from vae_lightning.explorer.page import check_replaceable
    from vae_lightning.explorer.sources import (
        PAGE_NAME,
        SWEEP,
        check_writable,
        sweep_runs,
        write_run_page,
        write_sweep_page,
    )
    from vae_lightning.runs.earlier import check_switch
    from vae_lightning.runs.folders import run_dir_of

    check_settings(cfg, {"ckpt_path": CKPT_PATH.or_null("with sweep="), "sweep": SWEEP.or_null("with ckpt_path="),
                         "seeds": list_of(SEED).or_null("every seed"), "output": OUTPUT})
    settings = settings_of(cfg)
    if (cfg.ckpt_path is None) == (cfg.sweep is None):
        raise UserError("give one of ckpt_path=<run folder or .ckpt> (a run's page) and sweep=<multirun folder> (a "
                        "sweep's page)")
    if cfg.sweep is not None:
        folder = Path(cfg.sweep)
        runs = sweep_runs(folder, None if cfg.seeds is None else list(cfg.seeds))
        output = Path(cfg.output) if cfg.output else folder / PAGE_NAME
        check_writable(output)
        if cfg.output:  # the folder's own explore.html is its view, rebuilt; a file the user named is protected
            check_replaceable(output, str(folder.absolute()), check_switch(cfg.get("overwrite", False)))
        return write_sweep_page(folder, runs, cfg.samplers or {}, settings, test_images(cfg), output)
    checkpoint = resolve_checkpoint(cfg.ckpt_path)
    run = Path(cfg.ckpt_path) if Path(cfg.ckpt_path).is_dir() else run_dir_of(checkpoint) or checkpoint.parent
    output = Path(cfg.output) if cfg.output else run / PAGE_NAME
    check_writable(output)
    if cfg.output:  # the run's own explore.html is its view, rebuilt; a file the user named is protected
        check_replaceable(output, str(run.absolute()), check_switch(cfg.get("overwrite", False)))
    return write_run_page(run, checkpoint, cfg.samplers or {}, settings, test_images(cfg), output)


def main(cfg: DictConfig) -> None:
    from vae_lightning.core.console import say

    path = cli.run_task(lambda: explore(cfg))
    say("wrote %s (%.1f MB): open it in a browser", path, path.stat().st_size / 1e6)


if __name__ == "__main__":
    cli.run(main, HELP, EXAMPLES, "explore")
