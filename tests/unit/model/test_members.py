"""K members trained as one (model/members.py): the stacked step computes each member's own loss, each member's
gradient is its own loss's, the members stay plain models whose weights are the stack's, and they start from the
weights of single runs at their seeds (runs/members.py builds them)."""

from __future__ import annotations

import pytest
import torch
from helpers.commands import compose_plain

from vae_lightning.core.errors import ParameterError
from vae_lightning.data.batches import EpochShuffle, MemberShuffle
from vae_lightning.model.building import build_module
from vae_lightning.model.members import MemberStack
from vae_lightning.runs import members as runs_members

SEEDS = [0, 5, 9]
# every network family and every kind of prior: analytic KL (normal, beta), mixtures, the VampPrior (the prior
# calls the encoder), a flow, and free bits
CASES = [("mlp", "normal", ()), ("mlp", "beta", ()), ("mlp", "mog", ()),
         ("gated", "vamp", ("prior.n_pseudo_inputs=7",)), ("conv", "normal", ("model.free_bits=0.5",)),
         ("mlp", "flow", ())]


def stack_of(model: str, prior: str, *overrides: str, seeds: list[int] = SEEDS) -> MemberStack:
    cfg = compose_plain("train", f"model={model}", f"prior={prior}", *overrides)
    return MemberStack([build_module(cfg, seed=s) for s in seeds], seeds)


