"""Pair kernels of SO(3) networks as functions on ONE copy of SO(3).

After a lifting layer with a full-support filter, the kernel of a pair of
inputs ``(f, f')`` at group elements ``(g, g')`` depends on ``u = g g'⁻¹`` only
(docs/mathematics.md, "One copy of the group is enough"): a function ``ψ(u)`` on SO(3), held as

* :class:`LiftBase` — straight after the lift, ``ψ(u) = c Σ_l f̂_lᵀ D^l(u) f̂'_l + b²``,
  kept as the (rotatable) inputs themselves; on a grid it is one matrix
  product per β-slice over all pairs of the tile;
* :class:`FourierBase` — Wigner-D blocks of bandlimit ``L`` (after a group conv),
* :class:`SumBase` — the sum of several branches' pair functions (``FanInSum`` of a residual block),
  each with its own base and maps, evaluated on the common grid and added point by point,

plus the pointwise maps (nonlinearities, 1×1 layers) applied since, which are
recorded and evaluated on the quadrature grid of the next integrating layer
(:func:`integrate`), one β-slice at a time: no pair function ever exists on the
whole grid, and never on a ``(g, g')`` grid. The recording and replay are the group-agnostic engine of
:mod:`eqntk.core.deferred`: :class:`PairFunction` is a :class:`~eqntk.core.deferred.Chain`,
:class:`SumBase` a :class:`~eqntk.core.deferred.SumNode`, and the bases' ``slicer``/``pointer`` are
its samplers (Wigner-D synthesis on a grid's β-slices or a point rule's chunks).

Each input's self-variance ``ψ_ff(e)`` is needed by the nonlinearities and is
changed by projections, so the self pairs ``(f, f)`` of the tile's rows and
columns travel alongside (``self1``, ``self2``).
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Union

import numpy as np
import jax
import jax.numpy as jnp

from ..core.deferred import Chain, SumNode, sample_base
from ..core.kernel import Cost, InvariantKernel, cannot_add, pytree_dataclass
from .quadrature import SO3Rule, grid_bandlimit_for, pool_rule, so3_grid
from .transform import fourier_cost_per_point, rule_chunks, rule_wigner, slice_plan
from .wigner import _pad_index, num_block_coeffs, pad_blocks, unpad_blocks, wigner_d_beta, z_rotation_factors

__all__ = ["LiftBase", "FourierBase", "SumBase", "PairFunction", "SO3Pairs", "integrate", "pool_points"]


def _rotate_orders(v, c, s, m_axis: int):
    """``c v + s flip(v)`` along the padded order axis ``m_axis`` (c, s pre-broadcast)."""
    return c * v + s * jnp.flip(v, axis=m_axis)


@pytree_dataclass(static=("L", "outer", "scale", "bias", "with_ntk"))
class LiftBase:
    """``ψ(u) = scale · Σ_{l<L} Σ_c f̂_lᵀ D^l(u) f̂'_l + bias``; its NTK equals ψ (first layer).

    ``left``: (t1, L, 2L-1, C), ``right``: (t2, L, 2L-1, C) padded inputs.
    ``outer``: all pairs (pair shape (t1, t2)); else matched pairs (t,) with t1 = t2.
    """

    left: jax.Array
    right: jax.Array
    L: int
    outer: bool
    scale: float
    bias: float
    with_ntk: bool

    def packed_blocks(self):
        """Fourier blocks of ψ packed ``(..., Σ(2l+1)²)`` (order l, m, n): one matmul per degree."""
        L, c = self.L, self.L - 1
        out = []
        for l in range(L):
            a = self.left[:, l, c - l : c + l + 1, :]  # (t1, 2l+1, C)
            b = self.right[:, l, c - l : c + l + 1, :]
            if self.outer:
                t1, t2, k = a.shape[0], b.shape[0], 2 * l + 1
                g = (a.reshape(t1 * k, -1) @ b.reshape(t2 * k, -1).T).reshape(t1, k, t2, k)
                out.append(jnp.transpose(g, (0, 2, 1, 3)).reshape(t1, t2, k * k))
            else:
                out.append(jnp.einsum("tmc,tnc->tmn", a, b).reshape(a.shape[0], -1))
        A = self.scale * jnp.concatenate(out, axis=-1)
        return A.at[..., 0].add(self.bias)

    def blocks(self):
        """Fourier blocks ``(..., L, P, P)`` of ψ (and of Θ = ψ)."""
        A = pad_blocks(self.packed_blocks())
        return A, (A if self.with_ntk else None)

    def uses_fourier_route(self, grid) -> bool:
        """Whether synthesising ψ from its Wigner-D blocks beats the direct matrix product.

        Direct: ``L² C`` multiply-adds per pair and grid point, in one large matmul per β-slice;
        the Fourier routes cost :func:`~eqntk.so3.transform.fourier_cost_per_point`, independent
        of the number of channels ``C``: they win for many channels.
        """
        return fourier_cost_per_point(grid, self.L) < self.L**2 * self.left.shape[-1]

    def slicer(self, grid):
        """``(xs, f)``: scan inputs with leading axis n_beta and ``f(x) -> (nngp_b, ntk_b)``.

        Slice values are flat, ``(..., n_alpha · n_gamma)`` (see :meth:`SlicePlan.synthesiser`).
        """
        if self.uses_fourier_route(grid):
            xs, fn = slice_plan(grid.bandlimit, self.L).synthesiser(self.packed_blocks(), packed=True, flat=True)
            with_ntk = self.with_ntk

            def f_fourier(x):
                v = fn(x)
                return v, (v if with_ntk else None)

            return xs, f_fourier
        L = self.L
        dt = self.left.dtype
        ca, sa = z_rotation_factors(L, jnp.asarray(-grid.alpha, dt))  # (nα, P)
        cg, sg = z_rotation_factors(L, jnp.asarray(grid.gamma, dt))
        # A1[t, a, l, m, c] = (Z(-α_a) f)_lm ;  H[t, c, l, k, ch] = (Z(γ_c) f')_lk
        A1 = _rotate_orders(self.left[:, None], ca[None, :, None, :, None], sa[None, :, None, :, None], m_axis=3)
        H = _rotate_orders(self.right[:, None], cg[None, :, None, :, None], sg[None, :, None, :, None], m_axis=3)
        ls, ms = _pad_index(L)
        t2, ng = H.shape[0], H.shape[1]
        H = H[:, :, ls, ms, :].reshape(t2, ng, -1)  # (t2, nγ, L²C)
        d = jnp.asarray(wigner_d_beta(L, grid.beta, dtype=np.float64, xp=np), dt)  # (nβ, L, P, P)
        outer, scale, bias, with_ntk = self.outer, self.scale, self.bias, self.with_ntk

        def f(d_b):
            G = jnp.einsum("lmk,talmc->talkc", d_b, A1)
            t1, na = G.shape[0], G.shape[1]
            G = G[:, :, ls, ms, :].reshape(t1, na, -1)  # (t1, nα, L²C)
            if outer:
                phi = (G.reshape(t1 * na, -1) @ H.reshape(t2 * ng, -1).T).reshape(t1, na, t2, ng)
                phi = jnp.transpose(phi, (0, 2, 1, 3)).reshape(t1, t2, na * ng)
            else:
                phi = jnp.einsum("taP,tcP->tac", G, H).reshape(t1, na * ng)
            psi = scale * phi + bias
            return psi, (psi if with_ntk else None)

        return d, f

    def fourier_on_points(self) -> bool:
        """Whether, at arbitrary points (a rule), synthesising ψ from its ``Σ(2l+1)²`` Wigner-D
        coefficients beats the direct route's ``L² C`` multiply-adds per pair and point."""
        return num_block_coeffs(self.L) < self.L**2 * self.left.shape[-1]

    def pointer(self, rule: SO3Rule):
        """``(xs, f)`` on a point rule: scan inputs with leading axis n_chunks, ``f(x) -> (nngp_c, ntk_c)``
        with values ``(..., chunk)`` at the chunk's points.

        Fourier route (``Σ(2l+1)²`` multiply-adds per pair and point) or direct route (the right
        inputs rotated to every point, then ``L² C`` per pair and point), whichever is cheaper.
        """
        L, dt = self.L, self.left.dtype
        with_ntk = self.with_ntk
        if self.fourier_on_points():
            packed = self.packed_blocks()

            def f_fourier(D_c):
                v = packed @ D_c
                return v, (v if with_ntk else None)

            return jnp.asarray(rule_wigner(rule.degree, L, packed=True), dt), f_fourier
        ls, ms = _pad_index(L)
        left = self.left[:, ls, ms, :].reshape(self.left.shape[0], -1)  # (t1, L²C)
        right, outer, scale, bias = self.right, self.outer, self.scale, self.bias

        def f(D_c):  # (chunk, L, P, P)
            H = jnp.einsum("plmn,tlnc->tplmc", D_c, right)[:, :, ls, ms, :]  # (t2, chunk, L², C)
            H = H.reshape(H.shape[0], H.shape[1], -1)
            if outer:
                phi = (left @ H.reshape(-1, H.shape[-1]).T).reshape(left.shape[0], H.shape[0], H.shape[1])
            else:
                phi = jnp.einsum("tk,tpk->tp", left, H)
            psi = scale * phi + bias
            return psi, (psi if with_ntk else None)

        return jnp.asarray(rule_wigner(rule.degree, L, packed=False), dt), f

    def rule_cost(self, rule: SO3Rule) -> Cost:
        chunk = rule_chunks(rule.degree)[1].shape[1]
        if self.fourier_on_points():
            return Cost(pair=num_block_coeffs(self.L), row=0.0)
        return Cost(pair=0.0, row=2 * chunk * self.L * (2 * self.L - 1) * self.left.shape[-1])

    def cost(self, grid) -> Cost:
        if self.uses_fourier_route(grid):
            return _fourier_cost(grid, self.L, n_functions=1)
        na, ng = grid.alpha.size, grid.gamma.size
        C = self.left.shape[-1]
        row = (2 * na * self.L * (2 * self.L - 1) + ng * self.L**2) * C
        return Cost(pair=0.0, row=row)


