"""Evaluate a trained VAE: `python -m vae_lightning.evaluate ckpt_path=<run folder or .ckpt>`.

Likelihood on the test set, in the data mode the model was trained on: elbo (recon, kl), nll_iwae
for each k, nll_exact for small latents, active units and KL per dimension; sample quality per
sampler (fid, clarity, diversity of generated digits, scored by a small cached classifier). Writes
`<run>/eval/metrics.json`, `report.md` and figures, and logs `eval/...` scalars to the run's
trackers. The checkpoint is only read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vae_lightning import cli

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from vae_lightning.evaluation.results import Evaluation

HELP = """\
python -m vae_lightning.evaluate ckpt_path=<run folder or .ckpt> [key=value ...]

Measures a trained VAE on the test images: the ELBO, the importance-weighted bound (iwae.k samples)
and, for small latents, the exact likelihood, all in nats per image; posterior collapse (active units,
KL per dimension); and the quality of samples from every sampler (fid, clarity, diversity, scored by a
small digit classifier that is trained once and cached). The checkpoint is only read.

Reads    the checkpoint, and MNIST from data.root = {data}  (VAE_DATA_ROOT sets it)
Writes   <run>/eval/: metrics.json, per_image.csv (one row per test image), report.md, figures; for a
         .ckpt outside a run folder {logs}/evaluate/runs/<timestamp>/. An earlier evaluation there is
         replaced only by the same evaluation again (same checkpoint, step and settings); overwrite=true
         moves it aside to <eval_dir>.replaced-<timestamp> first
"""
EXAMPLES = (
    f"python -m vae_lightning.evaluate ckpt_path={cli.EXAMPLE_RUN}",
    f"python -m vae_lightning.evaluate ckpt_path={cli.EXAMPLE_RUN} data.root=/data/mnist data.download=false",
    f"python -m vae_lightning.evaluate ckpt_path={cli.EXAMPLE_RUN} 'iwae.k=[1000,5000]' n_images=2000",
    "python -m vae_lightning.evaluate ckpt_path=run.ckpt sampler_set=study '~samplers.beta_1_1' device=cpu",
)


def closing_lines(cfg: DictConfig, evaluation: Evaluation) -> list[str]:
    """What evaluate says last: the checkpoint it evaluated and why that one, what it wrote, what to open next."""
    from pathlib import Path

    from vae_lightning.runs.folders import run_dir_of

    ckpt, out = Path(evaluation.checkpoint), Path(cfg.eval_dir)
    given = Path(cfg.ckpt_path)
    why = "the file given as ckpt_path"
    if given.is_dir():
        best = sorted(p for p in (given / "checkpoints").glob("epoch_*.ckpt"))
        why = (f"ckpt_path={given} means its checkpoints/last.ckpt, the run's latest state"
               + (f"; its best by val/elbo is evaluated with ckpt_path={best[-1]}" if best else ""))
    run = run_dir_of(ckpt)
    cards = (f"; tensorboard --logdir {run} shows its eval/ cards beside the training curves"
             if run is not None and cfg.log_to_trackers else "")
    return [f"evaluated {ckpt} at step {evaluation.global_step} ({why})",
            f"wrote {out}: {', '.join(sorted(p.name for p in out.iterdir() if not p.name.startswith('.')))}",
            f"next: {out / 'report.md'} holds the tables above with the figures{cards}"]


def main(cfg: DictConfig) -> None:
    from vae_lightning.core.console import say
    from vae_lightning.evaluation.results import results_markdown
    from vae_lightning.runs.evaluation import evaluate_checkpoint

    evaluation = cli.run_task(lambda: evaluate_checkpoint(cfg))
    print(results_markdown(evaluation.as_json()))
    for line in closing_lines(cfg, evaluation):
        say("%s", line)


if __name__ == "__main__":
    cli.run(main, HELP, EXAMPLES, "evaluate")