def images(k: int, b: int = 5) -> torch.Tensor:
    return torch.rand(k, b, 1, 28, 28, generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize(("model", "prior", "overrides"), CASES)
def test_the_stacked_loss_is_each_members_own_loss_at_the_same_draw(model, prior, overrides):
    stack = stack_of(model, prior, *overrides)
    x = images(len(SEEDS))
    torch.manual_seed(11)
    recon, kl_terms = stack.loss_parts(x)
    # the same computation member by member: encoder, one draw of the stacked posterior (the same noise), loss_at
    torch.manual_seed(11)
    params = torch.stack([m.encoder(x[k]) for k, m in enumerate(stack.members)])
    prior_ = stack.template.prior
    z = prior_.rsample_posterior(prior_.posterior(params))
    for k, member in enumerate(stack.members):
        own_recon, own_kl = member.loss_at(x[k], params[k], z[k])
        torch.testing.assert_close(recon[k], own_recon, rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(kl_terms[k], own_kl, rtol=1e-5, atol=1e-5)
    torch.manual_seed(11)
    loss = stack._terms((x, None))[0]  # the same draw again
    own = recon.mean(1) + torch.stack([m.kl_for_loss(kl_terms[k]) for k, m in enumerate(stack.members)])
    torch.testing.assert_close(loss, own)


@pytest.mark.parametrize(("model", "prior", "overrides"), CASES[:4])
def test_each_members_gradient_is_its_own_losss_gradient(model, prior, overrides):
    stack = stack_of(model, prior, *overrides)
    x = images(len(SEEDS))
    params = stack.parameters_by_name()
    posterior_params = stack._encode(params, x)
    z = torch.rand(*posterior_params.shape[:-1], stack.latent_dim, generator=torch.Generator().manual_seed(4))
    z = stack.template.prior.clamp_to_support(z * 0.98 + 0.01)  # a fixed draw, inside every support
    recon, kl = stack._rest(params, x, posterior_params.detach(), z)
    (recon.mean(1) + kl.sum(-1).mean(1)).sum().backward()
    for k, member in enumerate(stack.members):
        copy = build_module(compose_plain("train", f"model={model}", f"prior={prior}", *overrides), seed=SEEDS[k])
        copy.load_state_dict(member.state_dict())
        own_recon, own_kl = copy.loss_at(x[k], posterior_params[k].detach(), z[k])
        (own_recon.mean() + own_kl.sum(-1).mean()).backward()
        for name, p in copy.named_parameters():
            if p.grad is not None and not name.startswith("encoder."):  # the encoder gets no gradient here: its
                grad = stack.stacked[name.replace(".", "::")].grad[k]    # output was detached in both
                torch.testing.assert_close(grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_members_are_views_of_the_stack_before_and_after_a_move():
    stack = stack_of("mlp", "mog")
    key = "encoder::net::0::weight"
    with torch.no_grad():
        stack.stacked[key][1].add_(1.0)
    assert torch.equal(stack.members[1].encoder.net[0].weight, stack.stacked[key][1])
    stack.double()  # a move replaces the stack's storage: the members follow it
    assert stack.members[2].encoder.net[0].weight.dtype == torch.float64
    with torch.no_grad():
        stack.stacked[key][2].zero_()
    assert float(stack.members[2].encoder.net[0].weight.abs().sum()) == 0.0
    assert stack.members[2].prior.means.dtype == torch.float64


def test_members_start_from_the_single_runs_weights_and_two_priors_pair_per_seed():
    normal, mog = stack_of("mlp", "normal"), stack_of("mlp", "mog")
    for k, seed in enumerate(SEEDS):
        single = build_module(compose_plain("train", "prior=normal"), seed=seed).state_dict()
        ours, theirs = normal.members[k].state_dict(), mog.members[k].state_dict()
        for name in single:
            assert torch.equal(ours[name], single[name]) and torch.equal(theirs[name], single[name]), (seed, name)
    assert not torch.equal(normal.stacked["encoder::net::0::weight"][0], normal.stacked["encoder::net::0::weight"][1])


def test_the_stacked_optimizer_state_splits_into_each_members_single_run_state():
    stack = stack_of("mlp", "mog")
    optimizer = stack.configure_optimizers()
    loss = stack._terms((images(len(SEEDS)), None))[0].sum()
    loss.backward()
    optimizer.step()
    state = optimizer.state_dict()
    member = stack.member_optimizer_state(state, 1)
    single = torch.optim.Adam(stack.members[1].parameters(), 1e-3)
    single.load_state_dict(member)  # the shape of a single run's optimizer over the member's parameters
    names = [n for n, _ in stack.members[1].named_parameters()]
    first = member["state"][0]["exp_avg"]
    assert names[0] == "encoder.net.0.weight" and first.shape == stack.members[1].encoder.net[0].weight.shape
    assert torch.equal(first, state["state"][0]["exp_avg"][1])


def test_member_batches_are_the_single_runs_batches_at_each_seed():
    n, batch, seeds = 23, 5, [4, 7]
    members = MemberShuffle(n, seeds, batch)
    members.set_epoch(2)
    order = torch.tensor(list(members)).split(batch * len(seeds))
    for k, seed in enumerate(seeds):
        single = EpochShuffle(n, seed)
        single.set_epoch(2)
        expected = torch.tensor(list(single)).split(batch)
        got = [b.unflatten(0, (len(seeds), -1))[k] for b in order]
        assert all(torch.equal(g, e) for g, e in zip(got, expected, strict=True))
    # a resumed epoch skips what it had handed out
    members.set_epoch(3)
    it = iter(members)
    first = [next(it) for _ in range(batch * len(seeds))]
    state = members.state_dict()
    resumed = MemberShuffle(n, seeds, batch)
    resumed.load_state_dict(state)
    resumed.set_epoch(3)
    assert first + list(resumed) == _epoch(n, seeds, batch, 3)


def _epoch(n: int, seeds: list[int], batch: int, epoch: int) -> list[int]:
    sampler = MemberShuffle(n, seeds, batch)
    sampler.set_epoch(epoch)
    return list(sampler)


@pytest.mark.parametrize(("value", "message"), [
    ([], "seeds=[] is invalid: must be a non-empty list of seeds"),
    (5, "seeds=5 is invalid: must be a non-empty list of seeds"),
    ([1, 2, 1], "seeds=[1, 2, 1] is invalid: must be distinct seeds (repeated: 1)"),
    ([0, "a"], "seeds[...]='a' is invalid"),
    ([0, 1.5], "seeds[...]=1.5 is invalid"),
    ([0, -1], "seeds[...]=-1 is invalid"),
])
def test_a_bad_seed_list_is_one_line_naming_it(value, message):
    with pytest.raises(ParameterError) as err:
        runs_members.check_seeds(value)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_too_many_members_for_the_memory_is_refused_with_the_largest_that_fits(monkeypatch):
    cfg = compose_plain("train")
    module = build_module(cfg, seed=0)
    monkeypatch.setattr("vae_lightning.core.memory.available_bytes", lambda: 2 << 30)
    runs_members.check_member_memory(cfg, module, 8)
    with pytest.raises(ParameterError) as err:
        runs_members.check_member_memory(cfg, module, 100_000)
    assert str(err.value).startswith("seeds=100000 is invalid: must be at most ") and "free to use" in str(err.value)
