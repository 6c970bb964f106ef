"""p(x|z): how the decoder's output scores images and what image it stands for.

The likelihood contract: the decoder's output is one logit l per pixel, [..., P] for any leading dimensions
(model/networks.py), and a likelihood turns it into

- `log_prob(logits, x)`: log p(x|z) per image, summed over pixels: logits [..., P] against images x
  [B, 1, 28, 28] or [B, P] (broadcast from the right: [n, B, P] logits score B images n times) -> [...];
- `log_prob_pairs(x, logits)`: log p(x_n|z_g) for every image n and latent g, [N, G], without an [N, G, P]
  tensor (exact likelihood by quadrature decodes each grid point once for all images);
- `mean(logits)`: the mean image `E[x|z]`, [..., P], what pictures and samples show;
- `name` (tags, HPARAMS) and `normalised_on_gray`: whether log p(x|z) is a density of gray pixels in [0, 1];
- `targets`: the pixel values it models, `binary` ({0, 1}: data.binarize=dynamic) and/or `gray` ([0, 1]:
  data.binarize=none), and `instead`: what to use for the others. Training refuses data a likelihood does
  not model (`check_targets`), because its "nats" would not be a likelihood.

Both families here are exponential families in the pixel value with natural parameter l:
log p(x|l) = x·l − A(l) per pixel, with A the log-partition function. That one form gives the per-image
sum and the pairwise matrix product `x @ l.T − sum A(l)` for any of them: a new family overrides `A` and `mean`.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.functional import softplus

from vae_lightning.core.errors import UserError


class Likelihood:
    """An exponential family over each pixel: log p(x|l) = x·l − A(l) (see the module docstring)."""

    name = "likelihood"
    normalised_on_gray = False
    targets: tuple[str, ...] = ("binary", "gray")
    instead = ""

    def log_partition(self, logits: Tensor) -> Tensor:
        """A(l) per pixel."""
        raise NotImplementedError

    def mean(self, logits: Tensor) -> Tensor:
        """E[x | l] = A'(l) per pixel, in [0, 1]."""
        raise NotImplementedError

    def log_prob(self, logits: Tensor, x: Tensor) -> Tensor:
        target = x.flatten(1) if x.dim() == 4 else x
        return -(self.log_partition(logits) - target * logits).sum(-1)

    def log_prob_pairs(self, x: Tensor, logits: Tensor) -> Tensor:
        """x [N, P] (or [N, 1, 28, 28]), logits [G, P] -> [N, G]."""
        return x.flatten(1) @ logits.T - self.log_partition(logits).sum(-1)

    def __repr__(self) -> str:
        return self.name


class Bernoulli(Likelihood):
    """The study's: each pixel Bernoulli(sigmoid(l)), A(l) = softplus(l), so log p = −BCE-with-logits.

    A normalised likelihood of binary pixels; on gray targets the same expression is what the model
    optimises, but it is not a density of gray images (its integral over [0, 1] is not 1).
    """

    name = "bernoulli"

    def log_partition(self, logits: Tensor) -> Tensor:
        return softplus(logits)

    def mean(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(logits)


# |l| below this: A and its derivative by their Taylor series (the closed forms cancel catastrophically at 0)
_SMALL = 0.05


class ContinuousBernoulli(Likelihood):
    """The continuous Bernoulli (Loaiza-Ganem & Cunningham 2019), torch's `ContinuousBernoulli(logits=l)`:
    p(x|l) ∝ exp(x·l) on [0, 1], a normalised density of gray pixels.

    A(l) = log ∫₀¹ e^{xl} dx = log((e^l − 1) / l), written as max(l, 0) + log(−expm1(−|l|)) − log|l| so
    that it is accurate in float32 at any logit (torch's own form goes through a clamped sigmoid(l): in
    float32 it is 0.2 nats per pixel off at |l| = 20, where decoders put sure-black pixels). Its mean
    A'(l) = 1 / (1 − e^{−l}) − 1 / l is not sigmoid(l): a large logit l means pixel mean 1 − 1/l, not 1,
    which is why pictures use `mean`.
    """

    name = "continuous_bernoulli"
    normalised_on_gray = True
    # on binary pixels the density is unbounded (it grows without limit as l -> ±inf at x = 0 or 1), so the
    # objective has no maximum and its "nats" are not a likelihood
    targets = ("gray",)
    instead = "likelihood=bernoulli for binarized images, or data.binarize=none for gray ones"

    def log_partition(self, logits: Tensor) -> Tensor:
        small = logits.abs() < _SMALL
        safe = torch.where(small, torch.ones_like(logits), logits).abs()  # no NaN gradients through where
        closed = logits.clamp(min=0) + torch.log(-torch.expm1(-safe)) - torch.log(safe)
        series = logits / 2 + logits**2 / 24 - logits**4 / 2880
        return torch.where(small, series, closed)

    def mean(self, logits: Tensor) -> Tensor:
        small = logits.abs() < _SMALL
        safe = torch.where(small, torch.ones_like(logits), logits)
        closed = -1 / torch.expm1(-safe) - 1 / safe
        series = 0.5 + logits / 12 - logits**3 / 720
        return torch.where(small, series, closed).clamp(0, 1)


# data.binarize -> the pixel values the model is trained on
TARGETS = {"none": "gray", "dynamic": "binary"}


def check_targets(likelihood: Likelihood, binarize: str) -> None:
    """Raise UserError when the likelihood does not model the pixels that `data.binarize` makes."""
    target = TARGETS.get(binarize, binarize)
    if target not in likelihood.targets:
        raise UserError(f"likelihood={likelihood.name} does not model {target} pixels (data.binarize={binarize}): it "
                        f"models {' and '.join(likelihood.targets)} pixels; use {likelihood.instead}")
