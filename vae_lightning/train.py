"""Train a VAE: `python -m vae_lightning.train [overrides]`.

Composes `conf/train.yaml`, builds data, prior, model, KL schedule, callbacks, logger and trainer
from it, fits, then tests the best checkpoint. With `ckpt_path=<run>/checkpoints/x.ckpt` it resumes
that run: the run's own saved config plus this command's overrides, same folder.

Errors that are the user's to fix are one line `error: ...` and exit status 2; an interrupted run
prints the command that resumes it and exits 130 (SIGINT) or 143 (SIGTERM).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from vae_lightning import cli
from vae_lightning.runs.folders import register_resolvers

register_resolvers()

EXAMPLES = (
    "python -m vae_lightning.train",
    "python -m vae_lightning.train prior=beta prior.alpha=4 prior.beta=3 annealing=linear trainer.max_epochs=30",
    "python -m vae_lightning.train experiment=study data.root=/data/mnist",
    "python -m vae_lightning.train -m prior=normal,gaussian,beta seed=1,2,3",
    f"python -m vae_lightning.train ckpt_path={cli.EXAMPLE_RUN}/checkpoints/last.ckpt trainer.max_epochs=40",
)


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Returns the configured `optimized_metric` for Hydra's sweepers (NaN for a failed sweep job)."""
    from vae_lightning.runs import sweep
    from vae_lightning.runs.training import resume_config, train

    if sweep.in_multirun():  # a failure is recorded in the job's folder and the sweep goes on
        metrics = sweep.run_job(lambda: train(sweep.continue_own_checkpoint(resume_config(cfg))))
        return sweep.optimized_value(metrics, cfg.get("optimized_metric"))
    metrics = cli.run_task(lambda: train(resume_config(cfg)))
    metric = cfg.get("optimized_metric")
    return metrics.get(metric) if metric else None


if __name__ == "__main__":
    cli.run(main, __doc__, EXAMPLES)
