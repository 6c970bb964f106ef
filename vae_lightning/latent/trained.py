"""What a fitted sampler needs of a trained model (`TrainedModel`): the model floor (model/) sits above latent/,
so the samplers fitted to a model ask for these capabilities, not for the `VAEModule` class."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

from torch import Tensor, nn

from vae_lightning.latent.base import LatentDistribution


class TrainedModel(Protocol):
    """A trained VAE as fitted samplers see it: its encoder (images [B, 1, 28, 28] -> posterior parameters
    [B, 2 * latent_dim]), its latent size, its prior (whose posterior family reads those parameters) and its
    parameters (which tell the device). `model.VAEModule` is one."""

    encoder: Callable[[Tensor], Tensor]
    latent_dim: int
    prior: LatentDistribution

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...
