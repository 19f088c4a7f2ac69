"""Irrep blocks of per-element kernels (the Fourier transform over the point group).

A planar kernel before pooling is ``K((r, t), (r', t')) = M_{r' r⁻¹}(t, t')``: for
fixed positions a group-circulant ``|G| × |G|`` matrix, block-diagonalised by the
irreducible representations ``ρ`` of the point group. Its blocks are

    ``K̂(ρ) = (1/|G|) Σ_d ρ(d) M_d``,   inverse ``M_d = Σ_ρ dim ρ · tr(ρ(d)^† K̂(ρ))``.

Irreps used: C_n (trivial, p2, p4) — the characters ``χ_j(d) = exp(−2πi j k_d / n)``
(``k_d``: the rotation index), so ``K̂(χ_j)`` is the DFT over ``d`` divided by ``n``
(complex for n = 4; real ``±1`` for n ≤ 2); D_4 (p4m) — the real irreps
``A1`` (trivial), ``A2`` (det), ``B1`` ((−1)^k), ``B2`` ((−1)^k det) and the
2-dimensional ``E`` (``ρ(d) = A_d``, the matrix acting on pixels).
The trivial irrep's block is the group average of ``M_d``. On the functions
``r ↦ ρ(r)ᵀ v`` the kernel operator acts as ``Σ_d ρ(d)ᵀ ⊗ M_d = |G| K̂(ρ)ᵀ``: its
spectrum is the union over ``ρ`` of ``dim ρ`` copies of the spectrum of ``|G| K̂(ρ)``.
"""

from __future__ import annotations

import numpy as np
import jax.numpy as jnp

from .groups import PlanarGroup

__all__ = ["irreps", "group_fourier", "group_fourier_inverse"]


def irreps(group: PlanarGroup) -> dict:
    """``{name: (|G|, dim, dim) array}``: the irreducible representations of the point group."""
    k, f = group.rotation, group.flip
    if group.flip.any():
        det = np.array([round(np.linalg.det(A)) for A in group.array], dtype=float)
        sgn = (-1.0) ** k
        one = lambda v: np.asarray(v, float)[:, None, None]
        return {"A1": one(np.ones(group.order)), "A2": one(det), "B1": one(sgn), "B2": one(sgn * det),
                "E": group.array.astype(float)}
    n = group.n_rot
    out = {}
    for j in range(n):
        chi = np.exp(-2j * np.pi * j * k / n)
        out[f"chi{j}"] = (chi.real if n <= 2 else chi)[:, None, None]
    return out


def group_fourier(M, group: PlanarGroup, axis: int = 2) -> dict:
    """``{irrep: K̂(ρ)}`` of per-element kernels ``M`` with the group along ``axis``.

    ``M``: e.g. ``kernel_fn(x1, x2, 'nngp')`` of an unpooled planar network,
    ``(N1, N2, |G|, H, W, H, W)``. Each block replaces the group axis by ``(dim, dim)``.
    """
    M = jnp.moveaxis(jnp.asarray(M), axis, 0)
    out = {}
    for name, rho in irreps(group).items():
        blk = jnp.tensordot(jnp.asarray(rho), M, axes=([0], [0])) / group.order  # (dim, dim, ...)
        out[name] = jnp.moveaxis(blk, (0, 1), (axis, axis + 1))
    return out


def group_fourier_inverse(blocks: dict, group: PlanarGroup, axis: int = 2):
    """Inverse of :func:`group_fourier`: ``M_d = Σ_ρ dim ρ · tr(ρ(d)^† K̂(ρ))``."""
    total = 0.0
    for name, rho in irreps(group).items():
        b = jnp.moveaxis(jnp.asarray(blocks[name]), (axis, axis + 1), (0, 1))  # (dim, dim, ...)
        dim = rho.shape[1]
        # tr(ρ(d)^† B) = Σ_ij conj(ρ_ij(d)) B_ij
        total = total + dim * jnp.tensordot(np.conj(rho), b, axes=([1, 2], [0, 1]))
    M = jnp.moveaxis(total, 0, axis)
    return M.real if jnp.iscomplexobj(M) else M
