"""Fusion boundaries for XLA: evaluate a function as a computation of its own.

XLA fuses an elementwise producer into every consumer that reads it. When the consumers are the
shifted views of a window sum (``eqntk.planar.spatial.window_mean``) or the two outputs of a
nonlinearity's kernel, the producer is recomputed in each of them, and when an expensive
producer (a square root, a division) has consumers in several fusions it is materialised
piecewise, several full-size temporaries per map. ``jax.lax.optimization_barrier`` does not stop
this on XLA's CPU backend (it is removed before fusion).

:func:`apart` evaluates ``fn(*args)`` inside a ``lax.cond`` whose two branches are the same
function: a conditional is not fused with its surroundings, so its operands and results are
materialised exactly once and ``fn`` is fused on its own. In quick timings of the 32 × 32 CNN
kernel during issue 12 it made the planar layers 1.6–2.5× faster than fusing across them; the
combined effect of that issue is in ``benchmarks/results/image_kernels.json``.
The predicate reads one element of the first operand (``x == x``, false only for NaN, where both
branches give the same result), so XLA cannot fold the conditional away. Under ``jax.vmap`` over a
batched operand JAX turns the conditional into a select of both branches: the same values, twice
the work; ``jax.grad`` differentiates through it as through ``fn``.
"""

from __future__ import annotations

from typing import Callable

import jax

__all__ = ["apart"]


def apart(fn: Callable, *args):
    """``fn(*args)`` as a computation of its own (its operands and results materialised once)."""
    leaves = jax.tree_util.tree_leaves(args)
    if not leaves:
        return fn(*args)
    p = leaves[0].ravel()[0]
    return jax.lax.cond(p == p, fn, fn, *args)
