"""vae_lightning: how the latent prior and the KL schedule shape a VAE on MNIST.

Python API: `load_model(run folder or .ckpt)` gives back a trained VAE (checkpoints/). The
package is laid out by concept (core, model, checkpoints, latent, data, callbacks,
evaluation, pictures, runs, explorer, benchmark);
each subpackage's docstring states its contract and how to add to it. The commands are the modules
`python -m vae_lightning.<train | evaluate | sample | beta_grid | classifier | report | bench>`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vae_lightning.checkpoints import load_model

__all__ = ["load_model"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # imported on first use: a command's `--help` never pays for torch
    if name == "load_model":
        from vae_lightning.checkpoints import load_model

        return load_model
    raise AttributeError(f"module 'vae_lightning' has no attribute {name!r}")
