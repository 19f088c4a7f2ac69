"""Pair kernels of planar GCNNs as |G| spatial blocks (DESIGN §1).

For a GCNN on ``G = R ⋉ Z²`` with full-support filters, the covariance of the
feature maps of inputs ``(x, x')`` at ``(r, t)`` and ``(r', t')`` depends on the
point-group elements only through ``d = r' r⁻¹``:
``K((r, t), (r', t')) = M_d(t, t')``. After rotating the second spatial slot,
``N_d(t, u) = M_d(t, d·u)`` obeys the *plain CNN* recursion, and it is exactly
the CNN kernel between ``x`` and the transformed image ``T_d x'``:

* lift:        ``N_d = W² A[x · (T_d x')ᵀ / C] + b²``,
* group conv:  ``N_d ← W² A[N_d] + b²`` (``A``: :func:`~eqntk.planar.spatial.window_mean`),
* pointwise:   value by value, with the per-pixel variances of ``x`` and ``T_d x'``,
* pool:        ``(1/|G|) Σ_d mean_{t,u} N_d(t, u)``.

So a pair costs ``|G|`` spatial blocks, never ``|G|²``; the plain CNN is the
trivial group (``|G| = 1``).

:class:`SpatialKernel` holds one family of such pairs (its batch shape is free);
:class:`SpatialPairs` is the state of a tile: the cross pairs ``(x1[i], x2[j])``,
and the self pairs ``(x1[i], x1[i])``, ``(x2[j], x2[j])`` whose pooled values are
the variances a nonlinearity after pooling needs (jit drops them when unused).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np
import jax
import jax.numpy as jnp

from ..core.kernel import Cost, InvariantKernel, pytree_dataclass
from .groups import PlanarGroup, pixel_permutation, transform_grid
from .spatial import window_mean, window_mean_diag

__all__ = ["SpatialKernel", "SpatialPairs", "lift_pairs", "kernel_cost"]


def _spatial(v):
    """Variance maps ``(..., H, W)`` → broadcastable to the first argument of ``(..., H, W, H, W)``."""
    return v[..., :, :, None, None]


@pytree_dataclass
class SpatialKernel:
    """``N_d(t, u)`` for a batch of pairs.

    ``nngp``, ``ntk``: ``(*B, |G|, H, W, H, W)`` (ntk may be ``None``).
    ``var_a``: ``(*Ba, H, W)``, per-pixel variances of the first inputs,
    ``var_b``: ``(*Bb, H, W)``, of the transformed second inputs ``T_d x'``;
    ``Ba``, ``Bb`` broadcast to ``(*B, |G|)``.
    """

    nngp: jax.Array
    ntk: Optional[jax.Array]
    var_a: jax.Array
    var_b: jax.Array

    def pointwise(self, m) -> "SpatialKernel":
        nngp, ntk = m.kernel(self.nngp, self.ntk, _spatial(self.var_a), self.var_b[..., None, None, :, :])
        return SpatialKernel(nngp, ntk, m.var(self.var_a), m.var(self.var_b))

    def conv(self, q: int, padding: str, w2: float, b2: float) -> "SpatialKernel":
        """``K' = w² A[K] + b²``, ``Θ' = K' + w² A[Θ]``."""
        nngp = w2 * window_mean(self.nngp, q, padding) + b2
        ntk = None if self.ntk is None else nngp + w2 * window_mean(self.ntk, q, padding)
        va = w2 * window_mean_diag(self.var_a, q, padding) + b2
        vb = w2 * window_mean_diag(self.var_b, q, padding) + b2
        return SpatialKernel(nngp, ntk, va, vb)

    def pooled(self):
        """Mean over the group axis and both spatial arguments: ``(*B,)`` arrays."""
        axes = tuple(range(-5, 0))
        return jnp.mean(self.nngp, axis=axes), (None if self.ntk is None else jnp.mean(self.ntk, axis=axes))


def kernel_cost(group: PlanarGroup, H: int, W: int, with_ntk: bool) -> Cost:
    """Working memory of a tile, in elements: ``|G| (HW)²`` per block, a few blocks live at once.

    Per pair: nngp (+ ntk), their padded copies and the fused temporaries of a
    window mean or nonlinearity (≈ 3 blocks per kernel). Per input: the self pairs
    (NNGP only), dropped by jit when the network does not need them.
    """
    block = group.order * float(H * W) ** 2
    return Cost(pair=(6.0 if with_ntk else 3.0) * block, row=3.0 * block)


