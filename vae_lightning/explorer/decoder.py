"""The decoder as the page runs it: an MLP decoder's layers with their weights as base64 float32 (the page's
forward pass computes in float64 from the same float32 numbers, so its images match `module.decode` to the
rounding of the last pixel level), or, for a decoder the page cannot run, an atlas of decoded images.

A layer the page runs is one entry of LAYER_OPS (module class -> its spec) and one case of `forward` in
explorer.js; a likelihood is one entry of MEANS (its mean image as the page computes it).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from vae_lightning.model.likelihoods import Bernoulli, ContinuousBernoulli
from vae_lightning.model.networks import GatedDense, MLPDecoder

if TYPE_CHECKING:
    from vae_lightning.model import VAEModule


def floats(tensor: Tensor) -> str:
    """A tensor's values as base64 little-endian float32, row-major."""
    return base64.b64encode(tensor.detach().cpu().float().contiguous().numpy().astype("<f4").tobytes()).decode()


def unfloats(text: str) -> np.ndarray:
    """The inverse of `floats`, flat."""
    return np.frombuffer(base64.b64decode(text), dtype="<f4")


def bytes_b64(tensor: Tensor) -> str:
    """A uint8 tensor's values as base64, row-major."""
    return base64.b64encode(tensor.detach().cpu().to(torch.uint8).contiguous().numpy().tobytes()).decode()


def _linear(layer: nn.Linear) -> dict[str, Any]:
    return {"op": "linear", "in": layer.in_features, "out": layer.out_features, "w": floats(layer.weight),
            "b": floats(layer.bias)}


LAYER_OPS: dict[type[nn.Module], Callable[[Any], dict[str, Any]]] = {
    nn.Linear: _linear,
    nn.LeakyReLU: lambda layer: {"op": "leaky_relu", "slope": float(layer.negative_slope)},
    nn.ReLU: lambda _: {"op": "relu"},
    nn.Tanh: lambda _: {"op": "tanh"},
    GatedDense: lambda layer: {"op": "gated", "linear": _linear(layer.linear), "gate": _linear(layer.gate)},
}
# likelihood class -> the name of its mean in explorer.js (`MEANS` there)
MEANS = {Bernoulli: "sigmoid", ContinuousBernoulli: "continuous_bernoulli"}


def decoder_spec(module: VAEModule) -> dict[str, Any] | None:
    """{"layers": [...], "mean": ...} for a decoder the page can run (an MLPDecoder of LAYER_OPS layers, with a
    likelihood of MEANS), else None (the page then shows an atlas)."""
    decoder, mean = module.decoder, MEANS.get(type(module.likelihood))
    if type(decoder) is not MLPDecoder or mean is None or any(type(m) not in LAYER_OPS for m in decoder.net):
        return None
    return {"layers": [LAYER_OPS[type(m)](m) for m in decoder.net], "mean": mean}


@torch.no_grad()
def pixels(module: VAEModule, z: Tensor, batch_size: int = 1024) -> Tensor:
    """The decoder's mean images of latents z [N, D] as the page shows them: uint8 [N, 784], round(255 * mean)."""
    out = [module.decode(chunk.float()).flatten(1).mul(255).round().clamp(0, 255).to(torch.uint8)
           for chunk in z.split(batch_size)]
    return torch.cat(out) if out else torch.empty(0, 784, dtype=torch.uint8)
