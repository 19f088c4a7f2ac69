"""Deferred pointwise maps: recorded on a lazy function on a group, replayed where it is sampled.

On a continuous group a feature map (finite width) or a pair kernel (infinite width) is held in a
compact form — Wigner-D blocks for SO(3), the inputs themselves straight after a lift — and a
pointwise map (a nonlinearity, a 1×1 ``Dense``) of it is not of that form. Such maps are therefore
*recorded*, and only the next integrating layer (a group convolution, a pool) *replays* them, on the
values of the base it samples at the points of its own quadrature (a grid, a point rule), one slice
of points at a time. This module holds that engine once, for any group:

* :class:`Chain` — a base plus the ordered maps recorded since (:meth:`Chain.then`), with
  :attr:`~Chain.nonlinear` (which sets the quadrature), :attr:`~Chain.deferred`, :meth:`~Chain.replay`
  (the maps applied to values of the base, in order) and :meth:`~Chain.sampled` (the base sampled by
  the group's sampler, then replayed);
* :class:`SumNode` — the base of a residual sum (``FanInSum``): parts, each a :class:`Chain` with its
  own base and maps, sampled on the same points, replayed and added; maps recorded after the sum
  (on the chain whose base the node is) act on the sum;
* :class:`Deferred` — the protocol of lazy finite-width signals that ``core.layers.map_values`` and
  ``FanInSum`` talk to, instead of duck typing; :class:`RecordedFn` is the map they record.

What a group supplies is the base and a *sampler*: a function ``sample(base) -> (xs, f)`` giving
scan inputs ``xs`` (leading axis: the slices of points) and ``f(x)``, the base's values on one slice.
The engine composes it with the replay, and recurses through sums. The values are opaque to the
engine: a channel-last array (finite width) or an ``(nngp, ntk)`` pair (kernels) — a chain's
:meth:`~Chain.step` says how one map acts on them (the kernel side passes the inputs' variances
recorded with each map). Nothing here depends on the group, JAX or the representation of the base.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, Callable, Optional, Tuple

__all__ = ["Deferred", "RecordedFn", "Chain", "SumNode", "sample_base"]

#: ``sample(base) -> (xs, f)``: scan inputs over the slices of the integrator's points and the base's
#: values on one slice, ``f(xs[i])``.
Sampler = Callable[[Any], Tuple[Any, Callable[[Any], Any]]]


class Deferred(abc.ABC):
    """A lazy finite-width signal: pointwise functions are recorded, not applied.

    ``core.layers.map_values`` (used by ``Dense`` and every nonlinearity) hands a function to
    :meth:`map_values` of a ``Deferred`` value and applies it at once to any other value (a plain
    channel-last array); ``FanInSum`` adds ``Deferred`` branches with :meth:`plus`. A group whose
    finite feature maps are functions on a continuous group (SO(3)'s ``SO3Signal``) implements this
    class; the recording and replay come with :class:`Chain`.
    """

    @abc.abstractmethod
    def map_values(self, fn: Callable, linear: bool = False) -> "Deferred":
        """The signal with ``fn`` (channel-last values -> values; ``linear``: a 1×1 layer) recorded."""

    @abc.abstractmethod
    def plus(self, other: "Deferred") -> "Deferred":
        """The (lazy) sum of two signals of the same kind and shape (``FanInSum``)."""


@dataclasses.dataclass(frozen=True)
class RecordedFn:
    """A function of channel-last values recorded by a finite-width signal (``linear``: a 1×1 layer)."""

    fn: Callable
    linear: bool = False

    @property
    def nonlinear(self) -> bool:
        return not self.linear

    def __call__(self, values):
        return self.fn(values)


class Chain:
    """A base plus the pointwise maps recorded since, in order (a mixin).

    Subclasses hold ``base`` and ``maps`` (a tuple; every map has a ``nonlinear`` flag) and implement
    :meth:`_recorded`; by default a map acts on values by being called, :meth:`step` may pass it
    data recorded with it (the kernel side: the inputs' variances before the map).
    """

    base: Any
    maps: tuple

    def _recorded(self, m, context: tuple) -> "Chain":
        """A copy with ``m`` (and its ``context``, from :meth:`then`) appended to the maps."""
        raise NotImplementedError

    def then(self, m, *context) -> "Chain":
        """The chain with ``m`` recorded after the others; ``context``: what :meth:`step` needs for it."""
        return self._recorded(m, context)

    def step(self, i: int, values):
        """Map ``i`` applied to ``values``."""
        return self.maps[i](values)

    def replay(self, values, stop: Optional[int] = None):
        """The maps ``[:stop]`` applied in order to values of the base (sampled on any points)."""
        for i in range(len(self.maps))[:stop]:
            values = self.step(i, values)
        return values

    @property
    def nonlinear(self) -> bool:
        """Whether a nonlinearity acts before the next integration (here or inside a sum's parts)."""
        return any(m.nonlinear for m in self.maps) or bool(getattr(self.base, "nonlinear", False))

    @property
    def deferred(self) -> bool:
        """Whether maps are pending (here or inside a sum's parts)."""
        return bool(self.maps) or bool(getattr(self.base, "deferred", False))

    def sampled(self, sample: Sampler):
        """``(xs, f)``: the base sampled by ``sample`` (through sums), then the maps replayed on its values."""
        xs, f = sample_base(self.base, sample)
        return xs, (lambda x: self.replay(f(x)))


class SumNode:
    """The base of a sum of chains (``FanInSum`` of residual branches), a mixin holding ``parts``.

    Sampled, each part's base is sampled on the same points and its own maps replayed, and the
    values are added (:meth:`add`); the maps of the chain whose base the node is then act on the
    sum. It counts as nonlinear (deferred) if any part is.
    """

    parts: tuple

    @property
    def nonlinear(self) -> bool:
        return any(p.nonlinear for p in self.parts)

    @property
    def deferred(self) -> bool:
        return any(p.deferred for p in self.parts)

    def add(self, values: list):
        """The sum of the parts' values, left to right."""
        out = values[0]
        for v in values[1:]:
            out = out + v
        return out

    def sampler(self, sample: Sampler):
        """``(xs, f)``: scan inputs, one per part (a tuple), and the sum of the parts' replayed values."""
        pieces = [p.sampled(sample) for p in self.parts]

        def f(x):
            return self.add([fn(xi) for (_, fn), xi in zip(pieces, x)])

        return tuple(xs for xs, _ in pieces), f


def sample_base(base, sample: Sampler):
    """``(xs, f)`` of a base: a :class:`SumNode` through its parts, any other base by ``sample``."""
    if isinstance(base, SumNode):
        return base.sampler(sample)
    return sample(base)
