"""The pixel likelihoods against torch.distributions and against their own normalisation, the model's
pictures showing the likelihood's mean, and the likelihood in the checkpoint contract."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn
from torch.distributions import ContinuousBernoulli as TorchCB

from vae_lightning.checkpoints import CHECKPOINT_KEY, check_compatible, load_checkpoint, module_from_checkpoint
from vae_lightning.core.errors import UserError
from vae_lightning.latent import NormalPrior
from vae_lightning.model import Bernoulli, ContinuousBernoulli, MLPDecoder, MLPEncoder, VAEModule
from vae_lightning.runs.folders import apply_overrides

F64 = torch.float64
# across torch's Taylor region (|l| < 0.004), ours (|l| < 0.05) and far beyond both
LOGITS = torch.tensor([-30.0, -8.0, -1.0, -0.04, -0.003, 0.0, 0.001, 0.02, 0.3, 4.0, 12.0, 30.0], dtype=F64)


def test_continuous_bernoulli_log_density_equals_torch():
    """Where torch's own form is accurate: it goes through sigmoid(l), which loses digits beyond |l| ~ 15 even
    in float64 (at l = 30 it is 3e-5 nats off; the integral test below covers those logits)."""
    gen = torch.Generator().manual_seed(0)
    inside = LOGITS[LOGITS.abs() <= 15]
    logits = torch.cat([inside, (5 * torch.randn(200, dtype=F64, generator=gen)).clamp(-15, 15)])
    x = torch.rand(50, len(logits), dtype=F64, generator=gen)
    expected = TorchCB(logits=logits).log_prob(x).sum(-1)
    torch.testing.assert_close(ContinuousBernoulli().log_prob(logits, x), expected, rtol=0, atol=1e-8)
    torch.testing.assert_close(ContinuousBernoulli().mean(logits), TorchCB(logits=logits).mean, rtol=0, atol=1e-8)


def test_continuous_bernoulli_integrates_to_one_and_its_mean_is_not_the_sigmoid():
    x = torch.linspace(0, 1, 200_001, dtype=F64).unsqueeze(1)  # [n, 1] images of one pixel
    density = torch.stack([ContinuousBernoulli().log_prob(logit.view(1), x).exp() for logit in LOGITS], dim=1)
    torch.testing.assert_close(torch.trapezoid(density, x[:, 0], dim=0), torch.ones(len(LOGITS), dtype=F64),
                               rtol=0, atol=1e-6)
    mean = torch.trapezoid(density * x, x[:, 0], dim=0)
    torch.testing.assert_close(ContinuousBernoulli().mean(LOGITS), mean, rtol=0, atol=1e-6)
    assert ContinuousBernoulli().mean(torch.tensor(4.0)) == pytest.approx(1 / (1 - torch.e**-4) - 1 / 4)
    assert abs(float(ContinuousBernoulli().mean(torch.tensor(4.0)) - torch.sigmoid(torch.tensor(4.0)))) > 0.2


def test_continuous_bernoulli_is_accurate_in_float32_at_large_logits():
    """A decoder's logits for sure-black or sure-white pixels are large; there torch's float32 form (through a
    clamped sigmoid) is off by 0.2 nats per pixel at |l| = 20 and 1.3 at 60. Ours matches the exact value."""
    logits = torch.tensor([-60.0, -20.0, 20.0, 60.0])
    x = torch.full((1, 4), 0.5)
    exact = 0.5 * logits.double() - (logits.double().clamp(min=0) + torch.log1p(-torch.exp(-logits.double().abs()))
                                     - torch.log(logits.double().abs()))
    ours = torch.stack([ContinuousBernoulli().log_prob(logit.view(1), x[:, :1])[0] for logit in logits])
    torch.testing.assert_close(ours.double(), exact, rtol=1e-6, atol=1e-5)
    assert (TorchCB(logits=logits).log_prob(x[0]).double() - exact).abs().max() > 0.2
    mean = ContinuousBernoulli().mean(logits).double()
    torch.testing.assert_close(mean, -1 / torch.expm1(-logits.double()) - 1 / logits.double(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("likelihood", [Bernoulli(), ContinuousBernoulli()])
def test_log_prob_pairs_scores_every_image_under_every_latent(likelihood):
    gen = torch.Generator().manual_seed(1)
    x, logits = torch.rand(5, 7, generator=gen), 3 * torch.randn(4, 7, generator=gen)
    pairs = likelihood.log_prob_pairs(x, logits)
    broadcast = likelihood.log_prob(logits[:, None], x)  # [G, N]: leading dimensions of the decoder output
    torch.testing.assert_close(pairs, broadcast.T, rtol=1e-5, atol=1e-4)


def test_bernoulli_log_prob_is_minus_bce_of_images():
    gen = torch.Generator().manual_seed(2)
    x, logits = torch.rand(3, 1, 28, 28, generator=gen), torch.randn(3, 784, generator=gen)
    bce = nn.functional.binary_cross_entropy_with_logits(logits, x.flatten(1), reduction="none").sum(1)
    torch.testing.assert_close(Bernoulli().log_prob(logits, x), -bce)


@pytest.mark.parametrize("likelihood", [Bernoulli(), ContinuousBernoulli()])
def test_the_model_decodes_the_likelihood_mean_with_leading_dimensions(likelihood):
    torch.manual_seed(0)
    module = VAEModule(MLPEncoder(), MLPDecoder(), NormalPrior(2), None, 2, likelihood=likelihood)
    z = torch.randn(3, 4, 2)
    images = module.decode(z)
    assert images.shape == (3, 4, 1, 28, 28)
    torch.testing.assert_close(images.flatten(-3), likelihood.mean(module.decoder(z)))
    recon, _ = module.loss_terms(torch.rand(6, 1, 28, 28))
    assert recon.shape == (6,)


def test_checkpoints_and_run_configs_from_before_the_likelihood_group_mean_bernoulli(tmp_path, compose_cfg):
    cfg = compose_cfg([])
    stored = {s: OmegaConf.to_container(cfg[s], resolve=True) for s in ("model", "prior", "annealing", "data")}
    module = VAEModule(MLPEncoder(), MLPDecoder(), NormalPrior(2), None, 2)
    torch.save({CHECKPOINT_KEY: stored, "state_dict": module.state_dict()}, tmp_path / "old.ckpt")
    checkpoint = load_checkpoint(tmp_path / "old.ckpt")
    assert isinstance(module_from_checkpoint(checkpoint).likelihood, Bernoulli)
    check_compatible(checkpoint, {**stored, "likelihood": OmegaConf.to_container(cfg.likelihood)}, "old.ckpt")
    continuous = {"_target_": "vae_lightning.model.ContinuousBernoulli"}
    with pytest.raises(UserError, match="likelihood._target_='vae_lightning.model.ContinuousBernoulli'"):
        check_compatible(checkpoint, {**stored, "likelihood": continuous}, "old.ckpt")
    old_run = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "likelihood"])
    assert apply_overrides(old_run, cfg, ["trainer.max_epochs=3"]).likelihood == cfg.likelihood
