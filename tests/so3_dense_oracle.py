"""Dense G × G reference: the SO(3) GCNN kernel discretised the way a naive implementation does it.

eqntk's engine (:mod:`eqntk.so3.kernel_state`) computes the *continuum* kernel: the
pair kernel after a full-support lift is a function ψ(u) of ONE rotation
``u = g g'⁻¹`` and every nonlinearity is integrated by exact quadrature with
oversampling. A naive implementation (the paper authors' code) instead stores the
kernel of each pair of inputs on the product grid ``G × G`` of a Driscoll–Healy (DH)
grid ``G`` of SO(3), applies σ on pairs of grid points ``(g_i, g_j)`` with the
diagonal values ``K(g_i, g_i)`` as variances, and integrates with the grid's
quadrature in both arguments. This module is that discretisation, written
compactly and jit-able, for two purposes:

* to explain (and reproduce) the reference values of the authors' code, which
  differ from the continuum kernel by their aliasing (docs/mathematics.md, "SO(3)": σ(ψ) is not bandlimited);
* as the "dense-grid baseline" against which eqntk is timed: it stores
  ``|G|² = 64 b⁶`` numbers per pair of inputs.

Network: ``S2ConvSO3(L_1) → σ → [SO3ConvSO3(L_k) → σ]* → SO3Pool → Dense``, the
same W_std / b_std for every layer, NTK parameterisation (docs/mathematics.md, "Normalisation"). Layer ``k``'s
output lives on the DH grid of bandlimit ``grids[k]``:

* lift (exact at the grid points)::

      K_1(g, g') = W² / (4π C) Σ_c Σ_{l<L_1} f̂_c,lᵀ D^l(g) D^l(g')ᵀ f̂'_c,l + b²,   Θ_1 = K_1;

* σ on every pair ``(g_i, g_j)``: ``K̃ = E[σ(a)σ(b)]``, ``Θ̃ = E[σ'(a)σ'(b)] Θ`` with
  ``(a, b) ~ N(0, [[K_ff(g_i, g_i), K], [K, K_f'f'(g_j, g_j)]])``;
* group conv with a white filter of bandlimit L (covariance
  ``Δ_L(u v⁻¹)``, ``Δ_L = Σ_{l<L} (2l+1) χ_l``), both arguments integrated by the DH
  quadrature of the input grid::

      K'(g, g') = W² Σ_{k,k'} w_k w_k' Δ_L(g⁻¹ k k'⁻¹ g') K̃(k, k') + b²
                = W² Σ_{l<L} (2l+1) Σ_{a,b,d} D^l_ba(g) D^l_da(g') A^l_bd + b²,
      A^l = Σ_{k,k'} w_k w_k' K̃(k, k') D^l(k) D^l(k')ᵀ,

  ``Θ' = K' + W² conv(Θ̃)`` (conv without bias). When ``K̃(k, k') = ψ(k k'⁻¹)`` and
  the quadrature is exact this is ``W² (P_L ψ)(g g'⁻¹) + b²``, eqntk's projection
  (``Δ_L`` is the reproducing kernel of the degrees ``< L``);
* pool: ``Σ_{k,k'} w_k w_k' K(k, k')``; Dense: ``K ← W² K + b²``, ``Θ ← K + W² Θ``.

DH grid of bandlimit b (:func:`dh_so3_grid`): ``β_k = π(2k+1)/(4b)``, ``k < 2b``, with SOFT
weights ``∝ (2/b) sin β_k Σ_{p<b} sin((2p+1)β_k)/(2p+1)``; α and γ uniform. The textbook
grid (``grid_kind="soft"``) has ``2b`` values of α and γ (``8b³`` points); the paper authors'
code uses ``2b − 1`` (``grid_kind="authors"``, the default here): with it this module
reproduces all six SO(3) reference groups (NNGP and NTK, lift→σ→pool and
lift→σ→conv→σ→pool, Erf and ReLU) to ~1e-14 relative (ReLU NTK ~1e-11), while the
``2b`` grid misses them by up to 3e-3 (tests/test_so3_reference.py). Both integrate every
product of two functions of bandlimit b exactly; they differ only in their aliasing of
σ(K), which is not bandlimited.

Cost per pair: ``O(|G|² (L_1² C + L³))`` time and ``O(|G|²)`` memory — the O(L⁶)
that eqntk avoids.

API::

    net = DenseSO3Net(lift_bandlimit=3, conv_bandlimits=(3,), grids=(3, 3), nonlinearity=ErfMap())
    nngp, ntk = dense_kernel(net, x1, x2)          # (N1, N2) each; x: (N, L_in², C) coefficients
    fn = dense_kernel_fn(net, dtype=jnp.float64)  # jitted (x1, x2) -> (nngp, ntk), one lax.map over pairs
    self_fn, pair_fn = dense_pair_fns(net)          # jitted per-input / per-pair functions
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Optional

import numpy as np
import jax
import jax.numpy as jnp

from eqntk.core.pointwise import AffineMap, PointwiseMap
from eqntk.so3.harmonics import bandlimit_of
from eqntk.so3.wigner import pad, wigner_D_padded

__all__ = ["DHGrid", "dh_so3_grid", "DenseSO3Net", "dense_pair_fns", "dense_kernel_fn", "dense_kernel"]


@dataclasses.dataclass(frozen=True)
class DHGrid:
    """Driscoll–Healy SO(3) grid, flattened: ``alpha, beta, gamma, weights`` of shape ``(size,)``."""

    bandlimit: int
    alpha: np.ndarray
    beta: np.ndarray
    gamma: np.ndarray
    weights: np.ndarray

    @property
    def size(self) -> int:
        return self.weights.size


@functools.lru_cache(maxsize=32)
def dh_so3_grid(bandlimit: int, kind: str = "authors") -> DHGrid:
    """Driscoll–Healy SO(3) grid of bandlimit ``b``, SOFT weights in β (sum 1), flattened in order (α, β, γ).

    β: ``2b`` points ``π(2k+1)/(4b)``. α and γ: uniform on [0, 2π) with

    * ``kind="soft"``: ``2b`` points (the textbook DH/SOFT grid, ``8b³`` points);
    * ``kind="authors"``: ``2b − 1`` points (``2b (2b−1)²`` points) — the grid of the paper
      authors' code: with it this module reproduces their reference kernels to ~1e-14.

    Both integrate every product of two functions of bandlimit ``b`` exactly.
    """
    b = int(bandlimit)
    if b != bandlimit or b < 1:
        raise ValueError(f"DH grid bandlimit must be a positive integer, got {bandlimit!r}")
    if kind not in ("soft", "authors"):
        raise ValueError(f"unknown DH grid kind {kind!r}; use 'soft' or 'authors'")
    n = 2 * b
    na = n if kind == "soft" else n - 1
    ang = 2 * np.pi * np.arange(na) / na
    beta = np.pi * (2 * np.arange(n) + 1) / (4 * b)
    p = np.arange(b)
    wb = (2.0 / b) * np.sin(beta) * np.sum(np.sin((2 * p[None] + 1) * beta[:, None]) / (2 * p[None] + 1), axis=1)
    a, bb, g = np.meshgrid(ang, beta, ang, indexing="ij")
    w = np.broadcast_to(wb[None, :, None], a.shape)
    w = w / w.sum()
    return DHGrid(b, a.ravel(), bb.ravel(), g.ravel(), w.ravel().copy())


@dataclasses.dataclass(frozen=True)
class DenseSO3Net:
    """``S2ConvSO3(lift_bandlimit) → σ → [SO3ConvSO3(L) → σ for L in conv_bandlimits] → SO3Pool → Dense``.

    Attributes:
        lift_bandlimit: ``L_1``, the lift filter's bandlimit (≤ the inputs' bandlimit).
        conv_bandlimits: bandlimits of the group convolutions' filters.
        grids: DH bandlimit of the SO(3) grid of each layer's output (where σ, the next
            conv's quadrature and the pooling are evaluated): ``1 + len(conv_bandlimits)`` entries.
        nonlinearity: a :class:`~eqntk.core.pointwise.PointwiseMap` (``ReluMap()``, ``ErfMap()``, …).
        W_std, b_std: of every layer (lift, convs, final Dense).
        readout: apply the final Dense layer.
        grid_kind: ``"authors"`` (α, γ on ``2b − 1`` points: the paper authors' grid, reproduces
            their reference values) or ``"soft"`` (``2b`` points); see :func:`dh_so3_grid`.
    """

    lift_bandlimit: int
    grids: tuple
    conv_bandlimits: tuple = ()
    nonlinearity: PointwiseMap = None
    W_std: float = 1.0
    b_std: Optional[float] = None
    readout: bool = True
    grid_kind: str = "authors"

    def __post_init__(self):
        object.__setattr__(self, "grids", tuple(int(b) for b in self.grids))
        object.__setattr__(self, "conv_bandlimits", tuple(int(L) for L in self.conv_bandlimits))
        if len(self.grids) != 1 + len(self.conv_bandlimits):
            raise ValueError(f"DenseSO3Net: need {1 + len(self.conv_bandlimits)} grid bandlimits "
                             f"(lift output + one per conv), got {self.grids}")
        if self.nonlinearity is None:
            raise ValueError("DenseSO3Net: give a nonlinearity (a PointwiseMap, e.g. ReluMap())")


_wigner_D_jit = jax.jit(wigner_D_padded, static_argnums=(0, 4))


def _tables(net: DenseSO3Net, dtype):
    """Per-grid weights and Wigner-D matrices at the grid points (padded layout)."""
    grids = [dh_so3_grid(b, net.grid_kind) for b in net.grids]

    def D(grid, L):  # (N, L, P, P)
        return _wigner_D_jit(L, jnp.asarray(grid.alpha, dtype), jnp.asarray(grid.beta, dtype),
                             jnp.asarray(grid.gamma, dtype), dtype)

    w = [jnp.asarray(g.weights, dtype) for g in grids]
    D_lift = D(grids[0], net.lift_bandlimit)
    D_conv = [(D(grids[k], L), D(grids[k + 1], L)) for k, L in enumerate(net.conv_bandlimits)]
    return w, D_lift, D_conv


def _lift(net, D, f1, f2, C):
    """``K_1`` on the grid: features ``F(g) = D(g)ᵀ f̂`` per degree, ``K = scale F_1 F_2ᵀ + b²``."""
    b2 = 0.0 if net.b_std is None else net.b_std**2
    scale = net.W_std**2 / (4 * np.pi * C)
    F1 = jnp.einsum("glba,lbc->glac", D, f1).reshape(D.shape[0], -1)
    F2 = jnp.einsum("glba,lbc->glac", D, f2).reshape(D.shape[0], -1)
    return scale * (F1 @ F2.T) + b2


def _conv(K, D_in, w_in, D_out, W2, b2):
    """``W² Σ_{k,k'} w w Δ_L(g⁻¹ k k'⁻¹ g') K(k, k') + b²`` via the Fourier blocks ``A^l``."""
    n_in, L, P, _ = D_in.shape
    Dw = w_in[:, None, None, None] * D_in
    M = (K @ Dw.reshape(n_in, -1)).reshape(n_in, L, P, P)  # Σ_k' K(k,k') w_k' D_dc(k')
    A = jnp.einsum("klbc,kldc->lbd", Dw, M)
    A = A * (2 * jnp.arange(L, dtype=K.dtype) + 1)[:, None, None]
    B = jnp.einsum("glba,lbd->glad", D_out, A)
    n_out = D_out.shape[0]
    return W2 * (B.reshape(n_out, -1) @ jnp.swapaxes(D_out, -1, -2).reshape(n_out, -1).T) + b2


def _forward(net, tables, f1, f2, diags1, diags2, with_ntk):
    """One pair. ``diags*``: per-layer diagonal vectors of the self kernels, or ``None`` (self pair:
    use this pair's own diagonal). Returns ``(nngp, ntk, diags)``."""
    w, D_lift, D_conv = tables
    C = f1.shape[-1]
    W2 = net.W_std**2
    b2 = 0.0 if net.b_std is None else net.b_std**2
    sigma = net.nonlinearity
    K = _lift(net, D_lift, f1, f2, C)
    T = K if with_ntk else None
    used = []
    for k in range(len(net.grids)):
        d1 = jnp.diagonal(K) if diags1 is None else diags1[k]
        d2 = jnp.diagonal(K) if diags2 is None else diags2[k]
        used.append(d1)
        K, T = sigma.kernel(K, T, d1[:, None], d2[None, :])
        if k < len(net.conv_bandlimits):
            D_in, D_out = D_conv[k]
            K_new = _conv(K, D_in, w[k], D_out, W2, b2)
            T = (K_new + _conv(T, D_in, w[k], D_out, W2, 0.0)) if with_ntk else None
            K = K_new
    wl = w[-1]
    nngp = wl @ K @ wl
    ntk = (wl @ T @ wl) if with_ntk else None
    if net.readout:
        nngp, ntk = AffineMap(net.W_std, net.b_std).kernel(nngp, ntk, None, None)
    return nngp, ntk, tuple(used)


def _prep(net, x, dtype):
    x = jnp.asarray(x, dtype)
    L_in = bandlimit_of(x.shape[-2])
    L = net.lift_bandlimit
    if L > L_in:  # a filter of higher bandlimit sees only the input's degrees
        x = jnp.concatenate([x, jnp.zeros(x.shape[:-2] + (L * L - L_in * L_in, x.shape[-1]), dtype)], axis=-2)
    return pad(x[..., : L * L, :])  # (..., L, P, C)


def dense_pair_fns(net: DenseSO3Net, dtype=jnp.float64, with_ntk: bool = True):
    """Jitted ``(self_fn, pair_fn)`` on single inputs of shape ``(L_in², C)``.

    ``self_fn(x) -> diags`` (tuple of per-layer diagonal vectors of ``K_xx`` on the grids);
    ``pair_fn(x1, x2, diags1, diags2) -> (nngp, ntk)`` (scalars; ntk None unless ``with_ntk``).
    The grid tables are arguments of the compiled functions, not constants baked into them.
    """
    tables = _tables(net, dtype)
    self_j = jax.jit(lambda tab, x: _forward(net, tab, *(2 * (_prep(net, x, dtype),)), None, None, False)[2])
    pair_j = jax.jit(lambda tab, x1, x2, d1, d2: _forward(net, tab, _prep(net, x1, dtype), _prep(net, x2, dtype),
                                                        d1, d2, with_ntk)[:2])
    return (lambda x: self_j(tables, x)), (lambda x1, x2, d1, d2: pair_j(tables, x1, x2, d1, d2))


def _gram(net, dtype, with_ntk, symmetric, tables, x1, x2):
    f1 = _prep(net, x1, dtype)
    f2 = f1 if symmetric else _prep(net, x2, dtype)

    def selfd(f):
        return _forward(net, tables, f, f, None, None, False)[2]

    d1 = jax.lax.map(selfd, f1)
    d2 = d1 if symmetric else jax.lax.map(selfd, f2)
    n1, n2 = f1.shape[0], f2.shape[0]
    if symmetric:
        i, j = np.triu_indices(n1)
    else:
        i, j = (a.ravel() for a in np.meshgrid(np.arange(n1), np.arange(n2), indexing="ij"))

    def one(ij):
        a, b = ij
        da = jax.tree_util.tree_map(lambda v: v[a], d1)
        db = jax.tree_util.tree_map(lambda v: v[b], d2)
        n, t, _ = _forward(net, tables, f1[a], f2[b], da, db, with_ntk)
        return n, (t if with_ntk else jnp.zeros_like(n))

    n, t = jax.lax.map(one, (jnp.asarray(i), jnp.asarray(j)))
    N = jnp.zeros((n1, n2), n.dtype).at[i, j].set(n)
    T = jnp.zeros((n1, n2), n.dtype).at[i, j].set(t)
    if symmetric:  # mirror the upper triangle
        N = N + jnp.triu(N, 1).T
        T = T + jnp.triu(T, 1).T
    return N, (T if with_ntk else None)


def dense_kernel_fn(net: DenseSO3Net, dtype=jnp.float64, with_ntk: bool = True):
    """Jitted ``kernel_fn(x1, x2=None) -> (nngp, ntk)``, Gram matrices ``(N1, N2)``.

    Pairs run one after the other (``lax.map``) inside one compiled program, so the working
    memory is that of one pair (a few ``|G|²`` arrays). With ``x2=None`` only the pairs
    ``i ≤ j`` of ``x1`` are computed. Inputs: coefficients ``(N, L_in², C)``.
    """
    tables = _tables(net, dtype)
    jitted = jax.jit(functools.partial(_gram, net, dtype, with_ntk), static_argnums=0)

    def kernel_fn(x1, x2=None):
        x1 = jnp.asarray(x1, dtype)
        if x2 is None:
            return jitted(True, tables, x1, x1)
        return jitted(False, tables, x1, jnp.asarray(x2, dtype))

    return kernel_fn


def dense_kernel(net: DenseSO3Net, x1, x2=None, dtype=jnp.float64, with_ntk: bool = True):
    """NNGP and NTK Gram matrices ``(N1, N2)`` (NumPy) of the dense discretised network."""
    n, t = dense_kernel_fn(net, dtype, with_ntk)(x1, x2)
    return np.asarray(n), (None if t is None else np.asarray(t))
