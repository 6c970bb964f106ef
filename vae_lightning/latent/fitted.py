"""Samplers fitted to a trained model: latent distributions that learn from the model and its training
images in `fit(module, images)` before they draw (the latent-distribution contract, latent/base.py).

- `AggregatePosterior`: q(z) = (1/N) sum_n q(z | x_n) over the training images, drawn exactly (an
  image at random, then z ~ q(z | x)); its density is that average, computed in chunks;
- `PosteriorGMM`: a Gaussian mixture with full covariances fitted to the training posterior means
  with scikit-learn's `GaussianMixture` (the post-hoc sampler of Ghosh et al. 2020, offered by pythae);
- `PosteriorFlow`: a normalizing flow (zuko, latent/flow.py) fitted by maximum likelihood to draws of
  the aggregate posterior ("ex-post density estimation", the MAF/IAF samplers of pythae), seeded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, MultivariateNormal

from vae_lightning.core.checks import COUNT, NON_NEGATIVE_COUNT, POSITIVE, Check, integer
from vae_lightning.core.rng import generator_seed, seeded
from vae_lightning.latent.base import Images, LatentDistribution, images_of
from vae_lightning.latent.flow import check_flow, flow_sample, make_flow
from vae_lightning.latent.mixture import pick_components
from vae_lightning.latent.trained import TrainedModel

# Training images used by a fitted sampler: null (all of them) or a count
MAX_IMAGES = COUNT.or_null("all training images")


@torch.no_grad()
def encode_all(module: TrainedModel, images: Tensor, batch_size: int = 1000) -> Tensor:
    """Encoder outputs [N, 2 * latent_dim] of uint8 (or [0, 1] float) images [N, (1,) 28, 28], in batches
    on the module's device, kept there."""
    device = next(module.parameters()).device
    outputs = []
    for chunk in images.split(batch_size):
        x = chunk.to(device)
        x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
        outputs.append(module.encoder(x.view(-1, 1, 28, 28)))
    return torch.cat(outputs)


