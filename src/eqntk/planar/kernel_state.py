"""Pair kernels of planar GCNNs as |G| spatial blocks (docs/mathematics.md, "One copy of the group is enough").

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
trivial group (``|G| = 1``). The lift's window mean is the Gram matrix of the images'
``q × q`` patches (one matrix product); every layer's kernel update runs as an XLA
computation of its own (:func:`eqntk.core.fusion.apart`), so that a nonlinearity is
evaluated once per value rather than once per window tap of the next convolution.

:class:`SpatialKernel` holds one family of such pairs (its batch shape is free);
:class:`SpatialPairs` is the state of a tile: the cross pairs ``(x1[i], x2[j])``,
and the self pairs ``(x1[i], x1[i])``, ``(x2[j], x2[j])`` whose pooled values are
the variances a nonlinearity after pooling needs (jit drops them when unused).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Optional

import numpy as np
import jax
import jax.numpy as jnp

from ..core.fusion import apart
from ..core.kernel import Cost, InvariantKernel, cannot_add, pytree_dataclass
from .groups import PlanarGroup, pixel_permutation, transform_grid
from .spatial import patches, pool_pairs, window_mean, window_mean_diag

__all__ = ["SpatialKernel", "SpatialPairs", "lift_pairs", "kernel_cost", "map_temporaries"]


def _spatial(v):
    """Variance maps ``(..., H, W)`` → broadcastable to the first argument of ``(..., H, W, H, W)``."""
    return v[..., :, :, None, None]


def _conv(nngp, ntk, q: int, padding: str, w2: float, b2: float):
    out = w2 * window_mean(nngp, q, padding) + b2
    return out, (None if ntk is None else out + w2 * window_mean(ntk, q, padding))


@pytree_dataclass
class SpatialKernel:
    """``N_d(t, u)`` for a batch of pairs.

    ``nngp``, ``ntk``: ``(*B, |G|, H, W, H, W)`` (ntk may be ``None``).
    ``var1``: ``(*Ba, H, W)``, per-pixel variances of the first inputs,
    ``var2``: ``(*Bb, H, W)``, of the transformed second inputs ``T_d x'``;
    ``Ba``, ``Bb`` broadcast to ``(*B, |G|)``.
    """

    nngp: jax.Array
    ntk: Optional[jax.Array]
    var1: jax.Array
    var2: jax.Array

    def pointwise(self, m) -> "SpatialKernel":
        nngp, ntk = apart(m.kernel, self.nngp, self.ntk, _spatial(self.var1), self.var2[..., None, None, :, :])
        return SpatialKernel(nngp, ntk, m.var(self.var1), m.var(self.var2))

    def conv(self, q: int, padding: str, w2: float, b2: float) -> "SpatialKernel":
        """``K' = w² A[K] + b²``, ``Θ' = K' + w² A[Θ]``."""
        nngp, ntk = apart(functools.partial(_conv, q=q, padding=padding, w2=w2, b2=b2), self.nngp, self.ntk)
        va = w2 * window_mean_diag(self.var1, q, padding) + b2
        vb = w2 * window_mean_diag(self.var2, q, padding) + b2
        return SpatialKernel(nngp, ntk, va, vb)

    def add(self, other: "SpatialKernel") -> "SpatialKernel":
        """Sum of two independent families on the same grid: kernels and per-pixel variances add."""
        ntk = None if (self.ntk is None or other.ntk is None) else self.ntk + other.ntk
        return SpatialKernel(self.nngp + other.nngp, ntk, self.var1 + other.var1, self.var2 + other.var2)

    def pooled(self):
        """Mean over the group axis and both spatial arguments: ``(*B,)`` arrays."""
        axes = tuple(range(-5, 0))
        return jnp.mean(self.nngp, axis=axes), (None if self.ntk is None else jnp.mean(self.ntk, axis=axes))


#: extra full blocks live per pair while a nonlinearity's kernel is evaluated, by map type: the closed
#: forms need none beyond the base count below; Gauss–Hermite maps (ElementwiseMap) and unknown maps 2.
_MAP_TEMPORARIES = {"ReluMap": 0.0, "ABReluMap": 0.0, "AffineMap": 0.0, "ErfMap": 0.0, "SinMap": 0.0,
                    "NormaliseMap": 0.0}


def map_temporaries(m) -> float:
    return _MAP_TEMPORARIES.get(type(m).__name__, 2.0)


