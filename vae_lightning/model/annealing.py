"""KL-weight schedules: plain functions of training progress, w = schedule(t).

`t` is measured in the schedule's `unit`: optimizer steps (`"step"`) or epochs (`"epoch"`,
fractional: step / steps_per_epoch). Converting the global step into `t` is the KL-annealing
callback's job (`vae_lightning.callbacks.KLAnnealing`); the schedules themselves hold no state, so a resumed
run, whose global step is restored, lands on the same point of the same curve.
"""

from __future__ import annotations

import math

from vae_lightning.core.checks import COUNT, NON_NEGATIVE, POSITIVE, number, one_of

UNITS = ("step", "epoch")


class Schedule:
    """Base: `max_weight` is the weight reached at the end of warm-up (or of each cycle's ramp)."""

    def __init__(self, max_weight: float = 1.0, unit: str = "epoch") -> None:
        NON_NEGATIVE.check("max_weight", max_weight)
        one_of(UNITS).check("unit", unit)
        self.max_weight, self.unit = float(max_weight), unit

    def ramp(self, fraction: float) -> float:
        """Shape of the warm-up on [0, 1] -> [0, 1]; only called with 0 <= fraction <= 1."""
        return 1.0

    def __call__(self, t: float) -> float:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Constant(Schedule):
    """w = max_weight at every step: the plain ELBO when max_weight = 1 (beta-VAE otherwise)."""

    def __call__(self, t: float) -> float:
        return self.max_weight


class Warmup(Schedule):
    """w rises from 0 at t = 0 to max_weight at t = warmup, then stays there."""

    def __init__(self, warmup: float = 10.0, max_weight: float = 1.0, unit: str = "epoch") -> None:
        super().__init__(max_weight, unit)
        POSITIVE.check("warmup", warmup)
        self.warmup = float(warmup)

    def __call__(self, t: float) -> float:
        return self.max_weight * self.ramp(min(max(t / self.warmup, 0.0), 1.0))


class LinearWarmup(Warmup):
    """Linear ramp (Bowman et al. 2016), the study's schedule."""

    def ramp(self, fraction: float) -> float:
        return fraction


class CosineWarmup(Warmup):
    """Half-cosine ramp: slow start, slow finish."""

    def ramp(self, fraction: float) -> float:
        return 0.5 * (1.0 - math.cos(math.pi * fraction))


class SigmoidWarmup(Warmup):
    """Logistic ramp centred at warmup / 2; `steepness` is the slope in units of 1 / warmup.

    Rescaled so that it is exactly 0 at t = 0 and exactly max_weight at t = warmup.
    """

    def __init__(self, warmup: float = 10.0, steepness: float = 10.0, max_weight: float = 1.0,
                 unit: str = "epoch") -> None:
        super().__init__(warmup, max_weight, unit)
        POSITIVE.check("steepness", steepness)
        self.steepness = float(steepness)

    def ramp(self, fraction: float) -> float:
        def logistic(u: float) -> float:
            return 1.0 / (1.0 + math.exp(-self.steepness * (u - 0.5)))

        lo, hi = logistic(0.0), logistic(1.0)
        return (logistic(fraction) - lo) / (hi - lo)


class Cyclical(Schedule):
    """Cyclical annealing (Fu et al. 2019): `total` split into `n_cycles` equal cycles; in each,
    w ramps linearly from 0 to max_weight over the first `ratio` of the cycle, then holds.

    Past `total`, w stays at max_weight (training longer than planned does not restart a cycle).
    """

    def __init__(self, total: float = 20.0, n_cycles: int = 4, ratio: float = 0.5,
                 max_weight: float = 1.0, unit: str = "epoch") -> None:
        super().__init__(max_weight, unit)
        POSITIVE.check("total", total)
        COUNT.check("n_cycles", n_cycles)
        number(0, 1, above=True).check("ratio", ratio)
        self.total, self.n_cycles, self.ratio = float(total), n_cycles, float(ratio)

    def __call__(self, t: float) -> float:
        if t >= self.total:
            return self.max_weight
        period = self.total / self.n_cycles
        position = (max(t, 0.0) % period) / period
        return self.max_weight * min(position / self.ratio, 1.0)