@pytree_dataclass(static=("L", "ntk_is_nngp"))
class FourierBase:
    """Wigner-D blocks of ψ (and Θ): ``(..., L, 2L-1, 2L-1)`` padded.

    ``ntk_is_nngp``: Θ = ψ (first layer); ``ntk`` is then ignored and ψ synthesised once.
    """

    nngp: jax.Array
    ntk: Optional[jax.Array]
    L: int
    ntk_is_nngp: bool = False

    def blocks(self):
        return self.nngp, (self.nngp if self.ntk_is_nngp else self.ntk)

    def slicer(self, grid):
        """As :meth:`LiftBase.slicer`: flat slice values ``(..., n_alpha · n_gamma)``."""
        plan = slice_plan(grid.bandlimit, self.L)
        xn, fn = plan.synthesiser(self.nngp, flat=True)
        if self.ntk is None or self.ntk_is_nngp:
            same = self.ntk_is_nngp

            def f(x):
                v = fn(x)
                return v, (v if same else None)

            return xn, f
        xt, ft = plan.synthesiser(self.ntk, flat=True)
        return (xn, xt), lambda x: (fn(x[0]), ft(x[1]))

    def pointer(self, rule: SO3Rule):
        """As :meth:`LiftBase.pointer`: values ``(..., chunk)`` from the packed blocks, one matmul per chunk."""
        D = jnp.asarray(rule_wigner(rule.degree, self.L, packed=True), self.nngp.dtype)
        n = unpad_blocks(self.nngp)
        if self.ntk is None or self.ntk_is_nngp:
            same = self.ntk_is_nngp

            def f(D_c):
                v = n @ D_c
                return v, (v if same else None)

            return D, f
        t = unpad_blocks(self.ntk)
        return D, lambda D_c: (n @ D_c, t @ D_c)

    def rule_cost(self, rule: SO3Rule) -> Cost:
        return Cost(pair=(1 if (self.ntk is None or self.ntk_is_nngp) else 2) * num_block_coeffs(self.L), row=0.0)

    def cost(self, grid) -> Cost:
        return _fourier_cost(grid, self.L, n_functions=1 if (self.ntk is None or self.ntk_is_nngp) else 2)


