"""Separable transforms between SO(3) grid values and Wigner-D Fourier blocks.

A function of bandlimit ``L`` on SO(3) is stored as padded blocks
``ψ̂[..., l, m, n]`` of shape ``(..., L, 2L-1, 2L-1)`` with

    ψ(u) = Σ_l Σ_mn ψ̂^l_mn D^l_mn(u),        ψ̂^l_mn = (2l+1) ∫ ψ(u) D^l_mn(u) du .

With ``D = Z(α) d(β) Z(γ)`` and ``Z`` a cos/sin mixing of the orders ±m,

    ψ(α, β, γ) = Σ_{k,k'} e_k(α) S_β[k, k'] e_k'(γ),

``e_k = cos(kα)`` for ``k ≥ 0`` and ``sin(|k|α)`` for ``k < 0``. So a transform is
(i) a per-β contraction between blocks and the small Wigner-d tables, and
(ii) real DFTs over α and γ (matrix products). Grid values are produced and
consumed one β-slice at a time (``(..., n_alpha, n_gamma)``), so a function is
never held on the whole grid.

Sign rules (from ``Z``): ``(C_k d C_k')_mn`` for cos/sin choices
``cc: d_mn``, ``sc: -sgn(m) d_{-m,n}``, ``cs: sgn(n) d_{m,-n}``,
``ss: -sgn(m) sgn(n) d_{-m,-n}``, at frequencies ``(±|m|, ±|n|)`` (− for sin).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import jax
import jax.numpy as jnp

from .quadrature import SO3Grid, so3_grid
from .wigner import wigner_d_beta

__all__ = ["TransformTables", "transform_tables", "synthesis_prepare", "synthesis_slice",
           "analysis_slice", "analysis_finish", "to_grid", "from_grid"]

# the four cos/sin choices (g1, g2): +1 = cos, -1 = sin
_CHOICES = ((1, 1), (-1, 1), (1, -1), (-1, -1))


def _dft_matrix(n_points: int, L: int, angles: np.ndarray) -> np.ndarray:
    """``E[a, k] = e_k(angle_a)`` for ``k = -(L-1)..L-1``: shape ``(n_points, 2L-1)``."""
    k = np.arange(-(L - 1), L)
    a = angles[:, None]
    return np.where(k >= 0, np.cos(np.abs(k) * a), np.sin(np.abs(k) * a))


@dataclasses.dataclass(frozen=True)
class TransformTables:
    """NumPy float64 tables of one (grid, coefficient bandlimit) pair.

    Attributes:
        grid: the SO(3) grid (bandlimit B ≥ L).
        L: coefficient bandlimit.
        E_alpha: (n_alpha, 2L-1) real DFT matrix; E_gamma likewise.
        U: (B, 4, L, 2L-1, 2L-1) sign-mixed Wigner-d tables per β node and cos/sin choice.
        W_syn: (B, 4, L, 2L-1, 2L-1) the same tables indexed by frequency (k, k') and flip f,
            used by synthesis (duplicates at k = 0 masked).
        W_ana: (B, 4, L, 2L-1, 2L-1) ``(2l+1) w_β U`` for analysis.
    """

    grid: SO3Grid
    L: int
    E_alpha: np.ndarray
    E_gamma: np.ndarray
    U: np.ndarray
    W_syn: np.ndarray
    W_ana: np.ndarray


@functools.lru_cache(maxsize=64)
def transform_tables(grid_bandlimit: int, L: int) -> TransformTables:
    """Tables for transforms between ``so3_grid(grid_bandlimit)`` and blocks of bandlimit ``L``."""
    if L > grid_bandlimit:
        raise ValueError(f"grid bandlimit {grid_bandlimit} cannot resolve coefficients of bandlimit {L}")
    grid = so3_grid(grid_bandlimit)
    P = 2 * L - 1
    with jax.ensure_compile_time_eval():
        d = np.asarray(wigner_d_beta(L, np.asarray(grid.beta), dtype=np.float64))  # (B, L, P, P)
    m = np.arange(-(L - 1), L)
    sm = np.sign(m)[:, None]
    sn = np.sign(m)[None, :]
    U = np.stack(
        [
            d,
            -sm * np.flip(d, axis=-2),
            sn * np.flip(d, axis=-1),
            -sm * sn * np.flip(d, axis=(-2, -1)),
        ],
        axis=1,
    )  # (B, 4, L, P, P) indexed by target (m, n)

    # Synthesis: S[k, k'] = Σ_f Σ_l ψ̂[l, f1|k|, f2|k'|] U[g(k,k'), l, f1|k|, f2|k'|]
    absk = np.abs(m)
    g_of = {(1, 1): 0, (-1, 1): 1, (1, -1): 2, (-1, -1): 3}
    W_syn = np.zeros_like(U)
    for fi, (f1, f2) in enumerate(_CHOICES):
        mi = f1 * absk + L - 1  # target m index for each k
        ni = f2 * absk + L - 1
        for ki, k in enumerate(m):
            if f1 < 0 and k == 0:
                continue
            for qi, q in enumerate(m):
                if f2 < 0 and q == 0:
                    continue
                g = g_of[(1 if k >= 0 else -1, 1 if q >= 0 else -1)]
                W_syn[:, fi, :, ki, qi] = U[:, g, :, mi[ki], ni[qi]]

    ls = np.arange(L)
    W_ana = U * ((2 * ls + 1)[None, None, :, None, None] * grid.beta_weights[:, None, None, None, None])
    return TransformTables(
        grid=grid,
        L=L,
        E_alpha=_dft_matrix(grid.alpha.size, L, grid.alpha),
        E_gamma=_dft_matrix(grid.gamma.size, L, grid.gamma),
        U=U,
        W_syn=W_syn,
        W_ana=W_ana,
    )


@functools.lru_cache(maxsize=64)
def _flip_index(L: int):
    """Gather indices: for flip f and frequency k, the padded order index ``f|k| + L - 1``."""
    absk = np.abs(np.arange(-(L - 1), L))
    return np.stack([f * absk + L - 1 for f, _ in _CHOICES]), np.stack([f * absk + L - 1 for _, f in _CHOICES])


def synthesis_prepare(blocks, tables: TransformTables):
    """Blocks ``(..., L, P, P)`` → per-β coefficient planes ``S`` of shape ``(..., B, P, P)``.

    ``ψ`` on β-slice ``b`` is then ``E_alpha @ S[..., b, :, :] @ E_gammaᵀ``
    (:func:`synthesis_slice`).
    """
    L = tables.L
    if blocks.shape[-3] != L:
        raise ValueError(f"blocks have bandlimit {blocks.shape[-3]}, tables expect {L}")
    i1, i2 = _flip_index(L)
    # G[..., f, l, k, k'] = ψ̂[..., l, f1|k|, f2|k'|]
    G = blocks[..., :, i1[:, :, None], i2[:, None, :]]  # (..., L, 4, P, P)
    G = jnp.moveaxis(G, -4, -3)  # (..., 4, L, P, P)
    W = jnp.asarray(tables.W_syn, blocks.dtype)  # (B, 4, L, P, P)
    return jnp.einsum("...flkq,bflkq->...bkq", G, W)


def synthesis_slice(S_b, tables: TransformTables):
    """Grid values on one β-slice: ``(..., P, P)`` → ``(..., n_alpha, n_gamma)``."""
    Ea = jnp.asarray(tables.E_alpha, S_b.dtype)
    Eg = jnp.asarray(tables.E_gamma, S_b.dtype)
    return jnp.einsum("ak,...kq,cq->...ac", Ea, S_b, Eg)


def analysis_slice(values_b, tables: TransformTables):
    """Real DFT of one β-slice: ``(..., n_alpha, n_gamma)`` → ``Ψ̃_b`` of shape ``(..., P, P)``."""
    Ea = jnp.asarray(tables.E_alpha, values_b.dtype)
    Eg = jnp.asarray(tables.E_gamma, values_b.dtype)
    n = Ea.shape[0] * Eg.shape[0]
    return jnp.einsum("ak,...ac,cq->...kq", Ea, values_b, Eg) / n


def analysis_finish(Psi, tables: TransformTables):
    """Per-β DFT planes ``(..., B, P, P)`` → blocks ``(..., L, P, P)`` (the β quadrature)."""
    L = tables.L
    absm = np.abs(np.arange(-(L - 1), L))
    # Ψ̃g[..., b, g, m, n] = Ψ̃[..., b, g1|m|, g2|n|]
    i1 = np.stack([g1 * absm + L - 1 for g1, _ in _CHOICES])
    i2 = np.stack([g2 * absm + L - 1 for _, g2 in _CHOICES])
    Pg = Psi[..., :, i1[:, :, None], i2[:, None, :]]  # (..., B, 4, P, P)
    W = jnp.asarray(tables.W_ana, Psi.dtype)  # (B, 4, L, P, P)
    return jnp.einsum("...bgmn,bglmn->...lmn", Pg, W)


def to_grid(blocks, grid_bandlimit: int):
    """Full inverse transform (for tests and small problems): ``(..., L, P, P)`` → ``(..., nα, nβ, nγ)``."""
    t = transform_tables(grid_bandlimit, blocks.shape[-3])
    S = synthesis_prepare(blocks, t)
    vals = synthesis_slice(S, t)  # (..., B, nα, nγ)
    return jnp.moveaxis(vals, -3, -2)


def from_grid(values, grid_bandlimit: int, L: int):
    """Full forward transform: ``(..., nα, nβ, nγ)`` → blocks ``(..., L, P, P)`` of bandlimit ``L``."""
    t = transform_tables(grid_bandlimit, L)
    Psi = analysis_slice(jnp.moveaxis(values, -2, -3), t)  # (..., B, P, P)
    return analysis_finish(Psi, t)
