"""vae_lightning: how the latent prior and the KL schedule shape a VAE on MNIST.

Python API: `load_model(run folder or .ckpt)` gives back a trained VAE (see checkpoint.py).
"""

from vae_lightning.checkpoint import load_model

__all__ = ["load_model"]
__version__ = "0.1.0"