def _fourier_cost(grid, L: int, n_functions: int) -> Cost:
    """Working elements per pair of synthesising ``n_functions`` bandlimit-``L`` functions."""
    P = 2 * L - 1
    return Cost(pair=n_functions * (grid.bandlimit + 5 * L) * P * P, row=0.0)


def _sum_values(values):
    """``Σ_i (nngp_i, ntk_i)``; the NTK is ``None`` if any branch has none."""
    nngp = values[0][0]
    for v, _ in values[1:]:
        nngp = nngp + v
    ntks = [t for _, t in values]
    if any(t is None for t in ntks):
        return nngp, None
    ntk = ntks[0]
    for t in ntks[1:]:
        ntk = ntk + t
    return nngp, ntk


def _pad_to(blocks, L: int):
    """Padded blocks ``(..., L0, P0, P0)`` as blocks of bandlimit ``L ≥ L0`` (zeros above ``L0``)."""
    if blocks is None or blocks.shape[-3] == L:
        return blocks
    d = L - blocks.shape[-3]
    return jnp.pad(blocks, [(0, 0)] * (blocks.ndim - 3) + [(0, d), (d, d), (d, d)])


@pytree_dataclass
class SumBase(SumNode):
    """``ψ = Σ_i ψ_i``: the sum of branches' pair functions (``FanInSum``, see :meth:`SO3Pairs.add`).

    ``parts``: the branches' :class:`PairFunction` s, each its own base plus its own deferred
    maps (with the variances before each). On a grid or point rule each part is evaluated there —
    its base synthesised, then its maps applied — and the values are added point by point; the
    maps recorded after the sum then act on the sum. Its bandlimit ``L`` is the largest of the
    parts' bases, and it counts as ``nonlinear`` if any part applied a nonlinearity, so the
    integration grid (:func:`~eqntk.so3.quadrature.grid_bandlimit_for`) is the one each nonlinear
    branch would have alone and the sum of linear branches is integrated exactly.
    """

    parts: tuple

    @property
    def L(self) -> int:
        return max(p.base.L for p in self.parts)

    def blocks(self):
        """Fourier blocks ``(..., L, P, P)`` of ψ (and Θ): the parts' blocks added; only without maps."""
        if self.deferred:
            raise ValueError("the Wigner-D blocks of a sum whose branches hold pointwise maps are not "
                             "bandlimited; integrate them (SO3ConvSO3, SO3Pool) first")
        bl = [p.base.blocks() for p in self.parts]
        return _sum_values([(_pad_to(n, self.L), _pad_to(t, self.L)) for n, t in bl])

    def add(self, values):
        """The parts' ``(nngp, ntk)`` values added (the NTK is ``None`` if any part has none)."""
        return _sum_values(values)

    def slicer(self, grid):
        """As :meth:`LiftBase.slicer`: each part's values on the β-slice, mapped, then added."""
        return self.sampler(_slicer(grid))

    def pointer(self, rule: SO3Rule):
        """As :meth:`LiftBase.pointer`: each part's values on the chunk, mapped, then added."""
        return self.sampler(_pointer(rule))

    def rule_cost(self, rule: SO3Rule) -> Cost:
        chunk = rule_chunks(rule.degree)[1].shape[1]
        costs = [p.base.rule_cost(rule) for p in self.parts]
        return Cost(pair=sum(c.pair + 8 * chunk for c in costs), row=sum(c.row for c in costs))

    def cost(self, grid) -> Cost:
        n = grid.alpha.size * grid.gamma.size
        costs = [p.base.cost(grid) for p in self.parts]
        return Cost(pair=sum(c.pair + 8 * n for c in costs), row=sum(c.row for c in costs))


