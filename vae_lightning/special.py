"""The Beta distribution's CDF and quantile function, which torch does not provide.

Quantiles are what lay a latent grid "over the prior's mass" (the manifold) and what turn one
fixed draw of uniforms into fixed noise for any sampler (inverse-transform sampling), so a Beta
sampler needs them like a Gaussian one. scipy would have them, but it is not a dependency for two
functions: the regularized incomplete beta function I_x(a, b) is evaluated by its continued
fraction (Numerical Recipes, 3rd ed., section 6.4, modified Lentz), and inverted by bisection,
both in float64.
"""

from __future__ import annotations

import torch
from torch import Tensor

_TINY = 1e-300
_MAX_TERMS = 10_000
_BISECTIONS = 60  # halves [0, 1] down to 2^-60, below float64 resolution near 1


def _continued_fraction(a: Tensor, b: Tensor, x: Tensor) -> Tensor:
    """The continued fraction of I_x(a, b); converges fast for x < (a + 1) / (a + b + 2)."""
    qab, qap, qam = a + b, a + 1, a - 1

    def guard(t: Tensor) -> Tensor:
        return torch.where(t.abs() < _TINY, torch.full_like(t, _TINY), t)

    c = torch.ones_like(x)
    d = 1 / guard(1 - qab * x / qap)
    h = d
    for m in range(1, _MAX_TERMS + 1):
        m2 = 2 * m
        for numerator in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                          -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1 / guard(1 + numerator * d)
            c = guard(1 + numerator / c)
            step = d * c
            h = h * step
        if bool(((step - 1).abs() < 1e-15).all()):
            return h
    raise RuntimeError(f"incomplete beta continued fraction did not converge for a={a}, b={b}")


def beta_cdf(x: Tensor, a: Tensor | float, b: Tensor | float) -> Tensor:
    """I_x(a, b) = P(Z <= x) for Z ~ Beta(a, b), elementwise (broadcast), in float64."""
    x, a, b = torch.broadcast_tensors(*(torch.as_tensor(t, dtype=torch.float64) for t in (x, a, b)))
    inside = x.clamp(_TINY, 1 - 1e-16)
    log_front = (a * torch.log(inside) + b * torch.log1p(-inside)
                 - (torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)))
    front = torch.exp(log_front)
    # The fraction converges for x below the mean-ish point; above it use I_x(a, b) = 1 - I_{1-x}(b, a).
    direct = x < (a + 1) / (a + b + 2)
    aa, bb, xx = torch.where(direct, a, b), torch.where(direct, b, a), torch.where(direct, inside, 1 - inside)
    tail = front * _continued_fraction(aa, bb, xx) / aa
    cdf = torch.where(direct, tail, 1 - tail)
    return torch.where(x <= 0, torch.zeros_like(cdf), torch.where(x >= 1, torch.ones_like(cdf), cdf))


def beta_icdf(u: Tensor, a: Tensor | float, b: Tensor | float) -> Tensor:
    """The quantile function of Beta(a, b): the x in [0, 1] with I_x(a, b) = u, elementwise.

    Bisection: the CDF is monotone, so it cannot diverge whatever a, b > 0; 60 halvings make the
    interval narrower than float64 resolution. Returned in u's dtype (float64 for other inputs).
    """
    u = torch.as_tensor(u)
    target, a, b = torch.broadcast_tensors(*(torch.as_tensor(t, dtype=torch.float64, device=u.device)
                                             for t in (u, a, b)))
    lo, hi = torch.zeros_like(target), torch.ones_like(target)
    for _ in range(_BISECTIONS):
        mid = (lo + hi) / 2
        below = beta_cdf(mid, a, b) < target
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    x = (lo + hi) / 2
    return x.to(u.dtype) if u.is_floating_point() else x
