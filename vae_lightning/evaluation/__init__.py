"""Evaluation of a trained VAE, in honest units: likelihoods in nats per image, posterior collapse,
sample quality.

- `likelihood`: the test ELBO, the importance-weighted bound (IWAE, Burda et al. 2016) and the exact
  likelihood by quadrature over the prior for small latents (`quadrature_grid`, refined only where an
  image's p(x) lies: `nll_exact`); `likelihood_metrics` is the suite evaluate runs;
- `diagnostics`: active units, I(x; z) (shared with the training callback);
- `quality`: Fréchet distance, clarity, diversity, class coverage of each sampler's samples;
- `classifier`: the digit classifier that scores samples (trained once, cached);
- `results`: an evaluation's tables, figures and flat `eval/...` scalars;
- `pipeline`: the whole evaluation of a checkpoint (what `python -m vae_lightning.evaluate` runs).

Estimators reach the model only through its contracts (`module.encode`, `module.decoder`,
`module.prior`, `module.likelihood`), so every prior, network and likelihood is evaluated alike.
Adding a metric: a function of tensors here, called from `likelihood_metrics` or `sample_quality`,
and a line in `results` (its table row and its scalar).
"""