Base = Union[LiftBase, FourierBase, SumBase]


def _slicer(grid):
    """The sampler of bases on the β-slices of ``grid`` (:meth:`LiftBase.slicer`)."""
    return lambda base: base.slicer(grid)


def _pointer(rule: SO3Rule):
    """The sampler of bases on the chunks of a point rule (:meth:`LiftBase.pointer`)."""
    return lambda base: base.pointer(rule)


@pytree_dataclass(static=("maps",))
class PairFunction(Chain):
    """A base function plus the pointwise maps applied to it since (in order): a
    :class:`~eqntk.core.deferred.Chain` whose values are ``(nngp, ntk)`` pairs.

    ``var1[i]``, ``var2[i]``: variances of the two inputs of each pair
    just before map ``i``, broadcastable to the pair shape (``then(m, var1, var2)``).
    """

    base: Base
    maps: tuple = ()
    var1: tuple = ()
    var2: tuple = ()

    def _recorded(self, m, context) -> "PairFunction":
        var1, var2 = context
        return PairFunction(self.base, self.maps + (m,), self.var1 + (var1,),
                            self.var2 + (var2,))

    def step(self, i: int, values):
        """Map ``i`` on ``(nngp, ntk)`` values ``(..., n_points)`` (one trailing point axis)."""
        return self.maps[i].kernel(*values, self.var1[i][..., None], self.var2[i][..., None])


