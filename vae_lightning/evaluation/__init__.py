"""Evaluation of a trained VAE, in honest units: likelihoods in nats per image, posterior collapse,
sample quality.

- `metrics`: the metric table: every number evaluate produces, declared once (key, label, unit, higher is
  better, where it appears); every list of metrics elsewhere is read off it;
- `settings`: the estimators' typed settings, built once from evaluate's config;

- `likelihood`: the test ELBO, the importance-weighted bound (IWAE, Burda et al. 2016) and the exact
  likelihood by quadrature over the prior for small latents (`quadrature_grid`, refined only where an
  image's p(x) lies: `nll_exact`); `likelihood_metrics` is the suite evaluate runs;
- `diagnostics`: active units, I(x; z) (shared with the training callback);
- `quality`: Fréchet distance, clarity, diversity, class coverage of each sampler's samples;
- `classifier`: the digit classifier that scores samples (trained once, cached);
- `results`: `Evaluation` (what evaluate returns; metrics.json's content), its tables, figures and the
  scalars for the trackers.

The whole evaluation of a checkpoint (reading it, the folders, the trackers) is `runs/evaluation.py`, above this
package: nothing here imports `runs/`.

Estimators reach the model only through its contracts (`module.encode`, `module.decoder`,
`module.prior`, `module.likelihood`), so every prior, network and likelihood is evaluated alike.
Adding a metric: one function and one entry in the metric table (`metrics.register(Metric(..., compute=f))`):
evaluate computes it, and metrics.json, the per-image file, report.md, the trackers and the sweep report show it
where its entry says.
"""
