"""The group-agnostic deferred-pointwise-map engine (core.deferred), on a toy group.

The toy base is a polynomial on the circle, sampled at points a toy integrator chooses (in slices);
a chain's replay must equal the maps composed by hand, a sum node the sum of its parts' replays, and
``map_values``/``FanInSum`` must dispatch on the ``Deferred`` protocol, not on attribute names.
"""

import dataclasses

import jax
import numpy as np
import pytest

from eqntk.core.deferred import Chain, Deferred, RecordedFn, SumNode, sample_base
from eqntk.core.layers import map_values


@dataclasses.dataclass(frozen=True)
class Poly:
    """A toy base: ``p(θ) = Σ_k c_k cos(kθ)``."""

    coeffs: tuple

    def at(self, theta):
        return sum(c * np.cos(k * theta) for k, c in enumerate(self.coeffs))


def sampler(points):
    """The toy integrator's sampler: slices of ``points`` (scan inputs), the base's values on one."""
    slices = points.reshape(3, -1)  # leading axis: the slices, as a scan over them
    return lambda base: (slices, base.at)


@dataclasses.dataclass(frozen=True)
class ToyChain(Chain):
    base: object
    maps: tuple = ()

    def _recorded(self, m, context):
        assert context == ()
        return ToyChain(self.base, self.maps + (m,))


@dataclasses.dataclass(frozen=True)
class ScaledChain(ToyChain):
    """A chain whose maps take data recorded with them (as the kernel side's variances)."""

    scales: tuple = ()

    def _recorded(self, m, context):
        (s,) = context
        return ScaledChain(self.base, self.maps + (m,), self.scales + (s,))

    def step(self, i, values):
        return self.maps[i](self.scales[i] * values)


@dataclasses.dataclass(frozen=True)
class ToySum(SumNode):
    parts: tuple


def _scan(xs, f):
    """What ``jax.lax.scan`` does with them: ``f`` on each slice of the (nested) scan inputs."""
    n = jax.tree_util.tree_leaves(xs)[0].shape[0]
    return np.concatenate([f(jax.tree_util.tree_map(lambda a: a[i], xs)) for i in range(n)])


def _evaluate(chain, points):
    return _scan(*chain.sampled(sampler(points)))


points = np.linspace(0.0, 2 * np.pi, 18)
square = RecordedFn(np.square)
affine = RecordedFn(lambda v: 2.0 * v + 1.0, linear=True)


def test_chain_replay_equals_composing_the_maps_by_hand():
    p = Poly((0.5, -1.0, 0.25))
    c = ToyChain(p).then(affine).then(RecordedFn(np.tanh)).then(square)
    expected = np.square(np.tanh(2.0 * p.at(points) + 1.0))
    np.testing.assert_array_equal(_evaluate(c, points), expected)
    np.testing.assert_array_equal(c.replay(p.at(points)), expected)
    np.testing.assert_array_equal(c.replay(p.at(points), stop=-1), np.tanh(2.0 * p.at(points) + 1.0))
    assert c.deferred and c.nonlinear
    lin = ToyChain(p).then(affine)
    assert lin.deferred and not lin.nonlinear
    assert not ToyChain(p).deferred and not ToyChain(p).nonlinear
    np.testing.assert_array_equal(_evaluate(ToyChain(p), points), p.at(points))


def test_recorded_context_reaches_the_step():
    p = Poly((1.0, 0.5))
    c = ScaledChain(p).then(square, 3.0).then(affine, 0.5)
    np.testing.assert_array_equal(_evaluate(c, points), 2.0 * (0.5 * np.square(3.0 * p.at(points))) + 1.0)


def test_sum_node_equals_the_sum_of_its_parts_replays():
    a = ToyChain(Poly((0.2, 1.0))).then(square)
    b = ToyChain(Poly((0.0, 0.0, -0.7))).then(affine)
    s = ToyChain(ToySum((a, b))).then(RecordedFn(np.sin))
    expected = np.sin(np.square(Poly((0.2, 1.0)).at(points)) + (2.0 * Poly((0.0, 0.0, -0.7)).at(points) + 1.0))
    np.testing.assert_allclose(_evaluate(s, points), expected, rtol=0, atol=1e-15)
    assert s.nonlinear and s.deferred
    # a sum of linear parts is neither nonlinear nor, without maps, deferred
    lin = ToyChain(ToySum((ToyChain(Poly((1.0,))), ToyChain(Poly((0.0, 1.0))))))
    assert not lin.nonlinear and not lin.deferred
    assert ToyChain(ToySum((b, ToyChain(Poly((1.0,)))))).deferred
    # nested: a sum inside a sum, one scan input per part
    nested = ToyChain(ToySum((s, a)))
    xs, f = sample_base(nested.base, sampler(points))
    assert len(xs) == 2 and len(xs[0]) == 2  # one scan input per part, recursively
    np.testing.assert_allclose(_evaluate(nested, points), expected + np.square(Poly((0.2, 1.0)).at(points)),
                               rtol=0, atol=1e-15)


class Lazy(Deferred):
    def __init__(self, fns=()):
        self.fns = fns

    def map_values(self, fn, linear=False):
        return Lazy(self.fns + ((fn, linear),))

    def plus(self, other):
        return ("sum", self, other)


class HasMapValues:
    """Not a ``Deferred``: an attribute of that name is no longer enough."""

    def map_values(self, fn, linear=False):
        raise AssertionError("duck typing")


def test_map_values_dispatches_on_the_protocol():
    y = map_values(Lazy(), np.tanh, linear=False)
    assert isinstance(y, Lazy) and y.fns == ((np.tanh, False),)
    np.testing.assert_array_equal(map_values(np.arange(3.0), np.square), np.arange(3.0) ** 2)
    with pytest.raises(TypeError):
        map_values(HasMapValues(), np.square)  # treated as a plain value: np.square refuses it
    with pytest.raises(TypeError):
        Deferred()  # abstract
