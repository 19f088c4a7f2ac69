"""Finite-width SO(3) feature maps, held in the Fourier domain.

A feature map of a finite GCNN is ``C`` real functions on SO(3) of bandlimit
``L``, stored as Wigner-D blocks ``(N, L, 2L-1, 2L-1, C)`` (padded, channel
last), ``h_c(u) = Σ_l Σ_mn ĥ^l_mn,c D^l_mn(u)``. Rotations act exactly on them.
Pointwise layers (nonlinearities, 1×1 Dense) are recorded and applied on the
quadrature grid of the next integrating layer — the same grid the kernel uses,
so the finite network's empirical kernels converge to ``kernel_fn``'s.

A residual block's ``FanInSum`` adds two signals lazily (:class:`SO3Sum`): on that grid each branch
is synthesised and its own pending functions applied, the values are added, and the functions
recorded after the sum act on the sum — as the kernel's
:class:`~eqntk.so3.kernel_state.SumBase` does. Both sides use the group-agnostic engine of
:mod:`eqntk.core.deferred`: a signal is a :class:`~eqntk.core.deferred.Chain` (its base the blocks,
or a :class:`~eqntk.core.deferred.SumNode` of branch signals) and a
:class:`~eqntk.core.deferred.Deferred` value; SO(3) supplies the sampler (Wigner-D synthesis on the
β-slices of the grid).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from ..core.deferred import Chain, Deferred, RecordedFn, SumNode
from .quadrature import grid_bandlimit_for
from .transform import slice_plan

__all__ = ["SO3Signal", "SO3Sum"]


def _slices(B: int):
    """The sampler of Wigner-D blocks ``(N, L, P, P, C)`` on the β-slices of ``so3_grid(B)``: scan inputs
    and values ``(N, nα, nγ, C)`` on a slice (the kernel's grid and transform routes)."""

    def sample(blocks):
        xs, synthesise = slice_plan(B, blocks.shape[-4]).synthesiser(jnp.moveaxis(blocks, -1, 1))  # (N, C, L, P, P)
        return xs, (lambda s_b: jnp.moveaxis(synthesise(s_b), 1, -1))

    return sample


class SO3Signal(Deferred, Chain):
    """Channel-last Wigner-D blocks ``(N, L, P, P, C)`` plus pending pointwise functions.

    Not a pytree: it is an intermediate inside ``apply_fn``. Use :meth:`project`
    to get coefficients of a given bandlimit. ``maps``: the pending functions, as
    :class:`~eqntk.core.deferred.RecordedFn` s.
    """

    def __init__(self, blocks, maps: tuple = ()):
        self.base = blocks
        self.maps = tuple(maps)

    @property
    def blocks(self):
        return self.base

    @property
    def bandlimit(self) -> int:
        return self.blocks.shape[-4]

    @property
    def shape(self):
        return self.blocks.shape

    @property
    def dtype(self):
        return self.blocks.dtype

    def _recorded(self, m, context) -> "SO3Signal":
        return SO3Signal(self.base, self.maps + (m,))

    def map_values(self, fn: Callable, linear: bool = False) -> "SO3Signal":
        return self.then(RecordedFn(fn, linear))

    def plus(self, other: "SO3Signal") -> "SO3Sum":
        """The sum of two signals of equal shape (``FanInSum``), kept lazy: see :class:`SO3Sum`."""
        if not isinstance(other, SO3Signal):
            raise ValueError(f"FanInSum: cannot add an SO(3) signal to a {type(other).__name__}: the branches "
                             "must end in functions on SO(3) of the same shape")
        if tuple(other.shape) != tuple(self.shape):
            raise ValueError(f"FanInSum: the branches' shapes differ: {tuple(self.shape)} and {tuple(other.shape)}")
        return SO3Sum((self, other))

    def _values(self, B: int):
        """``(xs, f)``: scan inputs over the β-slices of ``so3_grid(B)`` and ``f(x)``, the mapped values
        ``(N, nα, nγ, C)`` on the slice."""
        return self.sampled(_slices(B))

    def _linear_blocks(self, L_out: int):
        """Coefficients ``(N, C, L_out, P', P')`` without pending functions: truncated or zero-padded."""
        L = self.bandlimit
        x = jnp.moveaxis(self.blocks, -1, 1)  # (N, C, L, P, P)
        if L_out <= L:
            c0 = L - L_out
            return x[:, :, :L_out, c0 : c0 + 2 * L_out - 1, c0 : c0 + 2 * L_out - 1]
        pad = L_out - L
        return jnp.pad(x, ((0, 0), (0, 0), (0, pad), (pad, pad), (pad, pad)))

    def project(self, L_out: int, oversampling: float):
        """Coefficients of the mapped signal on degrees ``< L_out``: ``(N, C', L_out, P', P')``."""
        if not self.deferred:
            return self._linear_blocks(L_out)
        B = grid_bandlimit_for(self.bandlimit, L_out, oversampling, self.nonlinear)
        xs, values = self._values(B)
        xa, analyse, finish = slice_plan(B, L_out).analyser(self.dtype)

        def body(carry, slice_inputs):
            s_b, a_b = slice_inputs
            return carry, analyse(jnp.moveaxis(values(s_b), -1, 1), a_b)

        _, stacked = jax.lax.scan(body, None, (xs, xa))
        return finish(stacked)


class _Parts(SumNode):
    """The base of an :class:`SO3Sum`: the branch signals (their values add as arrays)."""

    def __init__(self, parts: tuple):
        self.parts = tuple(parts)


class SO3Sum(SO3Signal):
    """The sum of branch signals of equal shape (``FanInSum``), plus functions applied after the sum.

    Each part keeps its own pending functions. :meth:`project` evaluates every part on the grid
    chosen from the largest bandlimit and from whether any part (or the sum's own functions) is
    nonlinear — the grid the kernel uses — adds the parts' mapped values and applies the sum's
    functions; without any pending function it adds the parts' coefficients (exact). Its base is a
    :class:`~eqntk.core.deferred.SumNode` of the parts.
    """

    def __init__(self, parts: tuple, maps: tuple = ()):
        self.base = parts if isinstance(parts, _Parts) else _Parts(parts)
        self.maps = tuple(maps)

    @property
    def parts(self) -> tuple:
        return self.base.parts

    @property
    def blocks(self):
        raise AttributeError("an SO3Sum has no blocks of its own: project() it")

    @property
    def bandlimit(self) -> int:
        return max(p.bandlimit for p in self.parts)

    @property
    def shape(self):
        return self.parts[0].shape

    @property
    def dtype(self):
        return self.parts[0].dtype

    def _recorded(self, m, context) -> "SO3Sum":
        return SO3Sum(self.base, self.maps + (m,))

    def _linear_blocks(self, L_out: int):
        out = self.parts[0]._linear_blocks(L_out)
        for p in self.parts[1:]:
            out = out + p._linear_blocks(L_out)
        return out
