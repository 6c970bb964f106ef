"""Fitted samplers reach a trained model through `latent.trained.TrainedModel` (an encoder, a latent size, a prior,
parameters), not through the VAEModule class: a model that is nothing more than that is enough to fit them."""

from __future__ import annotations

import torch
from torch import nn

from vae_lightning.latent import AggregatePosterior, NormalPrior, PosteriorGMM


class Trained(nn.Module):
    """Not a VAEModule: only what TrainedModel asks for."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, 4))
        self.latent_dim = 2
        self.prior = NormalPrior(2)


def test_fitted_samplers_fit_to_anything_with_an_encoder_a_latent_size_and_a_prior():
    model, images = Trained(), torch.randint(0, 256, (40, 28, 28), dtype=torch.uint8)
    aggregate = AggregatePosterior(2).fit(model, images)
    expected = model.encoder(images[:, None].float().div(255))
    assert torch.allclose(aggregate.params, expected, atol=1e-6)
    assert aggregate.sample(5, torch.Generator().manual_seed(0)).shape == (5, 2)
    gmm = PosteriorGMM(2, n_components=2).fit(model, images)
    assert gmm.sample(3, torch.Generator().manual_seed(0)).shape == (3, 2)