class _FittedSampler(LatentDistribution):
    """What the fitted samplers share: the fitted model's posterior family and support."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__(latent_dim)
        self.__dict__["_prior"] = None  # the fitted model's prior (not a submodule: not this sampler's state)

    def _fitted_prior(self) -> LatentDistribution:
        if self.__dict__["_prior"] is None:
            raise RuntimeError(f"{type(self).__name__} draws only after fit(module, training images)")
        return self.__dict__["_prior"]

    def _fit_model(self, module: TrainedModel) -> None:
        Check(lambda d: d == module.latent_dim, f"the model's latent size ({module.latent_dim})").check(
            "latent_dim", self.latent_dim)
        self.__dict__["_prior"] = module.prior

    def posterior(self, params: Tensor) -> Distribution:
        return self._fitted_prior().posterior(params)

    def clamp_to_support(self, z: Tensor) -> Tensor:
        return self._fitted_prior().clamp_to_support(z)


class AggregatePosterior(_FittedSampler):
    """The aggregate posterior q(z) = (1/N) sum_n q(z | x_n) of the training images (at most `max_images`,
    the first ones). Drawn exactly: an image index from the generator, then z ~ q(z | x) under the global
    RNG reseeded from the generator (torch's Beta sampler takes no generator)."""

    def __init__(self, latent_dim: int, max_images: int | None = None, chunk_size: int = 1024) -> None:
        super().__init__(latent_dim)
        MAX_IMAGES.check("max_images", max_images)
        COUNT.check("chunk_size", chunk_size)
        self.max_images, self.chunk_size = max_images, chunk_size
        self.register_buffer("params", torch.empty(0, 2 * latent_dim), persistent=False)

    @property
    def name(self) -> str:
        return "aggregate_posterior"

    @property
    def label(self) -> str:
        return "aggregate q(z)"

    def fit(self, module: TrainedModel, images: Images) -> AggregatePosterior:
        self._fit_model(module)
        self.params = encode_all(module, images_of(images)[: self.max_images])
        return self

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        if generator is None:  # from the global RNG, like torch's samplers
            generator = torch.Generator().manual_seed(int(torch.randint(2**62, (1,))))
        index = torch.randint(len(self.params), (n,), generator=generator).to(self.params.device)
        with seeded(generator_seed(generator), self.params.device):
            return self.clamp_to_support(self.posterior(self.params[index]).sample())

    def log_prob(self, z: Tensor) -> Tensor:
        """log (1/N) sum_n q(z | x_n), as a running log-sum-exp over chunks of `chunk_size` images."""
        total = torch.full(z.shape[:-1], -math.inf, device=z.device)
        for chunk in self.params.split(self.chunk_size):
            q = self.posterior(chunk)  # batch [C, D]
            log_q = q.log_prob(z.unsqueeze(-2)).sum(-1)  # [..., C]
            total = torch.logaddexp(total, torch.logsumexp(log_q, dim=-1))
        return total - math.log(len(self.params))


class PosteriorGMM(_FittedSampler):
    """A mixture of `n_components` full-covariance Gaussians fitted by EM (scikit-learn) to the posterior
    means of the training images (at most `max_images`), with `seed` for its k-means initialisation."""

    def __init__(self, latent_dim: int, n_components: int = 10, max_images: int | None = None,
                 seed: int = 0) -> None:
        super().__init__(latent_dim)
        COUNT.check("n_components", n_components)
        MAX_IMAGES.check("max_images", max_images)
        self.n_components, self.max_images, self.seed = n_components, max_images, seed
        self.register_buffer("weights", torch.empty(0), persistent=False)
        self.register_buffer("means", torch.empty(0, latent_dim), persistent=False)
        self.register_buffer("scale_tril", torch.empty(0, latent_dim, latent_dim), persistent=False)

    @property
    def name(self) -> str:
        return f"gmm_{self.n_components}"

    @property
    def label(self) -> str:
        return f"GMM({self.n_components}) on q means"

    def fit(self, module: TrainedModel, images: Images) -> PosteriorGMM:
        from sklearn.mixture import GaussianMixture  # scikit-learn is slow to import: only when fitting

        self._fit_model(module)
        means = self.posterior(encode_all(module, images_of(images)[: self.max_images])).mean
        integer(1, len(means), " (at most the number of fitted images)").check("n_components", self.n_components)
        gmm = GaussianMixture(self.n_components, covariance_type="full", random_state=self.seed)
        gmm.fit(means.double().cpu().numpy())
        device = means.device
        self.weights = torch.as_tensor(gmm.weights_, dtype=torch.float32, device=device)
        self.means = torch.as_tensor(gmm.means_, dtype=torch.float32, device=device)
        self.scale_tril = torch.linalg.cholesky(torch.as_tensor(gmm.covariances_, device=device)).float()
        return self

    def _components(self) -> MultivariateNormal:
        if len(self.weights) == 0:
            raise RuntimeError("PosteriorGMM draws only after fit(module, training images)")
        return MultivariateNormal(self.means, scale_tril=self.scale_tril)

    def log_prob(self, z: Tensor) -> Tensor:
        log_components = self._components().log_prob(z.unsqueeze(-2))  # [..., K]
        return torch.logsumexp(log_components + self.weights.log(), dim=-1)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """A component by inverse-CDF of a uniform, then mean + L·ε, all noise from `generator` (CPU)."""
        self._components()
        k = pick_components(self.weights, n, generator)
        eps = torch.randn(n, self.latent_dim, 1, generator=generator).to(self.means)
        return self.clamp_to_support(self.means[k] + (self.scale_tril[k] @ eps).squeeze(-1))


class PosteriorFlow(_FittedSampler):
    """A zuko flow (latent/flow.py: `flow`, `transforms`, `hidden_features`) fitted by maximum likelihood to the
    aggregate posterior q(z) of the training images (at most `max_images`, the first ones).

    Each of `epochs` passes draws one fresh z ~ q(z|x) per image and takes Adam steps (`lr`) on shuffled
    batches of `batch_size` of them: epochs x ceil(images / batch_size) steps. The flow models the draws
    standardised by the mean and standard deviation of a first draw per image (zuko's splines act on
    [-5, 5]); its density and draws are mapped back. The flow's initialisation, the draws and their order
    all come from `seed` under a forked global RNG: a fit is a function of the model, the images and the
    settings, refitting starts afresh, and the caller's random stream is untouched.
    """

    def __init__(self, latent_dim: int, flow: str = "NSF", transforms: int = 4,
                 hidden_features: Sequence[int] = (64, 64), epochs: int = 20, batch_size: int = 1024,
                 lr: float = 1e-3, max_images: int | None = None, seed: int = 0) -> None:
        super().__init__(latent_dim)
        check_flow(flow, transforms, hidden_features)
        COUNT.check("epochs", epochs)
        COUNT.check("batch_size", batch_size)
        POSITIVE.check("lr", lr)
        MAX_IMAGES.check("max_images", max_images)
        NON_NEGATIVE_COUNT.check("seed", seed)
        self.kind, self.transforms, self.hidden_features = flow, transforms, [int(h) for h in hidden_features]
        self.epochs, self.batch_size, self.lr, self.max_images, self.seed = epochs, batch_size, lr, max_images, seed
        self.flow: nn.Module | None = None
        self.register_buffer("shift", torch.zeros(latent_dim), persistent=False)
        self.register_buffer("scale", torch.ones(latent_dim), persistent=False)

    @property
    def name(self) -> str:
        return f"q_flow_{self.kind.lower()}_{self.transforms}"

    @property
    def label(self) -> str:
        return f"Flow({self.kind}, {self.transforms}) on q(z)"

    def fit(self, module: TrainedModel, images: Images) -> PosteriorFlow:
        self._fit_model(module)
        q = self.posterior(encode_all(module, images_of(images)[: self.max_images]))
        with seeded(self.seed, q.mean.device), torch.enable_grad():
            first = self.clamp_to_support(q.sample())
            self.shift, self.scale = first.mean(0), first.std(0).clamp(min=1e-6)
            self.flow = make_flow(self.kind, self.latent_dim, self.transforms, self.hidden_features).to(first)
            optimizer = torch.optim.Adam(self.flow.parameters(), lr=self.lr)
            for _ in range(self.epochs):
                z = (self.clamp_to_support(q.sample()) - self.shift) / self.scale
                for batch in torch.randperm(len(z), device=z.device).split(self.batch_size):
                    loss = -self.flow().log_prob(z[batch]).mean()
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
        return self

    def _fitted_flow(self) -> nn.Module:
        if self.flow is None:
            raise RuntimeError("PosteriorFlow draws only after fit(module, training images)")
        return self.flow

    def log_prob(self, z: Tensor) -> Tensor:
        return self._fitted_flow()().log_prob((z - self.shift) / self.scale) - self.scale.log().sum()

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self.clamp_to_support(self.shift + self.scale * flow_sample(self._fitted_flow(), n, generator))