def integration_grid(pf: PairFunction, L_out: int, oversampling: float):
    return so3_grid(grid_bandlimit_for(pf.base.L, L_out, oversampling, pf.nonlinear))


def integrate(pf: PairFunction, L_out: int, oversampling: float, rule: bool = True):
    """Project the (mapped) pair function onto degrees ``< L_out``: blocks ``(..., L_out, P, P)``.

    Exact when no nonlinearity was applied; otherwise by quadrature on the grid
    chosen by :func:`~eqntk.so3.quadrature.grid_bandlimit_for`, or for the mean
    (``L_out = 1``) with ``rule`` on the point rule of the same exact degree
    (:func:`~eqntk.so3.quadrature.pool_rule`) where one is stored.
    """
    if not pf.maps and isinstance(pf.base, FourierBase) and pf.base.L == L_out:
        return pf.base.blocks()
    points = _pool_points(pf, L_out, oversampling, rule)
    if points is not None:
        return _integrate_rule(pf, points)
    grid = integration_grid(pf, L_out, oversampling)
    xs, slice_fn = pf.sampled(_slicer(grid))  # base values on a β-slice, maps replayed
    dtype = jax.tree_util.tree_leaves(pf.base)[0].dtype
    xa, analyse, finish = slice_plan(grid.bandlimit, L_out).analyser(dtype, flat=True)

    def body(carry, x):
        xb, ab = x
        nngp, ntk = slice_fn(xb)  # (..., n_alpha · n_gamma): one trailing point axis
        return carry, (analyse(nngp, ab), None if ntk is None else analyse(ntk, ab))

    _, (Pn, Pt) = jax.lax.scan(body, None, (xs, xa))
    return finish(Pn), (None if Pt is None else finish(Pt))


def _pool_points(pf: PairFunction, L_out: int, oversampling: float, rule: bool) -> Optional[SO3Rule]:
    """The point rule a mean over SO(3) uses, or ``None`` for the product grid.

    The rule (:func:`~eqntk.so3.quadrature.pool_rule`) has ~1.5x fewer points than the grid of
    the same exact degree, but its weights differ point by point: it pays only where the last
    pointwise map takes them inside its evaluation (``fuses_weights``: the exponential maps Rbf and
    Sin) or there is no map. Otherwise XLA's CPU backend materialises the weights at the values'
    full size and the pool ran 1.9x slower than on the grid (Erf, 128 x 128 tile, measured).
    """
    if L_out != 1:
        return None
    return _rule_for(pf.base.L, pf.maps, pf.nonlinear, oversampling, rule)


def _rule_for(L: int, maps, nonlinear: bool, oversampling: float, rule: bool) -> Optional[SO3Rule]:
    if not rule or (maps and not maps[-1].fuses_weights):
        return None
    return pool_rule(L, oversampling, nonlinear)


