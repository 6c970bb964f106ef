"""Posterior-collapse diagnostics: active units (Burda et al. 2016) and the mutual information
I(x; z) under q (the minibatch estimator of Hoffman & Johnson 2016), shared by evaluate and the
training callback `callbacks.Diagnostics`."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Distribution

# Burda et al.'s threshold on Var_x(E_q[z_u | x]), shared by evaluate and the training diagnostics
ACTIVE_UNITS_THRESHOLD = 0.01


def active_units(posterior_means: Tensor, threshold: float = ACTIVE_UNITS_THRESHOLD) -> tuple[int, Tensor]:
    """Burda et al.'s active units: dimensions u with Var_x(E_q[z_u | x]) > threshold.

    Returns the count and the variance per dimension (the threshold is on the scale of an N(0, 1)
    prior; for priors on other scales read the variances).
    """
    variance = posterior_means.double().var(dim=0)
    return int((variance > threshold).sum()), variance


def mutual_information(q: Distribution, z: Tensor, chunk_size: int = 256) -> float:
    """I(x; z) in nats under q(x, z) = p_data(x) q(z|x), estimated on N images by the minibatch estimator
    (Hoffman & Johnson 2016; as in He et al. 2019): E_x[-H(q(z|x))] - E_z[log q(z)], with z_i ~ q(z|x_i) and
    the aggregate posterior q(z_i) ~ (1/N) sum_j q(z_i|x_j) over the same N images.

    `q` has batch shape [N, D] (independent dimensions, an `entropy()`), `z` [N, D] one draw per image.
    The log-density matrix is built `chunk_size` draws at a time ([chunk_size, N, D] in memory). Bounded
    above by log N, so use enough images (1000 by default in training) for the value to mean something.
    """
    neg_entropy = -q.entropy().sum(dim=-1).double().mean()
    log_aggregate = torch.cat([torch.logsumexp(q.log_prob(chunk.unsqueeze(1)).sum(dim=-1), dim=1)
                               for chunk in z.split(chunk_size)]).double() - math.log(len(z))
    return float(neg_entropy - log_aggregate.mean())
