"""Building the (untrained) VAE from config sections: the `model`, `prior` and `likelihood` of a command's
composed config, or the sections stored in a checkpoint (checkpoints/). Training, the benchmark, the K-member
run and loading a checkpoint all build it here, so a model is put together one way."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vae_lightning.core.building import build
from vae_lightning.core.checks import COUNT
from vae_lightning.core.rng import stream
from vae_lightning.model.vae import VAEModule

# The model config's networks, built each on its own stream of the seed (a model config without them builds
# its networks itself, on the model's stream)
NETWORKS = ("encoder", "decoder")


def build_module(sections: Mapping[str, Any], seed: int | None = None) -> VAEModule:
    """The (untrained) VAE of a config's `model`, `prior` and `likelihood` sections: a command's composed
    config or the sections stored in a checkpoint.

    With the run's `seed` (training, the benchmark), the prior, the likelihood, the encoder and the decoder each
    draw their initial parameters from their own stream of that seed (core.rng.stream), so runs of two
    configurations at one seed start from the same network weights wherever their architectures agree: a
    learned prior does not change the networks' initialisation, and seeds pair configurations for real."""
    model = sections["model"]
    COUNT.check("model.latent_dim", model["latent_dim"])
    parts = {}
    for name, node in (("prior", sections["prior"]), ("likelihood", sections["likelihood"]),
                       *((n, model[n]) for n in NETWORKS if n in model)):
        with stream(seed, name):
            parts[name] = build(node, "model." + name if name in NETWORKS else name,
                                **({"latent_dim": model["latent_dim"]} if name == "prior" else {}))
    with stream(seed, "model"):
        return build(model, "model", **parts)
