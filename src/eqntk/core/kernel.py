"""Kernel states passed between layers inside ``kernel_fn``.

A network's ``kernel_fn`` is a chain of per-layer *ops*, each a pure function
``state -> state`` evaluated for one tile of input pairs (``x1[i:i+t1]`` ×
``x2[j:j+t2]``). States are pytrees; every state type implements

* ``pointwise(m)`` — apply a :class:`~eqntk.core.pointwise.PointwiseMap`
  (Dense after pooling, or a nonlinearity),
* ``output()`` — the ``(nngp, ntk)`` arrays per pair, shape ``(t1, t2, ...)``,
* a static ``cost`` used to size tiles under a memory budget,
* ``add(other)`` — the state of the sum of two branches' features (``FanInSum``, see
  :mod:`eqntk.core.branching`): kernels and variances add, under the branches' independence;
  it raises ``ValueError`` for states that cannot be added (other kinds, other grids) and
  ``NotImplementedError`` where the sum is not implemented,
* optionally ``held()`` — the :class:`Cost` of the arrays the state itself holds (what a branch
  keeps alive while another one is computed); :func:`held_cost` falls back to ``cost``.

Group-specific states live with their group (:mod:`eqntk.so3`,
:mod:`eqntk.planar`); this module holds the raw input state and the invariant
(one number per pair) state that every pooled network ends in.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

__all__ = ["Cost", "Inputs", "InvariantKernel", "pytree_dataclass", "held_cost", "cannot_add"]


class Cost(NamedTuple):
    """Working-memory estimate of a tile, in array elements.

    ``pair`` elements per input pair plus ``row`` elements per input (row or
    column of the tile). The driver picks tile sizes so that
    ``itemsize · (pair · t1 · t2 + row · (t1 + t2))`` fits the memory budget.
    """

    pair: float = 8.0
    row: float = 0.0

    def max(self, pair: float = 0.0, row: float = 0.0) -> "Cost":
        return Cost(max(self.pair, float(pair)), max(self.row, float(row)))

    def plus(self, other: "Cost") -> "Cost":
        """Both working sets alive at once."""
        return Cost(self.pair + float(other.pair), self.row + float(other.row))


def held_cost(state) -> Cost:
    """What ``state`` keeps in memory while other work runs: its ``held()``, else (conservatively) its ``cost``."""
    held = getattr(state, "held", None)
    return held() if held is not None else state.cost


def cannot_add(a, b, why: str = "") -> ValueError:
    """The error for two branch states that ``FanInSum`` cannot add."""
    return ValueError(
        f"FanInSum cannot add a {type(a).__name__} to a {type(b).__name__}{': ' + why if why else ''}. The "
        "branches must end in features of the same kind and shape (same group, same spatial grid)")


def pytree_dataclass(cls=None, *, static=()):
    """Frozen dataclass registered as a pytree; fields named in ``static`` are aux data."""

    def wrap(cls):
        cls = dataclasses.dataclass(frozen=True)(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        data = [n for n in names if n not in static]
        meta = [n for n in names if n in static]
        jax.tree_util.register_dataclass(cls, data_fields=data, meta_fields=meta)
        return cls

    return wrap if cls is None else wrap(cls)


@pytree_dataclass(static=("with_ntk", "cost"))
class Inputs:
    """Raw inputs of one tile: ``x1`` of shape ``(t1, ...)``, ``x2`` of shape ``(t2, ...)``.

    The first layer of a network turns this into its own state. Flat inputs
    ``(t, C)`` can go straight into ``Dense`` or a nonlinearity: they are
    treated as features with ``K = x1 x2ᵀ / C`` (neural-tangents' convention).
    """

    x1: jax.Array
    x2: jax.Array
    with_ntk: bool = True
    cost: Cost = Cost()

    def to_invariant(self, where: str) -> "InvariantKernel":
        if self.x1.ndim != 2:
            raise ValueError(
                f"{where} cannot act on raw inputs of shape {tuple(self.x1.shape[1:])} per sample: "
                "start the network with a lifting layer (S2ConvSO3, Z2ConvP4, Conv, ...) "
                "or pass flat (N, C) feature vectors"
            )
        C = self.x1.shape[1]
        nngp = self.x1 @ self.x2.T / C
        return InvariantKernel(
            nngp=nngp,
            ntk=jnp.zeros_like(nngp) if self.with_ntk else None,
            var1=jnp.sum(self.x1**2, axis=1) / C,
            var2=jnp.sum(self.x2**2, axis=1) / C,
            cost=self.cost,
        )

    def pointwise(self, m):
        return self.to_invariant(type(m).__name__.removesuffix("Map")).pointwise(m)

    def add(self, other) -> "InvariantKernel":
        """Raw flat inputs plus another branch: as features ``K = x1 x2ᵀ / C`` (zero NTK)."""
        return self.to_invariant("FanInSum").add(other)

    def held(self) -> Cost:
        return Cost(0.0, float(math.prod(self.x1.shape[1:])))

    def output(self):
        raise ValueError("the network has no layers")


@pytree_dataclass(static=("cost", "flat"))
class InvariantKernel:
    """One number per pair: ``nngp``, ``ntk`` of shape ``(t1, t2)``; variances ``var1 (t1,)``, ``var2 (t2,)``.

    ``flat``: the features are flattened spatial maps (``Flatten``), whose entries have different
    variances from pixel to pixel: ``var1``/``var2`` are their means, enough for a linear layer but not
    for a nonlinearity, which is refused until a ``Dense`` layer has mixed them.
    """

    nngp: jax.Array
    ntk: Optional[jax.Array]
    var1: jax.Array
    var2: jax.Array
    cost: Cost = Cost()
    flat: bool = False

    def pointwise(self, m):
        if self.flat and getattr(m, "per_feature", True):
            raise ValueError(
                f"{type(m).__name__.removesuffix('Map')} after Flatten: the flattened features have a variance "
                "per pixel, and a nonlinearity's kernel needs each feature's own; put a Dense layer after "
                "Flatten (its outputs mix all pixels)")
        nngp, ntk = m.kernel(self.nngp, self.ntk, self.var1[:, None], self.var2[None, :])
        # a Dense layer (linear: ``nonlinear`` False) mixes the pixels; LayerNorm's scaling does not
        return dataclasses.replace(self, nngp=nngp, ntk=ntk, var1=m.var(self.var1), var2=m.var(self.var2),
                                   flat=self.flat and getattr(m, "nonlinear", True))

    def add(self, other) -> "InvariantKernel":
        """The sum of two independent branches: ``K = K_a + K_b``, ``Θ = Θ_a + Θ_b``, variances add.

        ``other``: an :class:`InvariantKernel` of the same tile, or raw flat :class:`Inputs`.
        """
        if isinstance(other, Inputs):
            other = other.to_invariant("FanInSum")
        if not isinstance(other, InvariantKernel):
            raise cannot_add(self, other, "one branch is pooled (one number per pair), the other is not")
        ntk = None if (self.ntk is None or other.ntk is None) else self.ntk + other.ntk
        return InvariantKernel(nngp=self.nngp + other.nngp, ntk=ntk, var1=self.var1 + other.var1,
                               var2=self.var2 + other.var2, cost=self.cost.max(*other.cost),
                               flat=self.flat or other.flat)

    def held(self) -> Cost:
        return Cost(1.0 if self.ntk is None else 2.0, 1.0)

    def output(self):
        return self.nngp, self.ntk
