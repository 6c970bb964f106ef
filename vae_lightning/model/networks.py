"""Encoder and decoder networks, behind one shape contract so that any pair serves every prior and likelihood.

- An encoder maps images [B, 1, 28, 28] to posterior parameters [B, 2 * latent_dim]: two numbers per latent
  dimension, whose meaning (mean/log-variance, Beta concentrations) is the prior's posterior family's
  business (latent/base.py), so one encoder serves every prior.
- A decoder maps latents [..., latent_dim] with any leading dimensions (a batch; draws x batch for the
  IWAE bound; a quadrature grid) to one logit per pixel, [..., 784]; what a logit means is the
  likelihood's business (model/likelihoods.py).
- Both carry `latent_dim` (checked against the model's) and `label` (a short description of the
  architecture for HPARAMS and reports).

The study's MLP (784 -> 400 -> 200 -> latent, mirrored, LeakyReLU(0.2)), the IWAE paper's tanh MLP and
the VampPrior paper's gated MLP are `MLPEncoder`/`MLPDecoder` with other widths and `activation`; the
convolutional pair is `ConvEncoder`/`ConvDecoder`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn

from vae_lightning.core.checks import COUNT, list_of, one_of

IMAGE_SHAPE = (1, 28, 28)
PIXELS = 784


class GatedDense(nn.Module):
    """h = (W1 x + b1) * sigmoid(W2 x + b2) (Dauphin et al. 2017; the VampPrior paper's hidden layer)."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.linear, self.gate = nn.Linear(n_in, n_out), nn.Linear(n_in, n_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x) * self.gate(x).sigmoid()


ACTIVATIONS: dict[str, Callable[[float], nn.Module]] = {
    "leaky_relu": nn.LeakyReLU, "tanh": lambda _: nn.Tanh(), "relu": lambda _: nn.ReLU()}
HIDDEN_DIMS = list_of(COUNT, least=0, what="a list of integers >= 1")
CHANNELS = list_of(COUNT, least=1, most=4, what="a list of 1 to 4 integers >= 1 (each layer halves the side: 28, 14, "
                   "7, 3, 1)")


def nonlinearity(activation: str, negative_slope: float) -> nn.Module:
    """The elementwise nonlinearity called `activation` (`negative_slope` is LeakyReLU's)."""
    one_of(list(ACTIVATIONS)).check("activation", activation)
    return ACTIVATIONS[activation](negative_slope)


def mlp(sizes: Sequence[int], activation: str = "leaky_relu", negative_slope: float = 0.2) -> nn.Sequential:
    """Hidden layers through `sizes`, then a linear output layer with no activation after it.

    A hidden layer is a linear layer and its nonlinearity, kept flat (the study's state_dict keys stay
    `net.<i>.weight`), or for `activation=gated` one `GatedDense` layer.
    """
    one_of([*ACTIVATIONS, "gated"]).check("activation", activation)
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes[:-2], sizes[1:-1], strict=True):
        layers += ([GatedDense(n_in, n_out)] if activation == "gated"
                   else [nn.Linear(n_in, n_out), nonlinearity(activation, negative_slope)])
    return nn.Sequential(*layers, nn.Linear(sizes[-2], sizes[-1]))


def _check_dims(hidden_dims: Sequence[int], latent_dim: int) -> None:
    HIDDEN_DIMS.check("hidden_dims", list(hidden_dims))
    COUNT.check("latent_dim", latent_dim)


def _label(kind: str, sizes: Sequence[int], activation: str) -> str:
    return f"{kind} {'-'.join(map(str, sizes))} {activation}"


class MLPEncoder(nn.Module):
    """Images [B, 1, 28, 28] -> posterior parameters [B, 2 * latent_dim] through dense layers."""

    def __init__(self, in_features: int = PIXELS, hidden_dims: Sequence[int] = (400, 200), latent_dim: int = 2,
                 negative_slope: float = 0.2, activation: str = "leaky_relu") -> None:
        super().__init__()
        COUNT.check("in_features", in_features)
        _check_dims(hidden_dims, latent_dim)
        self.latent_dim = latent_dim
        self.label = _label("mlp", [in_features, *hidden_dims, latent_dim], activation)
        self.net = mlp([in_features, *hidden_dims, 2 * latent_dim], activation, negative_slope)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1))


