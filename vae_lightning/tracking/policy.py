"""The logging policy: what a run writes to its trackers, the same for every tracker.

- Scalars go through Lightning (`LightningModule.log`), under slash namespaces (`train/...`, `val/...`,
  `test/...`, `diagnostics/...`), the same names and steps in every logger; evaluate's go under `eval/...`
  at the checkpoint's step (`log_evaluation`).
- Pictures (`log_images`, `log_pngs`): each image encoded once as PNG, the same bytes to every tracker;
  with a folder, into a PNG file too.
- Hyperparameters (`hyperparameters`, `log_hyperparameters`): the same few names for every run and for its
  evaluation, recorded with the final metrics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from lightning.pytorch.loggers import Logger
from torch import Tensor

from vae_lightning.core.files import write_atomically
from vae_lightning.pictures import png_bytes
from vae_lightning.tracking.base import png_name
from vae_lightning.tracking.choose import trackers


class Described(Protocol):
    """What the hyperparameters read of a model (a VAEModule, or one member of a stack)."""

    @property
    def architecture(self) -> str:
        """Its networks' labels."""

    @property
    def latent_dim(self) -> int: ...

    @property
    def likelihood(self) -> Any:
        """With its `name`."""

    @property
    def prior(self) -> Any:
        """With its `label`."""


def hyperparameters(module: Described, schedule: object, lr: float | None, seed: int | None) -> dict[str, Any]:
    """The run's hyperparameters for TensorBoard's HPARAMS tab: the prior and the KL schedule with their
    parameters, the model (networks, likelihood, learning rate), the latent size and the seed.

    The same five names for every run: TensorBoard takes the table's columns from the first run it reads,
    so a per-family name such as `prior.alpha` would be missing whenever a normal-prior run came first; and
    it shows the first five columns without being asked. The prior is its label (`Beta(4, 3)`), the
    schedule its repr with every parameter, the model its networks' labels with the likelihood and the
    learning rate (`mlp 784-400-200-2 leaky_relu / mlp 2-200-400-784 leaky_relu, bernoulli, lr 0.001`).
    """
    model = f"{module.architecture}, {module.likelihood.name}" + (f", lr {lr:g}" if lr is not None else "")
    return {"prior": module.prior.label, "annealing": schedule if isinstance(schedule, str) else repr(schedule),
            "model": model, "latent_dim": module.latent_dim, "seed": seed}


def final_metrics(metrics: Mapping[str, float], key_metrics: Sequence[str]) -> dict[str, float]:
    """The metrics recorded with the hyperparameters: `key_metrics` first (the metric table's HPARAMS column,
    passed in by the run; HPARAMS shows the first five without being asked; 0.0 until a run has them, evaluate's
    filled in when it runs: TensorBoard reads each value from the last point of the scalar of that tag), then
    every val/, test/ and diagnostics/ one."""
    final = {k: metrics.get(k, 0.0) for k in key_metrics}
    final.update({k: v for k, v in metrics.items() if k.startswith(("val/", "test/", "diagnostics/"))})
    return final


def log_hyperparameters(loggers: Sequence[Logger], params: dict[str, Any], metrics: dict[str, float],
                        step: int, key_metrics: Sequence[str]) -> None:
    """Record `params` with the run's final metrics (`final_metrics`, `key_metrics` first) in every tracker, then
    close them (called after training)."""
    for tracker in trackers(loggers):
        tracker.hyperparameters(params, final_metrics(metrics, key_metrics), step)
        tracker.close(trained=True)


def log_images(loggers: Sequence[Logger], images: Mapping[str, Tensor], step: int, subdir: str,
               folder: Path | None = None) -> dict[str, bytes]:
    """Each image [3, H, W] in [0, 1] encoded once as PNG and written to every tracker at `step`
    (`log_pngs`, under `subdir` where a tracker keeps files), and with `folder` to
    `<folder>/<tag with / as _>.png`. Returns tag -> PNG bytes."""
    pngs = {tag: png_bytes(image) for tag, image in images.items()}
    log_pngs(loggers, pngs, step, subdir)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        for tag, png in pngs.items():
            write_atomically(folder / png_name(tag), lambda f, png=png: f.write(png), size=len(png))
    return pngs


def log_pngs(loggers: Sequence[Logger], pngs: Mapping[str, bytes], step: int, subdir: str) -> None:
    """PNG images (tag -> bytes) to every tracker at `step`."""
    for tracker in trackers(loggers):
        tracker.pictures(pngs, step, subdir)


def log_evaluation(loggers: Sequence[Logger], step: int, values: Mapping[str, float], params: dict[str, Any],
                   figures: Sequence[Path]) -> None:
    """An evaluation in every tracker: its scalars (name -> value, `eval/...`) at the checkpoint's global
    step with the run's hyperparameters (`hyperparameters`), and its figures (PNG files, tagged
    `eval/<name>`, kept under `eval/`); then each tracker is closed."""
    pngs = {f"eval/{path.stem}": path.read_bytes() for path in figures}
    for tracker in trackers(loggers):
        tracker.evaluation(values, params, step)
        tracker.pictures(pngs, step, "eval")
        tracker.close(trained=False)