@pytree_dataclass(static=("group", "with_ntk", "cost"))
class SpatialPairs:
    """State of a tile after a planar lift (or a plain ``Conv``).

    ``cross``: pairs ``(x1[i], x2[j])``, batch shape ``(t1, t2)``;
    ``self1``, ``self2``: pairs ``(x1[i], x1[i])`` and ``(x2[j], x2[j])``, batch ``(t,)``.
    """

    cross: SpatialKernel
    self1: SpatialKernel
    self2: SpatialKernel
    group: PlanarGroup
    with_ntk: bool
    cost: Cost = Cost()

    @property
    def grid(self) -> tuple[int, int]:
        return self.cross.nngp.shape[-4], self.cross.nngp.shape[-3]

    def _map(self, f, cost=None) -> "SpatialPairs":
        return dataclasses.replace(self, cross=f(self.cross), self1=f(self.self1), self2=f(self.self2),
                                   cost=self.cost if cost is None else cost)

    def pointwise(self, m) -> "SpatialPairs":
        return self._map(lambda k: k.pointwise(m))

    def conv(self, q: int, padding: str, w2: float, b2: float) -> "SpatialPairs":
        H, W = self.grid
        cost = self.cost.max(*kernel_cost(self.group, H, W, self.with_ntk))
        return self._map(lambda k: k.conv(q, padding, w2, b2), cost)

    def pool(self) -> InvariantKernel:
        """Mean over the group and space of both arguments."""
        nngp, ntk = self.cross.pooled()
        v1, _ = self.self1.pooled()
        v2, _ = self.self2.pooled()
        return InvariantKernel(nngp=nngp, ntk=ntk, var1=v1, var2=v2, cost=self.cost)

    def output(self):
        """Per-element kernels ``M_d(t, t') = Cov(h_x(e, t), h_x'(d, t'))``: ``(t1, t2, |G|, H, W, H, W)``.

        ``d`` indexes the group axis of the finite network's feature maps ``(N, |G|, H, W, C)``.
        For the plain CNN (trivial group) the group axis is dropped: ``(t1, t2, H, W, H, W)``.
        """
        return tuple(None if k is None else self._unrotate(k) for k in (self.cross.nngp, self.cross.ntk))

    def _unrotate(self, N):
        # M_d(t, t') = N_d(t, d⁻¹·t'): gather the second slot with T_{d⁻¹}
        g = self.group
        if g.order == 1:
            return N[:, :, 0]
        H, W = self.grid
        perm = pixel_permutation(g, H, W)[g.inverse]  # (|G|, HW)
        flat = N.reshape(N.shape[:-2] + (H * W,))
        idx = jnp.asarray(perm)[None, None, :, None, None, :]
        out = jnp.take_along_axis(flat, jnp.broadcast_to(idx, flat.shape), axis=-1)
        return out.reshape(N.shape)


def _input_kernels(xa, xb_g, outer: bool):
    """Layer-0 spatial kernels ``x(t) · (T_d x')(u) / C``: ``(t1, [t2,] |G|, H, W, H, W)``."""
    C = xa.shape[-1]
    eq = "ahwc,bgHWc->abghwHW" if outer else "ahwc,agHWc->aghwHW"
    return jnp.einsum(eq, xa, xb_g) / C


def lift_pairs(x1, x2, group: PlanarGroup, q: int, padding: str, w2: float, b2: float, with_ntk: bool,
               cost: Cost) -> SpatialPairs:
    """The lifting layer on a tile of images ``x1 (t1, H, W, C)``, ``x2 (t2, H, W, C)``.

    ``N_d = w² A[x · (T_d x')ᵀ / C] + b²``; its NTK is its NNGP (first layer).
    """
    H, W, C = x1.shape[1:]
    cost = cost.max(*kernel_cost(group, H, W, with_ntk))

    def pairs(xa, xb, outer, ntk):
        xb_g = transform_grid(xb, group)  # (t, |G|, H, W, C)
        k0 = _input_kernels(xa, xb_g, outer)
        va = jnp.sum(xa**2, axis=-1) / C  # (t, H, W)
        vb = jnp.sum(xb_g**2, axis=-1) / C  # (t, |G|, H, W)
        if outer:
            va, vb = va[:, None, None], vb[None]
        else:
            va = va[:, None]
        k = SpatialKernel(k0, None, va, vb).conv(q, padding, w2, b2)
        return dataclasses.replace(k, ntk=k.nngp if ntk else None)

    return SpatialPairs(pairs(x1, x2, True, with_ntk), pairs(x1, x1, False, False), pairs(x2, x2, False, False),
                        group, with_ntk, cost)
