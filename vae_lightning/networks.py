"""Encoder and decoder networks. The study's: an MLP 784 -> 400 -> 200 -> latent, mirrored."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from vae_lightning.errors import require


def mlp(sizes: Sequence[int], negative_slope: float) -> nn.Sequential:
    """Linear layers through `sizes`, LeakyReLU between them, none after the last."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=False)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.LeakyReLU(negative_slope))
    return nn.Sequential(*layers)


def _check_dims(in_features: int, hidden_dims: Sequence[int], latent_dim: int) -> None:
    require(in_features >= 1, "in_features", in_features, "an integer >= 1")
    require(all(h >= 1 for h in hidden_dims), "hidden_dims", list(hidden_dims), "a list of integers >= 1")
    require(latent_dim >= 1, "latent_dim", latent_dim, "an integer >= 1")


class MLPEncoder(nn.Module):
    """x [B, ...] -> posterior parameters [B, 2 * latent_dim].

    Two numbers per latent dimension: what they mean (mean/log-variance, Beta concentrations)
    is the posterior family's business (see `priors.py`), so one encoder serves every prior.
    """

    def __init__(self, in_features: int = 784, hidden_dims: Sequence[int] = (400, 200),
                 latent_dim: int = 2, negative_slope: float = 0.2) -> None:
        super().__init__()
        _check_dims(in_features, hidden_dims, latent_dim)
        self.latent_dim = latent_dim
        self.net = mlp([in_features, *hidden_dims, 2 * latent_dim], negative_slope)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1))


class MLPDecoder(nn.Module):
    """z [B, latent_dim] -> Bernoulli logits [B, out_features] (the study's 200 -> 400 -> 784)."""

    def __init__(self, latent_dim: int = 2, hidden_dims: Sequence[int] = (200, 400),
                 out_features: int = 784, negative_slope: float = 0.2) -> None:
        super().__init__()
        _check_dims(out_features, hidden_dims, latent_dim)
        self.latent_dim = latent_dim
        self.net = mlp([latent_dim, *hidden_dims, out_features], negative_slope)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)