def kernel_cost(group: PlanarGroup, H: int, W: int, with_ntk: bool, convs: int = 0, maps: int = 0,
                temporaries: float = 0.0) -> Cost:
    """Working memory of a tile at one stage of the network, in elements (the one cost model of planar kernels).

    A *block* is one spatial kernel of one pair, ``B = |G| (HW)²`` elements at the stage's input grid
    ``H × W``. Every layer runs as a computation of its own (:func:`eqntk.core.fusion.apart`), so the
    peak is that of one layer, whatever the depth: its input kernels, its output kernels and its own
    temporaries. Counted from XLA's buffer assignment of compiled tile programs
    (``memory_analysis()``; ``tests/test_planar_cost.py``), per pair:

    * NNGP only: 3 blocks;
    * with NTK: 6 blocks up to the first convolution after a nonlinearity (NNGP and NTK share one
      array until then), 7 from there on;
    * a nonlinearity's own temporaries (``temporaries``, full blocks; 0 for the closed forms, 2 for
      Gauss–Hermite maps), half of them with NTK before the first convolution after a map;
    * a quarter block for the small buffers (variance maps, patches, the tile's inputs).

    Per input (``row``): the self pairs ``(x1[i], x1[i])``, NNGP only, the same count as the NNGP
    stage; jit drops them when no nonlinearity follows the pooling, so this overestimates small tiles
    of such networks (for large tiles the ``t1 t2`` term dominates).

    ``convs``/``maps``: convolutions/pointwise maps applied after the lift up to this stage.
    """
    block = group.order * float(H * W) ** 2
    mixed = convs >= 1 and maps >= 1  # a convolution after a nonlinearity: NNGP and NTK are separate arrays
    nngp = (3.25 + temporaries) * block
    if not with_ntk:
        pair = nngp
    elif mixed:
        pair = 7.25 * block
    else:
        pair = (6.25 + temporaries / 2) * block
    return Cost(pair=pair, row=nngp)


@pytree_dataclass(static=("group", "with_ntk", "cost", "convs", "maps", "temporaries"))
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
    # where the network is, for the cost model (kernel_cost): layers after the lift, the largest
    # nonlinearity temporaries so far
    convs: int = 0
    maps: int = 0
    temporaries: float = 0.0

    @property
    def grid(self) -> tuple[int, int]:
        return self.cross.nngp.shape[-4], self.cross.nngp.shape[-3]

    @property
    def kind(self) -> str:
        H, W = self.grid
        what = "plain CNN feature maps" if self.group.order == 1 else f"functions on {self.group.name}"
        return f"{what} of size {H}×{W}"

    def _map(self, f, **stage) -> "SpatialPairs":
        """Apply ``f`` to the three pair families; ``stage``: the new layer counts for the cost model.

        The stage's cost is evaluated at the input grid of the layer and maxed into ``cost``.
        """
        new = dataclasses.replace(self, cross=f(self.cross), self1=f(self.self1), self2=f(self.self2), **stage)
        H, W = self.grid
        c = kernel_cost(self.group, H, W, self.with_ntk, new.convs, new.maps, new.temporaries)
        return dataclasses.replace(new, cost=self.cost.max(*c))

    def pointwise(self, m) -> "SpatialPairs":
        return self._map(lambda k: k.pointwise(m), maps=self.maps + 1,
                         temporaries=max(self.temporaries, map_temporaries(m)))

    def conv(self, q: int, padding: str, w2: float, b2: float) -> "SpatialPairs":
        return self._map(lambda k: k.conv(q, padding, w2, b2), convs=self.convs + 1)

    def add(self, other) -> "SpatialPairs":
        """The features of two independent branches added (``FanInSum``): ``N_d = N_d^a + N_d^b`` family by family.

        Both branches must hold functions on the same group and the same ``H × W`` grid (a ``VALID``
        convolution in one branch only shrinks it: pad ``SAME`` or ``CIRCULAR`` there instead).
        The sum's NNGP and NTK are separate arrays: the cost model counts it as after a convolution
        that follows a nonlinearity.
        """
        if not isinstance(other, SpatialPairs):
            raise cannot_add(self, other, "one branch holds spatial feature maps, the other does not")
        if other.group != self.group:
            raise cannot_add(self, other, f"functions on {self.group.name} and on {other.group.name}")
        if other.grid != self.grid:
            raise cannot_add(self, other, f"feature maps of size {self.grid[0]}×{self.grid[1]} and "
                                          f"{other.grid[0]}×{other.grid[1]}")
        new = SpatialPairs(self.cross.add(other.cross), self.self1.add(other.self1), self.self2.add(other.self2),
                           self.group, self.with_ntk, self.cost.max(*other.cost),
                           convs=max(self.convs, other.convs, 1), maps=max(self.maps, other.maps, 1),
                           temporaries=max(self.temporaries, other.temporaries))
        H, W = self.grid
        return dataclasses.replace(new, cost=new.cost.max(*kernel_cost(self.group, H, W, self.with_ntk, 1, 1)))

    def avg_pool(self, ph: np.ndarray, pw: np.ndarray) -> "SpatialPairs":
        """Average pooling of the feature maps by ``P = ph ⊗ pw`` (:func:`~eqntk.planar.spatial.pool_matrix`).

        ``M'_d = P M_d Pᵀ`` in both spatial arguments. For ``N_d(t, u) = M_d(t, d·u)`` the same
        holds when ``P`` commutes with the point group (``P(d·u, d·c) = P(u, c)``; the layer checks
        it), so every ``N_d`` is pooled alike. The pooled variance maps are not functions of the old
        ones: they are the diagonals of the pooled self pairs at the identity element, ``v'(t) =
        N'_e(t, t)`` for ``(x, x)``; a group feature's variance does not depend on the group element,
        so the transformed second inputs have ``T_d v'``.
        """

        def pooled(k: SpatialKernel) -> SpatialKernel:
            ntk = None if k.ntk is None else pool_pairs(k.ntk, ph, pw)
            return SpatialKernel(pool_pairs(k.nngp, ph, pw), ntk, k.var1, k.var2)

        new = self._map(pooled, convs=self.convs + 1)
        g = self.group

        def diag(k):  # (t, |G|, H, W, H, W) -> the variance map of the identity element (t, H, W)
            return jnp.einsum("tijij->tij", k.nngp[:, 0])

        v1, v2 = diag(new.self1), diag(new.self2)
        t1, t2 = transform_grid(v1, g, axes=(-2, -1)), transform_grid(v2, g, axes=(-2, -1))
        cross = dataclasses.replace(new.cross, var1=v1[:, None, None], var2=t2[None])
        self1 = dataclasses.replace(new.self1, var1=v1[:, None], var2=t1)
        self2 = dataclasses.replace(new.self2, var1=v2[:, None], var2=t2)
        return dataclasses.replace(new, cross=cross, self1=self1, self2=self2)

    def flatten(self) -> InvariantKernel:
        """Features ``(|G|, H, W, C)`` flattened, for a ``Dense`` readout: one number per pair.

        ``K = mean_t Cov(h_x(g, t), h_x'(g, t))``, the mean over pixels of the diagonal (the same
        pixel and group element in both inputs). With white filters the same-element covariance does
        not depend on ``g`` (rotating a filter leaves its distribution unchanged) and is ``N_e(t, t)``,
        so this is the mean of the identity element's diagonal; likewise the NTK. For ``|G| > 1`` the
        result is *not* invariant under the group (a CNN kernel with a group-structured filter bank).
        """

        def diag_mean(K):
            return None if K is None else jnp.mean(jnp.einsum("abijij->abij", K[:, :, 0]), axis=(-2, -1))

        v1 = jnp.mean(self.self1.var1[:, 0], axis=(-2, -1))
        v2 = jnp.mean(self.self2.var1[:, 0], axis=(-2, -1))
        return InvariantKernel(nngp=diag_mean(self.cross.nngp), ntk=diag_mean(self.cross.ntk), var1=v1, var2=v2,
                               cost=self.cost, flat=True)

    def held(self) -> Cost:
        """The state's own arrays: per pair the NNGP (and NTK) blocks, per input a self-pair block."""
        H, W = self.grid
        block = self.group.order * float(H * W) ** 2
        return Cost(pair=(2.0 if self.with_ntk else 1.0) * block, row=block)

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
        # M_d(t, t') = N_d(t, d⁻¹·t'): gather the second slot with T_{d⁻¹}, one static
        # permutation of the last HW axis per group element (a full-shape index array for
        # take_along_axis would cost XLA several blocks of int32 indices and gather temporaries)
        g = self.group
        if g.order == 1:
            return N[:, :, 0]
        H, W = self.grid
        perm = pixel_permutation(g, H, W)[g.inverse]  # (|G|, HW)
        flat = N.reshape(N.shape[:-2] + (H * W,))
        out = jnp.stack([jnp.take(flat[:, :, d], perm[d], axis=-1) for d in range(g.order)], axis=2)
        return out.reshape(N.shape)