class MLPDecoder(nn.Module):
    """Latents [..., latent_dim] -> logits [..., out_features] (dense layers act on the last dimension)."""

    def __init__(self, latent_dim: int = 2, hidden_dims: Sequence[int] = (200, 400), out_features: int = PIXELS,
                 negative_slope: float = 0.2, activation: str = "leaky_relu") -> None:
        super().__init__()
        COUNT.check("out_features", out_features)
        _check_dims(hidden_dims, latent_dim)
        self.latent_dim = latent_dim
        self.label = _label("mlp", [latent_dim, *hidden_dims, out_features], activation)
        self.net = mlp([latent_dim, *hidden_dims, out_features], activation, negative_slope)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


def conv_sizes(n_layers: int) -> list[int]:
    """Feature-map sides of 28x28 images after each stride-2 convolution (kernel 4, padding 1): 28, 14, 7, 3, 1."""
    sizes = [IMAGE_SHAPE[-1]]
    for _ in range(n_layers):
        sizes.append((sizes[-1] - 2) // 2 + 1)
    return sizes


def _conv_settings(channels: Sequence[int], hidden_dims: Sequence[int], latent_dim: int,
                   activation: str) -> tuple[list[int], str]:
    """The checked `channels` as a list and the label of a conv encoder or decoder with these settings."""
    _check_dims(hidden_dims, latent_dim)
    CHANNELS.check("channels", list(channels))
    dense = "-".join(map(str, hidden_dims)) or "-"
    return list(channels), f"conv {'-'.join(map(str, channels))} fc {dense} z{latent_dim} {activation}"


class ConvEncoder(nn.Module):
    """Images [B, 1, 28, 28] -> posterior parameters [B, 2 * latent_dim]: stride-2 convolutions (kernel 4,
    each halving the side) with `channels`, then dense layers `hidden_dims` and a linear head."""

    def __init__(self, latent_dim: int = 2, channels: Sequence[int] = (32, 64), hidden_dims: Sequence[int] = (256,),
                 negative_slope: float = 0.2, activation: str = "leaky_relu") -> None:
        super().__init__()
        channels, self.label = _conv_settings(channels, hidden_dims, latent_dim, activation)
        self.latent_dim = latent_dim
        convs: list[nn.Module] = []
        for c_in, c_out in zip([IMAGE_SHAPE[0], *channels[:-1]], channels, strict=True):
            convs += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nonlinearity(activation, negative_slope)]
        flat = channels[-1] * conv_sizes(len(channels))[-1] ** 2
        self.net = nn.Sequential(*convs, nn.Flatten(), mlp([flat, *hidden_dims, 2 * latent_dim], activation,
                                                           negative_slope))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ConvDecoder(nn.Module):
    """Latents [..., latent_dim] -> logits [..., 784]: dense layers `hidden_dims` up to the encoder's last feature
    map, then stride-2 transposed convolutions back through `channels` (reversed) to one 28x28 channel. The
    leading dimensions are flattened into one batch for the convolutions and restored afterwards."""

    def __init__(self, latent_dim: int = 2, channels: Sequence[int] = (32, 64), hidden_dims: Sequence[int] = (256,),
                 negative_slope: float = 0.2, activation: str = "leaky_relu") -> None:
        super().__init__()
        channels, self.label = _conv_settings(channels, hidden_dims, latent_dim, activation)
        self.latent_dim = latent_dim
        sizes = conv_sizes(len(channels))
        side, reversed_channels = sizes[-1], channels[::-1]
        modules: list[nn.Module] = [
            mlp([latent_dim, *hidden_dims, channels[-1] * side**2], activation, negative_slope),
            nonlinearity(activation, negative_slope), nn.Unflatten(1, (channels[-1], side, side))]
        outputs = [*reversed_channels[1:], IMAGE_SHAPE[0]]
        for i, (c_in, c_out) in enumerate(zip(reversed_channels, outputs, strict=True)):
            here, target = sizes[-1 - i], sizes[-2 - i]
            modules.append(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, output_padding=target - 2 * here))
            if i < len(channels) - 1:
                modules.append(nonlinearity(activation, negative_slope))
        self.net = nn.Sequential(*modules)

    def forward(self, z: Tensor) -> Tensor:
        lead = z.shape[:-1]
        return self.net(z.reshape(-1, self.latent_dim)).reshape(*lead, PIXELS)
