"""Finite-width SO(3) feature maps, held in the Fourier domain.

A feature map of a finite GCNN is ``C`` real functions on SO(3) of bandlimit
``L``, stored as Wigner-D blocks ``(N, L, 2L-1, 2L-1, C)`` (padded, channel
last), ``h_c(u) = Σ_l Σ_mn ĥ^l_mn,c D^l_mn(u)``. Rotations act exactly on them.
Pointwise layers (nonlinearities, 1×1 Dense) are recorded and applied on the
quadrature grid of the next integrating layer — the same grid the kernel uses,
so the finite network's empirical kernels converge to ``kernel_fn``'s.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from .quadrature import grid_bandlimit_for
from .transform import slice_plan

__all__ = ["SO3Signal"]


class SO3Signal:
    """Channel-last Wigner-D blocks ``(N, L, P, P, C)`` plus pending pointwise functions.

    Not a pytree: it is an intermediate inside ``apply_fn``. Use :meth:`project`
    to get coefficients of a given bandlimit.
    """

    def __init__(self, blocks, fns: tuple = ()):
        self.blocks = blocks
        self.fns = tuple(fns)

    @property
    def bandlimit(self) -> int:
        return self.blocks.shape[-4]

    @property
    def shape(self):
        return self.blocks.shape

    def map_values(self, fn: Callable, linear: bool = False) -> "SO3Signal":
        return SO3Signal(self.blocks, self.fns + ((fn, linear),))

    def project(self, L_out: int, oversampling: float):
        """Coefficients of the mapped signal on degrees ``< L_out``: ``(N, C', L_out, P', P')``."""
        L = self.bandlimit
        x = jnp.moveaxis(self.blocks, -1, 1)  # (N, C, L, P, P)
        if not self.fns:
            if L_out <= L:
                c0 = L - L_out
                return x[:, :, :L_out, c0 : c0 + 2 * L_out - 1, c0 : c0 + 2 * L_out - 1]
            pad = L_out - L
            return jnp.pad(x, ((0, 0), (0, 0), (0, pad), (pad, pad), (pad, pad)))
        nonlinear = any(not lin for _, lin in self.fns)
        B = grid_bandlimit_for(L, L_out, oversampling, nonlinear)
        xs, synthesise = slice_plan(B, L).synthesiser(x)  # the kernel's grid and transform routes
        xa, analyse, finish = slice_plan(B, L_out).analyser(x.dtype)

        def body(carry, slice_inputs):
            s_b, a_b = slice_inputs
            v = jnp.moveaxis(synthesise(s_b), 1, -1)  # (N, nα, nγ, C)
            for fn, _ in self.fns:
                v = fn(v)
            return carry, analyse(jnp.moveaxis(v, -1, 1), a_b)

        _, stacked = jax.lax.scan(body, None, (xs, xa))
        return finish(stacked)
