import math

import pytest

from vae_lightning.core.errors import ParameterError
from vae_lightning.model import Constant, CosineWarmup, Cyclical, LinearWarmup, SigmoidWarmup


def test_constant():
    assert [Constant(max_weight=0.5)(t) for t in (0, 10, 1e6)] == [0.5, 0.5, 0.5]


def test_linear_warmup():
    s = LinearWarmup(warmup=10, max_weight=1.0)
    assert [s(t) for t in (0, 2.5, 5, 10, 50)] == [0.0, 0.25, 0.5, 1.0, 1.0]


def test_cosine_warmup():
    s = CosineWarmup(warmup=10, max_weight=2.0)
    assert s(0) == 0.0 and s(10) == 2.0 and s(20) == 2.0
    assert s(5) == pytest.approx(1.0)
    assert s(2.5) == pytest.approx(2.0 * 0.5 * (1 - math.cos(math.pi / 4)))


def test_sigmoid_warmup():
    s = SigmoidWarmup(warmup=10, steepness=10, max_weight=1.0)
    assert s(0) == pytest.approx(0.0, abs=1e-12) and s(10) == pytest.approx(1.0)
    assert s(5) == pytest.approx(0.5)
    assert s(1) < 0.05 and s(9) > 0.95
    values = [s(t / 10) for t in range(101)]
    assert values == sorted(values)


def test_cyclical_resets_each_cycle():
    s = Cyclical(total=40, n_cycles=4, ratio=0.5, max_weight=1.0)  # cycles of 10, ramp over 5
    assert [s(t) for t in (0, 2.5, 5, 9.9)] == [0.0, 0.5, 1.0, 1.0]
    for start in (10, 20, 30):  # each cycle restarts at 0
        assert s(start) == 0.0 and s(start + 2.5) == 0.5 and s(start + 7) == 1.0
    assert s(40) == 1.0 and s(100) == 1.0


@pytest.mark.parametrize(
    "build, key",
    [
        (lambda: LinearWarmup(warmup=0), "warmup=0"),
        (lambda: CosineWarmup(warmup=-5), "warmup=-5"),
        (lambda: SigmoidWarmup(steepness=0), "steepness=0"),
        (lambda: Cyclical(ratio=0), "ratio=0"),
        (lambda: Cyclical(ratio=1.5), "ratio=1.5"),
        (lambda: Cyclical(n_cycles=0), "n_cycles=0"),
        (lambda: Constant(max_weight=-1), "max_weight=-1"),
        (lambda: Constant(unit="hours"), "unit='hours'"),
    ],
)
def test_invalid_parameters(build, key):
    with pytest.raises(ParameterError, match=key):
        build()
