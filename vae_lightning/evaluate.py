"""Evaluate a trained VAE: `python -m vae_lightning.evaluate ckpt_path=<run folder or .ckpt>`.

Likelihood on the test set, in the data mode the model was trained on: elbo (recon, kl), nll_iwae
for each k, nll_exact for small latents, active units and KL per dimension; sample quality per
sampler (fid, clarity, diversity of generated digits, scored by a small cached classifier). Writes
`<run>/eval/metrics.json`, `report.md` and figures, and logs `eval/...` scalars to the run's
TensorBoard. The checkpoint is only read.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from vae_lightning import cli
from vae_lightning.runs.folders import register_resolvers

register_resolvers()

EXAMPLES = (
    f"python -m vae_lightning.evaluate ckpt_path={cli.EXAMPLE_RUN}",
    f"python -m vae_lightning.evaluate ckpt_path={cli.EXAMPLE_RUN} data.root=/data/mnist data.download=false",
    f"python -m vae_lightning.evaluate ckpt_path={cli.EXAMPLE_RUN} 'iwae.k=[1000,5000]' n_images=2000",
    "python -m vae_lightning.evaluate ckpt_path=run.ckpt samplers=study '~samplers.beta_1_1' device=cpu",
)


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from vae_lightning.evaluation.pipeline import evaluate_checkpoint
    from vae_lightning.evaluation.results import results_markdown

    results = cli.run_task(lambda: evaluate_checkpoint(cfg))
    print(results_markdown(results))


if __name__ == "__main__":
    cli.run(main, __doc__, EXAMPLES)
