"""Evaluate's numbers on fixed small models, pinned to the values the evaluation gave before its cost was cut
(issue 29): the estimators may get faster, never different beyond their stated tolerance.

The models are built deterministically (seeded initialisation, the first layers' weights scaled up so that
p(x|z) is peaked in z like a trained model's and the exact likelihood needs three grid refinements) and
evaluated as `evaluate` does (`likelihood_metrics`, `sample_quality` with evaluate's default samplers) on the
synthetic test images. Tolerances: nll_exact within its 0.05-nat convergence tolerance (a different grid
may be the one that converges); elbo, IWAE and the sample-quality scores are the same computation on the
same draws, so equal up to float rounding (a relative 1e-6 leaves room for another machine's BLAS).
"""

from __future__ import annotations

import pytest
import torch
from helpers.commands import evaluate_cfg
from helpers.data import synthetic_digits

from vae_lightning.core.progress import no_track
from vae_lightning.evaluation.classifier import DigitClassifier, as_input
from vae_lightning.evaluation.likelihood import likelihood_metrics
from vae_lightning.evaluation.quality import reference_of, sample_quality
from vae_lightning.evaluation.settings import EvaluationSettings
from vae_lightning.latent import BetaPrior, MixturePrior, NormalPrior
from vae_lightning.latent.sampler_sets import build_samplers, same_distribution
from vae_lightning.model import MLPDecoder, MLPEncoder, VAEModule

# the tolerance nll_exact's refinement stops at (conf/evaluate.yaml exact.tolerance)
EXACT_TOLERANCE = 0.05
SAME = {"rel": 1e-6, "abs": 1e-9}
PRIORS = {"normal": lambda: NormalPrior(2), "beta_4_3": lambda: BetaPrior(2, 4.0, 3.0), "mog": lambda: MixturePrior(2)}
SETTINGS = ["n_samples=300", "iwae.k=[1,100]", "batch_size=64", "iwae.images_per_batch=50", "iwae.chunk_size=40",
            "exact.chunk_size=1000"]


def fixed_model(prior: str) -> VAEModule:
    """A small 2-D MLP VAE with the study's layer types, the same weights on every run."""
    torch.manual_seed(0)
    module = VAEModule(MLPEncoder(latent_dim=2, hidden_dims=(64, 32)), MLPDecoder(latent_dim=2, hidden_dims=(32, 64)),
                       PRIORS[prior](), None, 2).eval()
    with torch.no_grad():
        module.decoder.net[0].weight.mul_(8)
        module.encoder.net[-1].weight.mul_(8)
    return module


def fixed_images() -> torch.Tensor:
    return as_input(synthetic_digits(128, 2)[0])


# Today's values (computed before issue 29's changes): elbo, recon, kl, nll_iwae by k, nll_exact
LIKELIHOOD = {
    "normal": {"elbo": -690.5869589321082, "recon": 689.44806432724, "kl": 1.1388946048682556,
               "nll_iwae": {"1": 651.5323824882507, "100": 548.2221727371216}, "nll_exact": 547.6321430206299},
    "beta_4_3": {"elbo": -577.6183412428945, "recon": 570.6637172698975, "kl": 6.954623972997069,
                 "nll_iwae": {"1": 572.367280960083, "100": 553.2430386543274}, "nll_exact": 553.1374349594116},
    "mog": {"elbo": -689.8616576343775, "recon": 689.44806432724, "kl": 0.4135933071374893,
            "nll_iwae": {"1": 651.1637892723083, "100": 549.215672492981}, "nll_exact": 548.6520404815674},
}


@pytest.mark.parametrize("prior", list(PRIORS))
def test_likelihood_values_are_pinned(prior):
    cfg = evaluate_cfg(*SETTINGS)
    with torch.no_grad():
        result, per_image = likelihood_metrics(fixed_model(prior), fixed_images(),
                                                EvaluationSettings.from_config(cfg).likelihood, no_track, {})
    pinned = LIKELIHOOD[prior]
    for key in ("elbo", "recon", "kl"):
        assert result[key] == pytest.approx(pinned[key], **SAME), key
    assert result["nll_iwae"] == pytest.approx(pinned["nll_iwae"], **SAME)
    exact = result["nll_exact"]
    assert exact["converged"]
    assert exact["value"] == pytest.approx(pinned["nll_exact"], abs=EXACT_TOLERANCE)
    assert float(per_image["nll_exact"].mean()) == pytest.approx(exact["value"])


# Today's values on the "normal" model with sampler_set=study_fitted: fid, clarity, diversity, probability_entropy
QUALITY = {
    "normal_0_1": [1.2091146043131138, 0.16395830849806467, 0.0, 2.2615454156133032],
    "gaussian_1_2": [1.2760489625126272, 0.172364571839571, 0.07081055490819625, 2.2486432224732704],
    "beta_1_1": [1.6832122024087752, 0.16078968907396, 0.0, 2.2678460459179828],
    "beta_1.1_1.1": [1.699305533317351, 0.16033893590172132, 0.0, 2.268232808785538],
    "beta_1.1_2": [1.9803397036178902, 0.15598759899536768, 0.0, 2.2708354013183634],
    "beta_4_3": [1.6657726028567958, 0.1642530778547128, 0.0, 2.2659090977748533],
    "aggregate_posterior": [0.8475546651988377, 0.17306265528003376, 0.0, 2.250095986011677],
    "gmm_10": [1.610222484831452, 0.1591679301361243, 0.0, 2.2626943672227546],
    "q_flow_nsf_4": [0.8215979763029799, 0.17101132303476332, 0.040048630190433046, 2.2495770357177376],
    "test": [0.0, 0.18648510973434895, 0.091315261764256, 2.2293202890781743],
}


def fixed_classifier() -> DigitClassifier:
    """A small untrained digit classifier, its hidden layer scaled up so that the features spread."""
    torch.manual_seed(1)
    classifier = DigitClassifier(channels=(4, 8), features=16).eval()
    with torch.no_grad():
        classifier.body[-2].weight.mul_(20)
    return classifier


def test_sample_quality_values_are_pinned():
    module, classifier = fixed_model("normal"), fixed_classifier()
    cfg = evaluate_cfg(*SETTINGS, "sampler_set=study_fitted")
    reference = reference_of(classifier, synthetic_digits(128, 2)[0], cfg.batch_size)
    samplers = [(s, same_distribution(s, module.prior)) for s in build_samplers(cfg.samplers, 2, module.prior)]
    rows = sample_quality(module, samplers, classifier, reference, synthetic_digits(384, 1)[0],
                          EvaluationSettings.from_config(cfg).quality, no_track, {})
    values = {r["name"]: [r[k] for k in ("fid", "clarity", "diversity", "probability_entropy")] for r in rows}
    assert list(values) == list(QUALITY)
    for name, pinned in QUALITY.items():
        assert values[name] == pytest.approx(pinned, rel=1e-6, abs=1e-9), name
