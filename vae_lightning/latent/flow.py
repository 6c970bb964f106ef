"""A learned normalizing-flow prior: p(z) is a flow from `zuko` over the latent (by default a neural
spline flow, Durkan et al. 2019), trained with the model.

Why zuko: a maintained library on torch alone whose flows are `nn.Module`s (their parameters and
buffers live in the model's state_dict, move with it to any device and are saved in checkpoints) and
whose `flow()` is a `torch.distributions.Distribution` with `log_prob` of whole vectors. Writing
coupling layers and splines here would be code to test that the library already tests.

Draws from a generator: zuko draws its base N(0, I) from the global RNG, which fixed noise must not
touch; here the base noise comes from the caller's generator (on the CPU, so a seed gives the same
draws on any device) and is mapped through the flow's inverse transform, exactly as zuko's own
`rsample` maps its base draws (`transform.inv`).

The KL against the Normal posterior has no closed form: the loss uses the single-sample estimate
log q(z|x) - log p(z) (latent/base.py), as for the mixtures. The flow's parameters train in their own
optimizer parameter group at `lr` (`learning_rate`, see `VAEModule.configure_optimizers`). The flow
fitted after training to the aggregate posterior (latent/fitted.py) is built by the same `make_flow`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import zuko
from torch import Tensor

from vae_lightning.core.checks import COUNT, POSITIVE, list_of, one_of
from vae_lightning.latent.base import LatentDistribution
from vae_lightning.latent.factorised import normal_posterior

# The flows a config can name, by zuko's class names
FLOWS = {"NSF": zuko.flows.NSF, "MAF": zuko.flows.MAF, "RealNVP": zuko.flows.RealNVP}
# The hidden widths of each transform's network
HIDDEN_FEATURES = list_of(COUNT)


def check_flow(flow: str, transforms: int, hidden_features: Sequence[int]) -> None:
    """Raise ParameterError for a flow type, a number of transforms or hidden widths out of range."""
    one_of(list(FLOWS)).check("flow", flow)
    COUNT.check("transforms", transforms)
    HIDDEN_FEATURES.check("hidden_features", hidden_features)


def make_flow(flow: str, features: int, transforms: int, hidden_features: Sequence[int]) -> zuko.flows.Flow:
    """An unconditional zuko flow of type `flow` over `features` numbers (initialised from the global RNG)."""
    check_flow(flow, transforms, hidden_features)
    return FLOWS[flow](features, transforms=transforms, hidden_features=[int(h) for h in hidden_features])


def flow_sample(flow: zuko.flows.Flow, n: int, generator: torch.Generator | None) -> Tensor:
    """n draws [n, features] of `flow`: base noise from `generator` (CPU; None: the global RNG) through the
    inverse transform."""
    distribution = flow()
    base = distribution.base
    eps = torch.randn(n, *base.event_shape, generator=generator).to(base.mean)
    return distribution.transform.inv(base.mean + base.stddev * eps)


class FlowPrior(LatentDistribution):
    """p(z) = a zuko flow (`flow`: NSF, MAF or RealNVP) of `transforms` transforms whose networks have
    `hidden_features` hidden widths, over N(0, I); posterior: diagonal Normal; KL: single-sample Monte Carlo.

    The flow starts from zuko's initialisation (the global RNG at build time, seeded by `train`). Its
    parameters train in their own optimizer group at learning rate `lr`.
    """

    def __init__(self, latent_dim: int, flow: str = "NSF", transforms: int = 4,
                 hidden_features: Sequence[int] = (64, 64), lr: float = 1e-3) -> None:
        super().__init__(latent_dim)
        POSITIVE.check("lr", lr)
        self.kind, self.transforms, self.learning_rate = flow, transforms, float(lr)
        self.flow = make_flow(flow, latent_dim, transforms, hidden_features)

    @property
    def name(self) -> str:
        return f"flow_{self.kind.lower()}_{self.transforms}"

    @property
    def label(self) -> str:
        return f"Flow({self.kind}, {self.transforms})"

    def log_prob(self, z: Tensor) -> Tensor:
        return self.flow().log_prob(z)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return flow_sample(self.flow, n, generator)

    def posterior(self, params: Tensor) -> torch.distributions.Normal:
        return normal_posterior(params)