def pool_points(L: int, maps, oversampling: float, rule: bool = True):
    """The points ``SO3Pool(oversampling, rule)`` integrates on after a lift of bandlimit ``L`` and ``maps``:
    an :class:`~eqntk.so3.quadrature.SO3Rule` or the product :class:`~eqntk.so3.quadrature.SO3Grid`
    (the policy of :func:`integrate` for ``L_out = 1``, for code that evaluates the same quadrature)."""
    nonlinear = any(m.nonlinear for m in maps)
    points = _rule_for(L, tuple(maps), nonlinear, oversampling, rule)
    return points if points is not None else so3_grid(grid_bandlimit_for(L, 1, oversampling, nonlinear))


def _integrate_rule(pf: PairFunction, rule: SO3Rule):
    """The mean over SO(3) of the (mapped) pair function on a point rule: blocks ``(..., 1, 1, 1)``."""
    xs, point_fn = sample_base(pf.base, _pointer(rule))  # base values on a chunk of points
    dtype = jax.tree_util.tree_leaves(pf.base)[0].dtype
    with np.errstate(divide="ignore"):
        log_w = jnp.asarray(np.log(rule_chunks(rule.degree)[1]), dtype)  # (n_chunks, chunk); padding: -inf

    def body(carry, x):
        xc, lw = x
        nngp, ntk = point_fn(xc)  # (..., chunk)
        if not pf.maps:
            w = jnp.exp(lw)
            return carry, (jnp.sum(w * nngp, axis=-1), None if ntk is None else jnp.sum(w * ntk, axis=-1))
        nngp, ntk = pf.replay((nngp, ntk), stop=-1)
        # the last map applies the weights (inside its exponential where it has one: fused by XLA)
        nngp, ntk = pf.maps[-1].weighted_kernel(nngp, ntk, pf.var1[-1][..., None], pf.var2[-1][..., None], lw)
        return carry, (jnp.sum(nngp, axis=-1), None if ntk is None else jnp.sum(ntk, axis=-1))

    _, (Pn, Pt) = jax.lax.scan(body, None, (xs, log_w))
    as_block = lambda P: jnp.sum(P, axis=0)[..., None, None, None]  # noqa: E731
    return as_block(Pn), (None if Pt is None else as_block(Pt))


def integrate_cost(pf: PairFunction, L_out: int, oversampling: float, rule: bool = True) -> Cost:
    points = _pool_points(pf, L_out, oversampling, rule)
    if points is not None:
        base = pf.base.rule_cost(points)
        return Cost(pair=8 * rule_chunks(points.degree)[1].shape[1] + base.pair, row=base.row)
    grid = integration_grid(pf, L_out, oversampling)
    na, ng = grid.alpha.size, grid.gamma.size
    P = 2 * L_out - 1
    per_slice = 8 * na * ng + 2 * grid.bandlimit * P * P + 2 * L_out * P * P
    base = pf.base.cost(grid)
    return Cost(pair=per_slice + base.pair, row=base.row)


def _trace(blocks):
    """``ψ(e) = Σ_l tr ψ̂^l``."""
    return jnp.einsum("...lmm->...", blocks)


