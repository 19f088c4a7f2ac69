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
import math

import numpy as np
import jax.numpy as jnp

from .quadrature import SO3Grid, so3_grid
from .wigner import wigner_d_beta

__all__ = ["TransformTables", "transform_tables", "synthesis_prepare", "synthesis_slice", "rule_chunks", "rule_wigner",
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
    d = wigner_d_beta(L, np.asarray(grid.beta), dtype=np.float64, xp=np)  # (B, L, P, P)
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


# --------------------------------------------------------------- slice plans
#
# Integrating layers consume a function one β-slice at a time. Two ways to go between blocks and
# a slice: the separable route above (few flops, small awkward contractions) or one dense matrix
# per slice, D_b[(l,m,n), (a,c)] = D^l_mn(α_a, β_b, γ_c) (more flops, one large matrix product).
# On CPU the dense route wins for small bandlimits; the choice is made from a flop model.

_SEPARABLE_INEFFICIENCY = 20.0  # measured on CPU: small batched contractions vs one large matmul


def _separable_cost(grid: SO3Grid, L: int) -> float:
    """Multiply-adds per pair and β-slice of the separable route (weighted by its inefficiency)."""
    na, ng, P = grid.alpha.size, grid.gamma.size, 2 * L - 1
    return _SEPARABLE_INEFFICIENCY * (4 * L * P * P + na * P * P + na * ng * P)


def _dense_cost(grid: SO3Grid, L: int) -> float:
    from .wigner import num_block_coeffs

    return float(num_block_coeffs(L) * grid.alpha.size * grid.gamma.size)


def fourier_cost_per_point(grid: SO3Grid, L: int) -> float:
    """Multiply-adds per pair and grid point to synthesise a bandlimit-``L`` function (best route)."""
    return min(_separable_cost(grid, L), _dense_cost(grid, L)) / (grid.alpha.size * grid.gamma.size)


@functools.lru_cache(maxsize=32)
def _dense_matrices(grid_bandlimit: int, L: int) -> np.ndarray:
    """``D_b[(l,m,n), (a,c)]`` for every β node: ``(n_beta, Σ(2l+1)², n_alpha · n_gamma)`` float64."""
    from .wigner import _block_index, wigner_D_padded

    g = so3_grid(grid_bandlimit)
    a, b, c = g.euler_angles()
    D = wigner_D_padded(L, a, b, c, dtype=np.float64, xp=np)  # (nα, nβ, nγ, L, P, P)
    ls, ms, ns = _block_index(L)
    D = D[..., ls, ms, ns]  # (nα, nβ, nγ, M)
    return np.ascontiguousarray(np.transpose(D, (1, 3, 0, 2)).reshape(g.beta.size, len(ls), -1))


@dataclasses.dataclass(frozen=True)
class SlicePlan:
    """Transforms of bandlimit-``L`` functions one β-slice of ``so3_grid(grid_bandlimit)`` at a time.

    Both methods return ``(xs, f)``: ``xs`` a pytree with leading axis n_beta to scan over, and
    ``f`` the per-slice function.
    """

    grid_bandlimit: int
    L: int
    dense: bool

    @property
    def tables(self) -> TransformTables:
        return transform_tables(self.grid_bandlimit, self.L)

    def synthesiser(self, blocks, packed: bool = False, flat: bool = False):
        """``f(x_b) -> values (..., n_alpha, n_gamma)`` of the function with these blocks.

        ``blocks``: padded ``(..., L, P, P)``, or packed ``(..., Σ(2l+1)²)`` with ``packed=True``.
        ``flat=True``: values ``(..., n_alpha · n_gamma)`` instead (α-major), the layout in which
        XLA fuses the pointwise maps and reductions that follow (a 2-axis trailing shape makes it
        materialise every intermediate, measured ~1.6× slower on CPU).
        """
        from .wigner import pad_blocks, unpad_blocks

        if packed and not self.dense:
            blocks = pad_blocks(blocks)
        if self.dense:
            flat_blocks = blocks if packed else unpad_blocks(blocks)
            na = so3_grid(self.grid_bandlimit).alpha.size
            D = jnp.asarray(_dense_matrices(self.grid_bandlimit, self.L), blocks.dtype)

            def f(D_b):
                v = flat_blocks @ D_b
                return v if flat else v.reshape(v.shape[:-1] + (na, -1))

            return D, f
        t = self.tables

        def f_sep(S_b):
            v = synthesis_slice(S_b, t)
            return v.reshape(v.shape[:-2] + (-1,)) if flat else v

        return jnp.moveaxis(synthesis_prepare(blocks, t), -3, 0), f_sep

    def analyser(self, dtype, flat: bool = False):
        """``(xs, f, finish)``: ``f(values, x_b)`` → partial; ``finish(stacked)`` → blocks (..., L, P, P).

        ``values``: ``(..., n_alpha, n_gamma)``, or ``(..., n_alpha · n_gamma)`` with ``flat=True``.
        """
        g = so3_grid(self.grid_bandlimit)
        na, ng = g.alpha.size, g.gamma.size

        def as_flat(values):
            return values if flat else values.reshape(values.shape[:-2] + (na * ng,))

        if self.L == 1:
            # the mean over SO(3) (a pool): D^0 = 1, so each slice is a weighted sum — a reduction
            # that fuses with the pointwise maps before it, not a (n_alpha·n_gamma, 1) matrix product
            w = jnp.asarray(g.beta_weights / (na * ng), dtype)

            def mean(values, w_b):
                return (w_b * jnp.sum(as_flat(values), axis=-1))[..., None, None, None]

            return w, mean, lambda stacked: jnp.sum(stacked, axis=0)
        if self.dense:
            from .wigner import pad_blocks

            ls = _block_index_l(self.L)
            w = g.beta_weights / (na * ng)
            # (n_beta, n_alpha·n_gamma, M) with the weights and 2l+1 folded in
            A = np.transpose(_dense_matrices(self.grid_bandlimit, self.L), (0, 2, 1)) * (
                w[:, None, None] * (2 * ls + 1)[None, None, :])
            A = jnp.asarray(A, dtype)

            def f(values, A_b):
                return as_flat(values) @ A_b

            return A, f, lambda stacked: pad_blocks(jnp.sum(stacked, axis=0))
        t = self.tables
        nb = g.beta.size

        def f_sep(values, _):
            return analysis_slice(values.reshape(values.shape[:-1] + (na, ng)) if flat else values, t)

        return (jnp.zeros((nb, 0), dtype), f_sep, lambda stacked: analysis_finish(jnp.moveaxis(stacked, 0, -3), t))


@functools.lru_cache(maxsize=64)
def _block_index_l(L: int) -> np.ndarray:
    from .wigner import _block_index

    return _block_index(L)[0]


def slice_plan(grid_bandlimit: int, L: int, route: str = "auto") -> SlicePlan:
    """The cheaper route (``'dense'`` or ``'separable'``) for this grid and bandlimit."""
    g = so3_grid(grid_bandlimit)
    if route == "auto":
        dense = _dense_cost(g, L) <= _separable_cost(g, L) and _dense_cost(g, L) * g.beta.size <= 2e7
    else:
        dense = route == "dense"
    return SlicePlan(grid_bandlimit, L, dense)


# --------------------------------------------------------------- point rules
#
# A pool on a point rule (:class:`~eqntk.so3.quadrature.SO3Rule`) evaluates the pair function at the
# rule's points in chunks of about one β-slice, a scan over chunks like the slices above.

_RULE_CHUNK = 192  # about the points of one β-slice at the default bandlimits


@functools.lru_cache(maxsize=32)
def rule_chunks(degree: int) -> tuple[np.ndarray, np.ndarray]:
    """The rule's points and weights in equal chunks: euler ``(n_chunks, chunk, 3)``, weights ``(n_chunks, chunk)``.

    The chunk size is a multiple of 8 near ``_RULE_CHUNK``; the last chunk is padded with copies of
    the first point at weight 0.
    """
    from .quadrature import so3_rule

    rule = so3_rule(degree)
    N = rule.size
    k = max(1, math.ceil(N / _RULE_CHUNK))
    chunk = 8 * math.ceil(N / k / 8)
    pad = k * chunk - N
    euler = np.concatenate([rule.euler, np.repeat(rule.euler[:1], pad, axis=0)])
    w = np.concatenate([rule.weights, np.zeros(pad)])
    return euler.reshape(k, chunk, 3), w.reshape(k, chunk)


@functools.lru_cache(maxsize=32)
def rule_wigner(degree: int, L: int, packed: bool) -> np.ndarray:
    """Wigner-D values at the rule's points, float64, chunked as :func:`rule_chunks`.

    ``packed=True``: ``(n_chunks, Σ(2l+1)², chunk)`` in block order (l, m, n), so that packed
    blocks ``(..., Σ(2l+1)²) @ table[c]`` are the function's values on chunk ``c``;
    ``packed=False``: padded ``(n_chunks, chunk, L, 2L-1, 2L-1)``.
    """
    from .wigner import _block_index, wigner_D_padded

    euler, _ = rule_chunks(degree)
    D = wigner_D_padded(L, euler[..., 0], euler[..., 1], euler[..., 2], dtype=np.float64, xp=np)
    if not packed:
        return np.ascontiguousarray(D)
    ls, ms, ns = _block_index(L)
    return np.ascontiguousarray(np.swapaxes(D[..., ls, ms, ns], -1, -2))
