"""Empirical kernels of finite-width networks (for Monte Carlo checks and width studies).

For a network ``f(θ, x) ∈ R^k`` (``apply_fn(params, x)`` of shape ``(N, k)``):

* empirical NNGP: ``f(θ, x1) f(θ, x2)ᵀ / k`` — its mean over random ``θ`` is the NNGP;
* empirical NTK: ``Σ_p ∂f(x1)/∂θ_p ∂f(x2)/∂θ_p`` averaged over the ``k`` outputs — its mean
  over random ``θ`` converges to the NTK as the width grows (relative error ∝ 1/√width).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

__all__ = ["empirical_nngp", "empirical_ntk", "empirical_kernels"]


def empirical_nngp(apply_fn: Callable, params, x1, x2=None):
    """``(N1, N2)`` output covariance of one network, averaged over its ``k`` outputs."""
    f1 = apply_fn(params, x1)
    f2 = f1 if x2 is None else apply_fn(params, x2)
    return f1 @ f2.T / f1.shape[-1]


def empirical_ntk(apply_fn: Callable, params, x1, x2=None):
    """``(N1, N2)`` tangent kernel of one network, averaged over its ``k`` outputs."""
    j1 = jax.jacrev(lambda p: apply_fn(p, x1))(params)
    j2 = j1 if x2 is None else jax.jacrev(lambda p: apply_fn(p, x2))(params)
    k = jax.tree_util.tree_leaves(j1)[0].shape[1]

    def contract(a, b):
        a = a.reshape(a.shape[0], a.shape[1], -1)
        b = b.reshape(b.shape[0], b.shape[1], -1)
        return jnp.einsum("iop,jop->ij", a, b)

    terms = jax.tree_util.tree_map(contract, j1, j2)
    return sum(jax.tree_util.tree_leaves(terms)) / k


def empirical_kernels(apply_fn: Callable, params, x1, x2=None):
    """``(nngp, ntk)`` of one network (see :func:`empirical_nngp`, :func:`empirical_ntk`)."""
    return empirical_nngp(apply_fn, params, x1, x2), empirical_ntk(apply_fn, params, x1, x2)
