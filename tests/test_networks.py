import pytest
import torch

from vae_lightning.errors import ParameterError
from vae_lightning.networks import MLPDecoder, MLPEncoder


@pytest.mark.parametrize("hidden_dims", [[], [16], [400, 200], [64, 32, 16]])
@pytest.mark.parametrize("latent_dim", [1, 2, 10])
def test_shapes(hidden_dims, latent_dim):
    encoder = MLPEncoder(784, hidden_dims, latent_dim)
    decoder = MLPDecoder(latent_dim, hidden_dims[::-1], 784)
    x = torch.rand(5, 1, 28, 28)
    params = encoder(x)
    assert params.shape == (5, 2 * latent_dim)
    assert decoder(params[:, :latent_dim]).shape == (5, 784)


def test_study_architecture():
    """784-400-200-(2+2) encoder and 2-200-400-784 decoder with LeakyReLU(0.2) between layers."""
    encoder, decoder = MLPEncoder(), MLPDecoder()
    linears = [m for m in encoder.net if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 400), (400, 200), (200, 4)]
    linears = [m for m in decoder.net if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(2, 200), (200, 400), (400, 784)]
    acts = [m for m in encoder.net if isinstance(m, torch.nn.LeakyReLU)]
    assert len(acts) == 2 and all(a.negative_slope == 0.2 for a in acts)
    assert not isinstance(decoder.net[-1], torch.nn.LeakyReLU)  # logits, no activation after the head


def test_invalid_latent_dim():
    with pytest.raises(ParameterError, match="latent_dim=0"):
        MLPEncoder(latent_dim=0)
