"""K members of one configuration at K seeds, trained as one model: every parameter stacked along a leading
member axis, one batched computation per step, one optimizer step for all.

Each member is an ordinary `VAEModule`, built by the caller at its own seed (so it starts from exactly the weights
a single run at that seed starts from). Its parameters are then re-pointed at its slice of the stacked tensors:
the members stay usable as plain models at every moment (pictures, checkpoints, `state_dict`) without a copy,
and the stack trains them all.

One step, with x [K, B, 1, 28, 28] (member k's own batch):

1. the encoder of every member, `vmap`ped over the stacked parameters (`torch.func.functional_call` of the
   first member with each member's slice): posterior parameters [K, B, 2 * latent_dim];
2. one reparameterised draw z ~ q(z|x) [K, B, latent_dim] from the prior's posterior family, outside `vmap`
   (torch's samplers do not run inside it; the families are elementwise, so the member axis is one more batch
   dimension);
3. `VAEModule.loss_at` (decoder, likelihood, KL against each member's own prior) `vmap`ped again: recon [K, B]
   and KL groups [K, B, G].

The loss is the sum of the members' losses, so the gradient of each member's parameters is that of its own loss,
and an elementwise optimizer (Adam, AdamW, SGD) steps each member exactly as it would step alone. (A step that
couples parameters, such as clipping the gradient's global norm, would couple members: runs.members refuses it.)
No Python loop runs over members in a step, for any network or prior: a flow prior's log-density is mapped by
`vmap` too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from vae_lightning.model.vae import VAEModule


def _key(name: str) -> str:
    """A parameter name as a ParameterDict key (no dots)."""
    return name.replace(".", "::")


class _Method(nn.Module):
    """`fn(vae, *args)` as a module's forward, so that `functional_call` can swap the VAE's parameters for a
    member's slice."""

    def __init__(self, vae: VAEModule, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.vae, self.fn = vae, fn

    def forward(self, *args: Tensor) -> Any:
        return self.fn(self.vae, *args)


class MemberStack(L.LightningModule):
    """The members' parameters stacked ([K, ...] each, in `stacked`), trained as one LightningModule.

    Logged: the members' mean loss terms under the single-run names (`train/loss`, `val/elbo`, ...: the progress
    bar and the trainer's monitor read them). Every member's own values are in `member_values[stage]` (tensors
    [K] per term, nats per image) after each epoch; the caller writes them to the members' run folders.
    """

    def __init__(self, members: Sequence[VAEModule], seeds: Sequence[int]) -> None:
        super().__init__()
        if len(members) != len(seeds) or not members:
            raise ValueError("one member per seed, at least one")
        template = members[0]
        self.__dict__["members"] = list(members)  # not submodules: their parameters are views of `stacked`
        self.seeds = [int(s) for s in seeds]
        self._seed_tensor = torch.tensor(self.seeds)
        self._names = [name for name, _ in template.named_parameters()]
        for member in members[1:]:
            shapes = {n: p.shape for n, p in member.named_parameters()}
            if shapes != {n: p.shape for n, p in template.named_parameters()}:
                raise ValueError("members of one stack must have the same parameters")
        self.stacked = nn.ParameterDict()  # in the members' parameter order (a dict argument would be sorted)
        for name in self._names:
            self.stacked[_key(name)] = nn.Parameter(torch.stack([m.get_parameter(name).detach() for m in members]))
        self._relink()
        self.kl_weight = 1.0
        self.free_bits, self.latent_dim = template.free_bits, template.latent_dim
        self._encode = vmap(self._member_call(lambda vae, x: vae.encoder(x)))
        self._rest = vmap(self._member_call(lambda vae, x, params, z: vae.loss_at(x, params, z)))
        self._epoch_steps: list[tuple[Tensor, int]] = []  # per training step: [3, K] (loss, recon, kl), images
        self._sums: dict[str, list[Tensor]] = {}  # per evaluation stage: [4, K] sums (images, loss, recon, kl)
        self.member_values: dict[str, dict[str, Tensor]] = {}

    @property
    def members(self) -> list[VAEModule]:
        """The members as plain VAEModules (their parameters are views of their slices of `stacked`)."""
        return self.__dict__["members"]

    @property
    def template(self) -> VAEModule:
        return self.members[0]

    def _relink(self) -> None:
        """Point every member's parameters at its slice of the stacked tensors."""
        for k, member in enumerate(self.members):
            for name in self._names:
                member.get_parameter(name).data = self.stacked[_key(name)].data[k]

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> MemberStack:
        """Moves (device, dtype) reach the members' buffers too, and their views follow the moved stack."""
        super()._apply(fn, recurse)
        for member in self.members:
            member._apply(fn)
        self._relink()
        return self

    def _member_call(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """fn(vae, *args) as a function of one member's parameters (for `vmap` over the stack)."""
        method = _Method(self.template, fn)

        def call(params: dict[str, Tensor], *args: Tensor) -> Any:
            return functional_call(method, {f"vae.{n}": p for n, p in params.items()}, args)
        return call

    def parameters_by_name(self) -> dict[str, Tensor]:
        return {name: self.stacked[_key(name)] for name in self._names}

    def loss_parts(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Member k's reconstruction [K, B] and KL groups [K, B, G] of its images x[k] ([K, B, 1, 28, 28])."""
        params = self.parameters_by_name()
        posterior_params = self._encode(params, x)
        prior = self.template.prior
        z = prior.rsample_posterior(prior.posterior(posterior_params))
        return self._rest(params, x, posterior_params, z)

    def kl_for_loss(self, kl_terms: Tensor) -> Tensor:
        """Each member's KL [K] as its loss counts it (VAEModule.kl_for_loss, per member)."""
        means = kl_terms.mean(dim=1)
        if self.free_bits == 0:
            return means.sum(dim=-1)
        return means.clamp(min=self.free_bits * self.latent_dim / kl_terms.shape[-1]).sum(dim=-1)

    def _terms(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor, int]:
        """Each member's loss, recon and KL [K] on its batch; evaluation batches ([B, ...], the same images for
        every member) are broadcast to all members."""
        x, _ = batch
        if x.dim() == 4:
            x = x.expand(len(self.seeds), *x.shape)
        recon_per_image, kl_terms = self.loss_parts(x)
        recon, kl = recon_per_image.mean(dim=1), kl_terms.sum(dim=-1).mean(dim=1)
        return recon + self.kl_weight * self.kl_for_loss(kl_terms), recon, kl, x.shape[1]

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        loss, recon, kl, n = self._terms(batch)
        terms = torch.stack([loss.detach(), recon.detach(), kl.detach()])  # [3, K]
        self._epoch_steps.append((terms, n))
        every = self.trainer.log_every_n_steps
        if every and (self.global_step + 1) % every == 0:
            means = terms.mean(dim=1)
            values = {"loss": means[0], "recon": means[1], "kl": means[2], "elbo": -(means[1] + means[2]),
                      "kl_weight": self.kl_weight}
            self.log_dict({f"train/{k}": v for k, v in values.items()}, on_step=True, on_epoch=False, prog_bar=True,
                          batch_size=n)
        # the sum: each member's gradient is its own loss's; `member_loss` lets the non-finite guard name a member
        return {"loss": loss.sum(), "recon": recon.detach().mean(), "kl": kl.detach().mean(),
                "member_loss": loss.detach(), "member_seeds": self._seed_tensor}

    def on_train_epoch_start(self) -> None:
        self._epoch_steps = []

    def train_epoch_values(self) -> dict[str, Tensor] | None:
        """Each member's means over this epoch's training images so far ([K] per term), None before a step."""
        if not self._epoch_steps:
            return None
        images = torch.tensor([n for _, n in self._epoch_steps], dtype=torch.float64)
        sums = torch.stack([t.double() for t, _ in self._epoch_steps])  # [S, 3, K]
        loss, recon, kl = torch.einsum("s,stk->tk", images.to(sums.device), sums) / images.sum()
        return {"loss": loss, "recon": recon, "kl": kl, "elbo": -(recon + kl)}

    def on_train_epoch_end(self) -> None:
        values = self.train_epoch_values()
        self._epoch_steps = []
        if values is None:
            return
        self.member_values["train"] = values
        self.log_dict({f"train/{k}_epoch": v.mean().float() for k, v in values.items()}, on_step=False,
                      on_epoch=True)

    def _evaluation_step(self, batch: tuple[Tensor, Tensor], stage: str) -> None:
        loss, recon, kl, n = self._terms(batch)
        self._sums.setdefault(stage, []).append(torch.stack([torch.full_like(loss, n), loss * n, recon * n, kl * n]))

    def _evaluation_end(self, stage: str) -> None:
        sums = torch.stack(self._sums.pop(stage, [])).double().sum(dim=0) if self._sums.get(stage) else None
        if sums is None:
            return
        loss, recon, kl = sums[1:] / sums[0]
        values = {"loss": loss, "recon": recon, "kl": kl, "elbo": -(recon + kl)}
        self.member_values[stage] = values
        means = {f"{stage}/{k}": v.mean().float() for k, v in values.items()}
        self.log_dict(means, on_step=False, on_epoch=True, prog_bar=stage == "val")

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluation_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._evaluation_end("val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluation_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._evaluation_end("test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """The members' optimizer over the stacked parameters (VAEModule.configure_optimizers: a prior with its
        own `learning_rate` gets a second group)."""
        template = self.template
        lr = template.prior.learning_rate
        if lr is None:
            return template.optimizer_factory(list(self.parameters_by_name().values()))
        own = [self.stacked[_key(n)] for n in self._names if n.startswith("prior.")]
        rest = [self.stacked[_key(n)] for n in self._names if not n.startswith("prior.")]
        return template.optimizer_factory([{"params": rest}, {"params": own, "lr": lr}])

    def member_optimizer_state(self, optimizer_state: dict[str, Any], k: int) -> dict[str, Any]:
        """Member k's slice of the stacked optimizer's state dict: the state of a single run's optimizer over that
        member's parameters (VAEModule.configure_optimizers orders them alike)."""
        def part(value: Any) -> Any:
            return value[k].clone() if isinstance(value, Tensor) and value.dim() > 0 else value
        state = {index: {name: part(v) for name, v in entry.items()}
                 for index, entry in optimizer_state["state"].items()}
        return {"state": state, "param_groups": optimizer_state["param_groups"]}
