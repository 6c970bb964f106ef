import re

import pytest
import torch
from hydra.utils import instantiate

from vae_lightning.core.errors import ParameterError
from vae_lightning.model import ConvDecoder, ConvEncoder, GatedDense, MLPDecoder, MLPEncoder


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


NETWORKS = {
    "mlp": (lambda d: MLPEncoder(latent_dim=d), lambda d: MLPDecoder(latent_dim=d)),
    "mlp_tanh": (lambda d: MLPEncoder(784, [32], d, activation="tanh"),
                 lambda d: MLPDecoder(d, [32], 784, activation="tanh")),
    "gated": (lambda d: MLPEncoder(784, [30, 30], d, activation="gated"),
              lambda d: MLPDecoder(d, [30, 30], 784, activation="gated")),
    "conv": (lambda d: ConvEncoder(d), lambda d: ConvDecoder(d)),
    "conv_1_layer": (lambda d: ConvEncoder(d, [4], []), lambda d: ConvDecoder(d, [4], [])),
    "conv_4_layers": (lambda d: ConvEncoder(d, [2, 3, 4, 5], [8], activation="relu"),
                      lambda d: ConvDecoder(d, [2, 3, 4, 5], [8], activation="relu")),
}


@pytest.mark.parametrize("name", NETWORKS)
@pytest.mark.parametrize("latent_dim", [1, 5])
def test_every_network_keeps_the_shape_contract_with_leading_dimensions(name, latent_dim):
    make_encoder, make_decoder = NETWORKS[name]
    torch.manual_seed(0)
    encoder, decoder = make_encoder(latent_dim), make_decoder(latent_dim)
    assert encoder(torch.rand(5, 1, 28, 28)).shape == (5, 2 * latent_dim)
    z = torch.randn(3, 4, 5, latent_dim)
    logits = decoder(z)
    assert logits.shape == (3, 4, 5, 784)
    # the leading dimensions are only a batch: each latent decodes as it does alone
    torch.testing.assert_close(logits[2, 1], decoder(z[2, 1]))
    torch.testing.assert_close(logits[0, 3, 4], decoder(z[0, 3, 4:5])[0])
    assert decoder(torch.randn(latent_dim)).shape == (784,)


def test_gated_layer_arithmetic_by_hand():
    """h = (W1 x + b1) * sigmoid(W2 x + b2) for W1 = [1, 2], b1 = 0.5, W2 = [-1, 1], b2 = 0, x = [1, 3]:
    (1 + 6 + 0.5) * sigmoid(-1 + 3) = 7.5 / (1 + e^-2) = 6.6059781."""
    layer = GatedDense(2, 1)
    with torch.no_grad():
        layer.linear.weight.copy_(torch.tensor([[1.0, 2.0]]))
        layer.linear.bias.fill_(0.5)
        layer.gate.weight.copy_(torch.tensor([[-1.0, 1.0]]))
        layer.gate.bias.fill_(0.0)
    assert layer(torch.tensor([[1.0, 3.0]])).item() == pytest.approx(6.6059781, abs=1e-6)


def test_conv_networks_use_strided_and_transposed_convolutions():
    encoder, decoder = ConvEncoder(2), ConvDecoder(2)
    convs = [m for m in encoder.net if isinstance(m, torch.nn.Conv2d)]
    assert [(m.in_channels, m.out_channels, m.stride) for m in convs] == [(1, 32, (2, 2)), (32, 64, (2, 2))]
    transposed = [m for m in decoder.net if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(m.in_channels, m.out_channels) for m in transposed] == [(64, 32), (32, 1)]
    assert not isinstance(decoder.net[-1], (torch.nn.LeakyReLU, torch.nn.Sigmoid))  # logits


@pytest.mark.parametrize(("overrides", "sizes", "layer"), [
    (["model=gated"], [(784, 300), (300, 300), (300, 80)], GatedDense),
    (["model=iwae"], [(784, 200), (200, 200), (200, 100)], torch.nn.Tanh),
    (["model.encoder.activation=relu"], [(784, 400), (400, 200), (200, 4)], torch.nn.ReLU),
])
def test_published_networks_are_configs(compose_cfg, overrides, sizes, layer):
    cfg = compose_cfg(overrides)
    encoder = instantiate(cfg.model.encoder)
    linears = [m for m in encoder.modules() if isinstance(m, torch.nn.Linear) and m not in
               [g.gate for g in encoder.modules() if isinstance(g, GatedDense)]]
    assert [(m.in_features, m.out_features) for m in linears] == sizes
    assert any(isinstance(m, layer) for m in encoder.modules())
    decoder = instantiate(cfg.model.decoder)
    assert any(isinstance(m, layer) for m in decoder.modules())


@pytest.mark.parametrize(("make", "line"), [
    (lambda: MLPEncoder(activation="swish"), "activation='swish'"),
    (lambda: ConvEncoder(activation="gated"), "activation='gated'"),
    (lambda: ConvDecoder(channels=[]), "channels=[]"),
])
def test_invalid_network_settings_are_one_line_errors(make, line):
    with pytest.raises(ParameterError, match=re.escape(line)):
        make()
