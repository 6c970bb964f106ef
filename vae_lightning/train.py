"""Train a VAE: `python -m vae_lightning.train [overrides]`.

Composes `conf/train.yaml`, builds data, prior, model, KL schedule, callbacks, logger and trainer
from it, fits, then tests the best checkpoint. With `ckpt_path=<run>/checkpoints/x.ckpt` it resumes
that run: the run's own saved config plus this command's overrides, same folder.

Errors that are the user's to fix are one line `error: ...` and exit status 2; an interrupted run
prints the command that resumes it and exits 130 (SIGINT) or 143 (SIGTERM).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vae_lightning import cli

if TYPE_CHECKING:
    from omegaconf import DictConfig

HELP = """\
python -m vae_lightning.train [group=option ...] [key=value ...]      (-m: a sweep, one job per combination)

Trains a VAE on MNIST and tests its best checkpoint: the study's 2-D MLP with an N(0, 1) prior unless
you choose otherwise (prior=beta prior.alpha=4 prior.beta=3, annealing=linear, model=conv, ...).
With ckpt_path=<run>/checkpoints/last.ckpt it resumes that run in its own folder with its own settings.
With 'seeds=[0,1,2,3]' it trains the configuration at each seed in one process, as one stacked model, one
run folder per member (<run>/seed_<s>/).

Reads    MNIST from data.root = {data}  (VAE_DATA_ROOT sets it; the files are <root>/MNIST/raw/*.gz)
Writes   {logs}/train/runs/<timestamp>/  (paths.log_dir or VAE_LOG_DIR sets the folder;
         a sweep: .../train/multiruns/<timestamp>/<job>/): checkpoints/, TensorBoard events,
         the sample pictures, train.log, the settings (.hydra/)
"""
EXAMPLES = (
    "python -m vae_lightning.train",
    "python -m vae_lightning.train prior=beta prior.alpha=4 prior.beta=3 annealing=linear trainer.max_epochs=30",
    "python -m vae_lightning.train experiment=study data.root=/data/mnist",
    "python -m vae_lightning.train -m prior=normal,gaussian,beta seed=1,2,3",
    "python -m vae_lightning.train prior=mog 'seeds=[0,1,2,3,4,5,6,7]'",
    f"python -m vae_lightning.train ckpt_path={cli.EXAMPLE_RUN}/checkpoints/last.ckpt trainer.max_epochs=40",
)


def main(cfg: DictConfig) -> float | None:
    """Returns the configured `optimized_metric` for Hydra's sweepers (NaN for a failed sweep job)."""
    from vae_lightning.explorer.sources import write_trained_page
    from vae_lightning.runs import sweep
    from vae_lightning.runs.members import train_any
    from vae_lightning.runs.training import resume_config

    # with explore=true training ends by writing the run's explorer page (explorer/ sits above runs/: given here)
    if sweep.in_multirun():  # a failure is recorded in the job's folder and the sweep goes on
        metrics = sweep.run_job(lambda: train_any(sweep.continue_own_checkpoint(resume_config(cfg)),
                                                  write_trained_page))
        return sweep.optimized_value(metrics, cfg.get("optimized_metric"))
    metrics = cli.run_task(lambda: train_any(resume_config(cfg), write_trained_page))
    metric = cfg.get("optimized_metric")
    return metrics.get(metric) if metric else None


if __name__ == "__main__":
    cli.run(main, HELP, EXAMPLES, "train")
