"""The kernel state of the example group ``C_2 = {e, s}`` (``s``: reflection of a 1-D signal).

Feature maps are functions on ``C_2``: ``h_x(g) ∈ R^C``, ``g ∈ {0, 1}`` (``0 = e``, ``1 = s``), finite
layout ``(N, 2, C)``. For a tile of pairs the state holds the full ``2 × 2`` covariance blocks

* ``cross``: ``K[i, j, g, h] = Cov(h_{x1[i]}(g), h_{x2[j]}(h))``, shape ``(t1, t2, 2, 2)`` (and its NTK),
* ``self1``, ``self2``: the same for the pairs ``(x1[i], x1[i])``, ``(x2[j], x2[j])``: ``(t, 2, 2)``,
  whose diagonals are the variances a nonlinearity needs and whose means are the pooled variances.

(A real group would store one copy of the group, ``K[g, h]`` depending on ``g⁻¹h`` only, as the planar
states do; two elements do not need it.)
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp

from eqntk.core.kernel import Cost, InvariantKernel, cannot_add, pytree_dataclass


def _diag(block):
    """``(..., 2, 2)`` → ``(..., 2)``: the variances ``Var h(g)``."""
    return jnp.diagonal(block, axis1=-2, axis2=-1)


@pytree_dataclass(static=("with_ntk", "cost"))
class C2Pairs:
    """State of a tile after :func:`~example_group.layers.C2Lift`: functions on ``C_2`` per input."""

    nngp: jax.Array  # (t1, t2, 2, 2)
    ntk: Optional[jax.Array]  # (t1, t2, 2, 2) or None
    self1: jax.Array  # (t1, 2, 2)
    self2: jax.Array  # (t2, 2, 2)
    with_ntk: bool
    cost: Cost = Cost()

    # --- the KernelState protocol ---------------------------------------------------------------

    def pointwise(self, m) -> "C2Pairs":
        """Value by value: each entry ``K[g, h]`` with the variances ``Var h_x(g)``, ``Var h_x'(h)``."""
        v1, v2 = _diag(self.self1), _diag(self.self2)
        nngp, ntk = m.kernel(self.nngp, self.ntk, v1[:, None, :, None], v2[None, :, None, :])
        s1, _ = m.kernel(self.self1, None, v1[:, :, None], v1[:, None, :])
        s2, _ = m.kernel(self.self2, None, v2[:, :, None], v2[:, None, :])
        return dataclasses.replace(self, nngp=nngp, ntk=ntk, self1=s1, self2=s2)

    def add(self, other) -> "C2Pairs":
        """Two independent branches' functions on ``C_2`` added: every block adds."""
        if not isinstance(other, C2Pairs):
            raise cannot_add(self, other, "one branch holds functions on C_2, the other does not")
        ntk = None if (self.ntk is None or other.ntk is None) else self.ntk + other.ntk
        return C2Pairs(self.nngp + other.nngp, ntk, self.self1 + other.self1, self.self2 + other.self2,
                       self.with_ntk, self.cost.max(*other.cost))

    def output(self):
        """``(nngp, ntk)`` of shape ``(t1, t2, 2, 2)``: ``[..., g, h] = Cov(h_x(g), h_x'(h))``."""
        return self.nngp, self.ntk

    def held(self) -> Cost:
        return Cost(pair=4.0 * (2 if self.with_ntk else 1), row=4.0)

    @property
    def kind(self) -> str:
        return "functions on C_2"

    # --- the group's own operations (called by its layers only) --------------------------------

    def conv(self, w2: float, b2: float) -> "C2Pairs":
        """Group convolution ``h'(g) = W/√(2C) Σ_k h(gk) w_k + b``:
        ``K'[g, h] = w²/2 (K[g, h] + K[gs, hs]) + b²``, ``Θ'[g, h] = K'[g, h] + w²/2 (Θ[g, h] + Θ[gs, hs])``."""

        def c(k):
            return w2 / 2 * (k + k[..., ::-1, ::-1])

        nngp = c(self.nngp) + b2
        ntk = None if self.ntk is None else nngp + c(self.ntk)
        return dataclasses.replace(self, nngp=nngp, ntk=ntk, self1=c(self.self1) + b2, self2=c(self.self2) + b2)

    def pool(self) -> InvariantKernel:
        """Mean over the group, of both arguments: one number per pair."""
        return InvariantKernel(nngp=jnp.mean(self.nngp, axis=(-2, -1)),
                               ntk=None if self.ntk is None else jnp.mean(self.ntk, axis=(-2, -1)),
                               var1=jnp.mean(self.self1, axis=(-2, -1)), var2=jnp.mean(self.self2, axis=(-2, -1)),
                               cost=self.cost)


def lift_pairs(x1, x2, w2: float, b2: float, with_ntk: bool, cost: Cost) -> C2Pairs:
    """The lift on a tile of signals ``x1 (t1, n, C)``, ``x2 (t2, n, C)``:
    ``K[g, h] = w²/(nC) ⟨g·x, h·x'⟩ + b²``, ``Θ = K`` (first layer)."""
    scale = w2 / (x1.shape[1] * x1.shape[2])

    def orbit(x):  # (t, 2, n, C): x and its reflection
        return jnp.stack([x, x[:, ::-1]], axis=1)

    o1, o2 = orbit(x1), orbit(x2)
    nngp = scale * jnp.einsum("agic,bhic->abgh", o1, o2) + b2
    s1 = scale * jnp.einsum("agic,ahic->agh", o1, o1) + b2
    s2 = scale * jnp.einsum("agic,ahic->agh", o2, o2) + b2
    # per pair: NNGP, NTK and a nonlinearity's temporaries, 2 × 2 each; per input: its orbit and self block
    cost = cost.max(pair=16.0, row=2.0 * x1.shape[1] * x1.shape[2] + 8.0)
    return C2Pairs(nngp, nngp if with_ntk else None, s1, s2, with_ntk, cost)
