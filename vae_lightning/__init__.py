"""vae_lightning: how the latent prior and the KL schedule shape a VAE on MNIST."""

__version__ = "0.1.0"