@pytree_dataclass(static=("cost", "with_ntk"))
class SO3Pairs:
    """State of a tile after an SO(3) lift: cross pairs, self pairs of rows and columns, variances."""

    cross: PairFunction  # pair shape (t1, t2)
    self1: PairFunction  # (t1,)
    self2: PairFunction  # (t2,)
    var1: jax.Array
    var2: jax.Array
    with_ntk: bool
    cost: Cost = Cost()

    @property
    def bandlimit(self) -> int:
        return self.cross.base.L

    @property
    def kind(self) -> str:
        return f"functions on SO(3) of bandlimit {self.bandlimit}"

    def pointwise(self, m):
        v1, v2 = self.var1, self.var2
        return dataclasses.replace(
            self,
            cross=self.cross.then(m, v1[:, None], v2[None, :]),
            self1=self.self1.then(m, v1, v1),
            self2=self.self2.then(m, v2, v2),
            var1=m.var(v1),
            var2=m.var(v2),
        )

    def conv(self, L_out: int, W_std: float, b_std: Optional[float], oversampling: float) -> "SO3Pairs":
        """Group convolution with a white filter of bandlimit ``L_out``: ``K' = W² P_L K + b²``."""
        cost = self.cost
        for pf in (self.cross, self.self1):
            cost = cost.max(*integrate_cost(pf, L_out, oversampling))
        w2, b2 = W_std**2, (0.0 if b_std is None else b_std**2)
        c = L_out - 1

        def new(pf, with_ntk):
            n, t = integrate(pf, L_out, oversampling)
            n = (w2 * n).at[..., 0, c, c].add(b2)
            t = (n + w2 * t) if (with_ntk and t is not None) else None
            return PairFunction(FourierBase(n, t, L_out))

        cross = new(self.cross, self.with_ntk)
        d1 = new(self.self1, False)
        d2 = new(self.self2, False)
        return SO3Pairs(cross, d1, d2, _trace(d1.base.nngp), _trace(d2.base.nngp), self.with_ntk, cost)

    def add(self, other):
        """The state of the sum of two independent branches' feature maps (``FanInSum``).

        Each pair kernel becomes a :class:`SumBase` of the two branches' pair functions: on the
        quadrature grid (or point rule) of the next integrating layer each branch's base is
        evaluated and its own deferred maps applied, and the values are added point by point; maps
        applied after the sum act on the sum. NNGP, NTK and the inputs' variances add (exact under
        the independence rule of :mod:`eqntk.core.branching`). The grid is chosen from the larger
        bandlimit and from whether either branch is nonlinear, so a sum of linear branches is
        integrated exactly and a nonlinear branch on the grid it would have alone.

        Raises ``ValueError`` for a state of another kind (a pooled branch) or another bandlimit (the
        finite network's feature maps would have different shapes).
        """
        if not isinstance(other, SO3Pairs):
            raise cannot_add(self, other, "one branch is a function on SO(3), the other is not (pool both "
                                          "branches with SO3Pool, or neither)")
        if other.bandlimit != self.bandlimit:
            raise cannot_add(self, other, f"the branches' bandlimits differ ({self.bandlimit} and "
                                          f"{other.bandlimit}); give their last group convolutions equal bandlimits")
        if other.with_ntk != self.with_ntk:
            raise cannot_add(self, other, "one branch tracks the NTK, the other does not")

        def plus(a: PairFunction, b: PairFunction) -> PairFunction:
            return PairFunction(SumBase((a, b)))

        return SO3Pairs(plus(self.cross, other.cross), plus(self.self1, other.self1), plus(self.self2, other.self2),
                        self.var1 + other.var1, self.var2 + other.var2, self.with_ntk, self.cost.max(*other.cost))

    def pool(self, oversampling: float, rule: bool = True) -> InvariantKernel:
        """Mean over SO(3) (the degree-0 coefficient); ``rule``: on a point rule where one is stored."""
        cost = self.cost
        for pf in (self.cross, self.self1):
            cost = cost.max(*integrate_cost(pf, 1, oversampling, rule))
        n, t = integrate(self.cross, 1, oversampling, rule)
        d1, _ = integrate(self.self1, 1, oversampling, rule)
        d2, _ = integrate(self.self2, 1, oversampling, rule)
        return InvariantKernel(
            nngp=n[..., 0, 0, 0],
            ntk=None if t is None else t[..., 0, 0, 0],
            var1=d1[..., 0, 0, 0],
            var2=d2[..., 0, 0, 0],
            cost=cost,
        )

    def output(self):
        if self.cross.deferred:
            raise ValueError(
                "the network ends in a pointwise layer acting on a function on SO(3) (after the last group "
                "convolution, in a residual branch or after the sum); its kernel is not "
                "bandlimited. End with SO3Pool() (invariant output) or SO3ConvSO3 (Wigner-D blocks)."
            )
        n, t = self.cross.base.blocks()
        return unpad_blocks(n), (None if t is None else unpad_blocks(t))
