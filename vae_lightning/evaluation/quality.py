"""Sample quality: Fréchet distance of classifier features (Heusel et al. 2017), clarity, diversity and
class coverage of generated digits, per sampler, against the test images.

Diversity is the entropy of the histogram of the classes the classifier predicts (how evenly the samples spread
over the ten digits): a blurry sample counts once, for its most likely class, so blur cannot raise it. The
entropy of the mean predicted probabilities (`probability_entropy`, the project's "diversity" before) is kept
beside it for what it is: blur spreads each sample's probabilities and raises it.

The scores use the small digit classifier of `evaluation.classifier` (its hidden layer for the
features, its softmax for the classes); `sample_quality` draws each sampler's seeded samples, decodes
their mean images and scores them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from vae_lightning.core.progress import Track
from vae_lightning.evaluation.classifier import DigitClassifier, as_input, classify
from vae_lightning.evaluation.mechanisms import precision_recall
from vae_lightning.evaluation.metrics import computed
from vae_lightning.evaluation.settings import QualitySettings
from vae_lightning.latent import LatentDistribution
from vae_lightning.latent.base import Images
from vae_lightning.latent.sampler_sets import fit_samplers

if TYPE_CHECKING:
    from vae_lightning.model import VAEModule

TEST_ROW = "test"  # the sample-quality row of the test images themselves
N_CLASSES = 10


def feature_statistics(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean [F] and covariance [F, F] of features [N, F], in float64."""
    f = features.double()
    return f.mean(dim=0), torch.cov(f.T)


def _psd_sqrt(matrix: Tensor) -> Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    return vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T


def frechet_distance(mean_a: Tensor, cov_a: Tensor, mean_b: Tensor, cov_b: Tensor) -> float:
    """||m_a - m_b||^2 + Tr(C_a + C_b - 2 (C_a C_b)^(1/2)) between two Gaussians (Heusel et al. 2017).

    Tr((C_a C_b)^(1/2)) is computed as the sum of square roots of the eigenvalues of the symmetric
    matrix C_a^(1/2) C_b C_a^(1/2), which has the same spectrum as C_a C_b; no general matrix
    square root, no complex parts.
    """
    root_a = _psd_sqrt(cov_a)
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp(min=0).sqrt().sum()
    distance = (mean_a - mean_b).square().sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * cross
    return float(distance.clamp(min=0))


def clarity(probs: Tensor) -> float:
    """Mean max class probability: how confidently the classifier reads each sample as some digit."""
    return float(probs.max(dim=1).values.double().mean())


def entropy(distribution: Tensor) -> float:
    """Entropy (nats) of a discrete distribution (0 log 0 = 0)."""
    p = distribution.double()
    return float(-(p * torch.log(p.clamp(min=1e-300))).sum())


def diversity(predicted: Tensor, n_classes: int = 10) -> float:
    """Entropy (nats) of the histogram of predicted classes: ln(10) when all ten classes are predicted equally
    often, 0 when every sample is predicted as the same class, however unsure the classifier is."""
    return entropy(torch.bincount(predicted, minlength=n_classes).double() / len(predicted))


def probability_entropy(probs: Tensor) -> float:
    """Entropy (nats) of the mean predicted class distribution: high for samples spread over the classes, and for
    blurry samples whose own probabilities are spread."""
    return entropy(probs.double().mean(dim=0))


def classes_covering(predicted: Tensor, n_classes: int, fraction: float = 0.9) -> int:
    """The fewest classes that together hold at least `fraction` of the predicted labels."""
    share = torch.bincount(predicted, minlength=n_classes).double().sort(descending=True).values / len(predicted)
    return int((share.cumsum(0) < fraction - 1e-12).sum()) + 1


def quality_row(name: str, label: str, features: Tensor, probs: Tensor,
                reference: tuple[Tensor, Tensor]) -> dict[str, Any]:
    """fid against the reference statistics, clarity, diversity and class coverage of one image set, and the
    per-sampler metrics registered in the metric table (evaluation/metrics.py)."""
    predicted = probs.argmax(dim=1)
    return {"name": name, "label": label,
            "fid": frechet_distance(*feature_statistics(features), *reference),
            "clarity": clarity(probs), "diversity": diversity(predicted, N_CLASSES),
            "probability_entropy": probability_entropy(probs),
            "classes_90": classes_covering(predicted, N_CLASSES, 0.9),
            "class_frequencies": (torch.bincount(predicted, minlength=N_CLASSES).double() / len(predicted)).tolist(),
            **{m.name: float(m.compute(features, probs)) for m in computed(per_sampler=True)}}


@dataclass(frozen=True)
class Reference:
    """The test images as the classifier sees them, against which every sampler's samples are scored:
    their features' mean and covariance, and their own quality row."""

    statistics: tuple[Tensor, Tensor]
    row: dict[str, Any]
    n_images: int
    features: Tensor | None = None  # the test images' features, for precision and recall


@torch.no_grad()
def reference_of(classifier: DigitClassifier, test_images: Tensor, batch_size: int) -> Reference:
    """The Reference of gray test images (uint8 [N, 28, 28])."""
    features, probs = classify(classifier, as_input(test_images), batch_size)
    statistics = feature_statistics(features)
    row = {**quality_row(TEST_ROW, "test set", features, probs, statistics), "model_prior": False}
    return Reference(statistics, row, len(test_images), features)


@torch.no_grad()
def sample_quality(module: VAEModule, samplers: list[tuple[LatentDistribution, bool]], classifier: DigitClassifier,
                   reference: Reference, fit_images: Images, settings: QualitySettings, track: Track,
                   timings: dict[str, float]) -> list[dict[str, Any]]:
    """One row per sampler (decoder means of `settings.n_samples` seeded draws), then the test set's own. Samplers
    fitted to the model are fitted to `fit_images` (the training images) first; `timings` gets the time
    of each fit and draw (`fit <name>`, `draw <name>`)."""
    rows = []
    for sampler, own in track(samplers, "sample quality", len(samplers)):
        fit_samplers([sampler], module, fit_images, timings)
        start = time.perf_counter()
        z = sampler.sample(settings.n_samples, generator=torch.Generator().manual_seed(settings.seed))
        timings[f"draw {sampler.name}"] = time.perf_counter() - start
        images = torch.cat([module.decode(chunk) for chunk in z.split(settings.batch_size)])
        features, probs = classify(classifier, images, settings.batch_size)
        row = quality_row(sampler.name, sampler.label, features, probs, reference.statistics)
        pr = settings.precision_recall
        if pr is not None and reference.features is not None:
            # evaluation/mechanisms.py: Kynkäänniemi et al. 2019, Naeem et al. 2020
            real, fake = reference.features[:pr.n_images], features[:pr.n_images]
            if min(len(real), len(fake)) > max(pr.k, 5):  # k-NN balls need more points than neighbours
                row.update(vars(precision_recall(real, fake, k=pr.k)))
        rows.append({**row, "model_prior": own})
    return [*rows, reference.row]