def lift_pairs(x1, x2, group: PlanarGroup, q: int, padding: str, w2: float, b2: float, with_ntk: bool,
               cost: Cost) -> SpatialPairs:
    """The lifting layer on a tile of images ``x1 (t1, H, W, C)``, ``x2 (t2, H, W, C)``.

    ``N_d = w² A[x · (T_d x')ᵀ / C] + b²``; its NTK is its NNGP (first layer).
    """
    H, W = x1.shape[1:3]
    cost = cost.max(*kernel_cost(group, H, W, with_ntk))

    def pairs(xa, xb, outer, ntk):
        pa = patches(xa, q, padding)  # (t, Ho, Wo, q²C)
        pb = patches(transform_grid(xb, group), q, padding)  # (t, |G|, Ho, Wo, q²C)
        scale = w2 / pa.shape[-1]
        eq = "ahwk,bgHWk->abghwHW" if outer else "ahwk,agHWk->aghwHW"
        nngp = apart(lambda a, b: scale * jnp.einsum(eq, a, b) + b2, pa, pb)
        va = scale * jnp.sum(pa**2, axis=-1) + b2  # (t, Ho, Wo)
        vb = scale * jnp.sum(pb**2, axis=-1) + b2  # (t, |G|, Ho, Wo)
        if outer:
            va, vb = va[:, None, None], vb[None]
        else:
            va = va[:, None]
        return SpatialKernel(nngp, nngp if ntk else None, va, vb)

    return SpatialPairs(pairs(x1, x2, True, with_ntk), pairs(x1, x1, False, False), pairs(x2, x2, False, False),
                        group, with_ntk, cost)
