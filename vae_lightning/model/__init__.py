"""The model: the VAE as a LightningModule and its parts, each behind a contract so that any network
serves any prior and any likelihood.

- `vae.VAEModule`: encoder -> q(z|x) (the prior's posterior family) -> reparameterised z -> decoder ->
  likelihood. Loss per image in nats: recon = -log p(x|z) summed over pixels, KL summed over latent
  dimensions, averaged over the batch; training minimises recon + kl_weight * KL, and the logged ELBO
  never carries the weight. `encode(x)` returns q(z|x); metrics, pictures and samplers go through it.
- `members.MemberStack`: K VAEModules (one configuration at K seeds) trained as one, their parameters stacked
  along a member axis and their loss computed by `vmap` over the stack (runs/members.py trains it).
- `networks`: encoder(images [B, 1, 28, 28]) -> posterior parameters [B, 2 * latent_dim]; decoder(latents
  [..., latent_dim]) -> one logit per pixel [..., 784] for any leading dimensions. Both carry
  `latent_dim` and a `label`.
- `likelihoods`: one object turns decoder output and images into log p(x|z) per image and into the mean
  image to draw; the loss, IWAE, exact NLL and pictures all use it.
- `building.build_module`: the (untrained) VAE from config sections (a command's config or a checkpoint's),
  each part on its own stream of the seed; training, the benchmark and loading a checkpoint all build it here.
- `annealing`: KL-weight schedules, plain functions of training progress (the callback
  `callbacks.KLAnnealing` applies them at every step).

Adding a network: a module with the shape contract above (take `latent_dim`, optionally set `label`),
and `conf/model/<name>.yaml` with `_target_: vae_lightning.model.VAEModule` and its `encoder`/`decoder`
nodes naming your classes. tests/integration/test_custom_network.py defines one in the test file and
runs it through every command.

Adding a likelihood: subclass `likelihoods.Likelihood` (an exponential family per pixel: its
log-partition `A` and `mean`) and add `conf/likelihood/<name>.yaml`.
"""

from vae_lightning.model.annealing import Constant, CosineWarmup, Cyclical, LinearWarmup, Schedule, SigmoidWarmup
from vae_lightning.model.likelihoods import Bernoulli, ContinuousBernoulli, Likelihood
from vae_lightning.model.networks import ConvDecoder, ConvEncoder, GatedDense, MLPDecoder, MLPEncoder
from vae_lightning.model.vae import VAEModule

__all__ = ["Bernoulli", "Constant", "ContinuousBernoulli", "ConvDecoder", "ConvEncoder", "CosineWarmup", "Cyclical",
           "GatedDense", "Likelihood", "LinearWarmup", "MLPDecoder", "MLPEncoder", "Schedule", "SigmoidWarmup",
           "VAEModule"]
