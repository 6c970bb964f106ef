"""The logging policy: what a run writes to its experiment trackers (the configured Lightning loggers),
in one place, so that no command or callback writes to one tracker's API directly.

- Scalars go through Lightning (`LightningModule.log`), under slash namespaces (`train/...`,
  `val/...`, `test/...`, `diagnostics/...`); evaluate's go under `eval/...` (`log_evaluation`).
- Pictures (`log_images`): each image encoded once as PNG, the same bytes into every TensorBoard event
  file and, with a folder, into a PNG file.
- Hyperparameters (`hyperparameters`, `log_hyperparameters`): the same few names for every run and for
  its evaluation, recorded with the final metrics.

This is the only module that touches TensorBoard's writer below `SummaryWriter` (its file writer takes
ready-made summaries: encoded images, HPARAMS sessions).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightning.pytorch.loggers import Logger, TensorBoardLogger
from torch import Tensor

from vae_lightning.pictures import png_bytes

if TYPE_CHECKING:
    from vae_lightning.model import Schedule, VAEModule


def event_folder(run: Path) -> Path:
    """The folder of a run's TensorBoard events: <run>/tensorboard/<its label> (runs.folders.run_label), or
    <run>/tensorboard itself for a run written before runs were named."""
    base = run / "tensorboard"
    if not base.is_dir() or any(base.glob("events.out.tfevents.*")):
        return base
    named = sorted({p.parent for p in base.glob("*/events.out.tfevents.*")})
    return named[0] if named else base


def hyperparameters(module: VAEModule, schedule: Schedule | str, lr: float | None, seed: int | None) -> dict[str, Any]:
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


# The metrics HPARAMS shows first (it shows five without being asked): evaluate's are filled in when it runs
KEY_METRICS = ("val/elbo", "test/elbo", "eval/nll_exact", "eval/nll_iwae", "eval/fid/own_prior")


def _file_writer(logger: TensorBoardLogger) -> Any:
    """The FileWriter behind a TensorBoard logger's SummaryWriter (torch and tensorboardX alike): the run's
    own events file, which takes ready-made summaries."""
    return logger.experiment._get_file_writer()


def log_hyperparameters(loggers: Sequence[Logger], params: dict[str, Any], metrics: dict[str, float],
                        step: int) -> None:
    """Record `params` with the run's final validation and test metrics, then close the loggers.

    TensorBoard's HPARAMS tab reads the hyperparameters from the session summary written here and
    each metric's value from the last point of the scalar with the same tag (`val/elbo`, ...),
    which training already logged: no scalar point is written here (a repeated point would give a
    resumed run's curves extra values). Called after training, so the logger's writer is closed
    again afterwards.
    """
    from torch.utils.tensorboard.summary import hparams

    final = {k: metrics.get(k, 0.0) for k in KEY_METRICS}  # the values are read from the scalars of these tags
    final.update({k: v for k, v in metrics.items() if k.startswith(("val/", "test/", "diagnostics/"))})
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            writer = _file_writer(logger)
            for summary in hparams(params, final):
                writer.add_summary(summary, step)
        else:
            logger.log_hyperparams(params)
        logger.finalize("success")


def log_images(loggers: Sequence[Logger], images: Mapping[str, Tensor], step: int,
               folder: Path | None = None) -> dict[str, bytes]:
    """Each image [3, H, W] in [0, 1] encoded once as PNG and written to every TensorBoard logger (as
    `add_image` would write it, without its resize and second encoding) at `step`, and with `folder`
    to `<folder>/<tag with / as _>.png`. Returns tag -> PNG bytes."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    pngs = {tag: png_bytes(image) for tag, image in images.items()}
    summary = Summary(value=[
        Summary.Value(tag=tag, image=Summary.Image(height=images[tag].shape[1], width=images[tag].shape[2],
                                                   colorspace=3, encoded_image_string=png))
        for tag, png in pngs.items()])
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            _file_writer(logger).add_summary(summary, step)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        for tag, png in pngs.items():
            (folder / f"{tag.replace('/', '_')}.png").write_bytes(png)
    return pngs


def log_evaluation(log_dir: Path, step: int, values: dict[str, float], params: dict[str, Any]) -> None:
    """An evaluation's `eval/...` scalars at the checkpoint's global step in the TensorBoard events of
    `log_dir`. The run's HPARAMS row (written by training, which lists evaluate's key metrics) reads its
    `eval/` columns from these scalars; a checkpoint evaluated outside its run folder gets an HPARAMS
    session of its own with the run's hyperparameters (`hyperparameters`)."""
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    trained_here = any(log_dir.glob("events.out.tfevents.*"))
    writer = SummaryWriter(log_dir=str(log_dir))
    for tag, value in values.items():
        writer.add_scalar(tag, value, step)
    if not trained_here:
        for summary in hparams({k: v for k, v in params.items() if v is not None}, values):
            writer._get_file_writer().add_summary(summary, step)
    writer.close()
