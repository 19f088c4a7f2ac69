"""Energy–force blocks of pooled SO(3) kernels, differentiated on the Fourier side.

For a network ``S2ConvSO3 → pointwise maps → SO3Pool → affine readout`` (:func:`pooled_lift` reads it
from a ``kernel_fn``) the kernel of two atomic environments ``x, x'`` (spherical-harmonic coefficients
``(L², C)``) is a quadrature over SO(3),

    κ(x, x') = Σ_g w_g Ψ(B(g), q, q'),   B(g) = s Σ_{l<L} Σ_c x_lᵀ D^l(g) x'_l + b²,
    q = s |x|² + b²,   q' = s |x'|² + b²,   s = W² / (4π C),

with ``Ψ`` the NNGP or NTK of the pointwise maps and the readout applied to the lift's value ``B``
and variances ``q, q'`` (the readout is affine, so it commutes with the mean over SO(3)).
``B(g) = Σ_e M_e D_e(g)`` is linear in the ``N_L = Σ_{l<L} (2l+1)²`` products ``M = s vec_l(x_l x'_lᵀ)``,
and ``D^l(g) ⊗ D^l'(g)`` is linear in the Wigner functions of degree ``< 2L − 1``
(``vec(D Dᵀ) = T D₂``, Clebsch–Gordan). So every derivative of ``κ`` in ``(x, x')`` up to second
order is a contraction of the tangents of ``x`` and ``x'`` with a few Fourier coefficients of
pointwise derivatives of ``Ψ``:

    A_X = Σ_g w_g Ψ_X(g) D(g)  (degree < L; X = B, Bq', qB),   Φ = T (Σ_g w_g Ψ_BB(g) D₂(g)),

plus the plain sums of ``Ψ, Ψ_q, Ψ_q', Ψ_qq'``. :func:`energy_force_tile` uses this to give the same
blocks as differentiating the kernel with ``jax.jacfwd(jax.grad(...))`` (``eqntk.forces``), which
pushes every tangent of the positions through every quadrature point, at a fraction of the cost:
each pointwise derivative is analysed once per atom pair (``ΨBB`` up to degree ``2L − 2``), and the
``3n`` tangents of each conformation meet only ``N_L`` coefficients. The quadrature (grid or
point rule) is the one ``SO3Pool`` itself uses, so the two agree to rounding (tests/test_forces.py).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, Optional

import numpy as np
import jax
import jax.numpy as jnp

from ..core.checks import check_int, check_kind
from ..core.pointwise import AffineMap, PointwiseMap
from .kernel_state import pool_points
from .quadrature import SO3Rule, so3_grid
from .transform import from_grid, to_grid
from .wigner import _block_index, num_block_coeffs, pad_blocks, unpad_blocks, wigner_D_padded

__all__ = ["PooledLift", "pooled_lift", "energy_force_tile"]


@dataclasses.dataclass(frozen=True)
class PooledLift:
    """The structure of a ``S2ConvSO3 → maps → SO3Pool → affine readout`` network's kernel.

    Attributes:
        L: the lift's bandlimit; W_std, b_std: the lift's weight and bias scales.
        maps: the pointwise maps between the lift and the pool (nonlinearities, 1×1 layers).
        oversampling, rule: the pool's quadrature settings (``SO3Pool(oversampling, rule)``).
        readout: the ``Dense`` layers after the pool (affine maps, which commute with the mean).
    """

    L: int
    W_std: float
    b_std: Optional[float]
    maps: tuple
    oversampling: float
    rule: bool
    readout: tuple

    def psi(self, get: str) -> Callable:
        """``Ψ(B, q, q')``: the kernel ``get`` of the maps and readout at lift value ``B`` and variances ``q, q'``."""
        check_kind("PooledLift.psi", get)

        def f(B, q1, q2):
            n, t, v1, v2 = B, B, q1, q2  # the lift's NTK equals its NNGP
            for m in self.maps + self.readout:
                (n, t), v1, v2 = m.kernel(n, t, v1, v2), m.var(v1), m.var(v2)
            return n if get == "nngp" else t

        return f

    def quadrature(self):
        """``(grid, euler (G, 3), weights (G,))``: the pool's points, as ``SO3Pool`` chooses them
        (:func:`~eqntk.so3.kernel_state.pool_points`); ``grid``: the product grid, or ``None`` for a point rule."""
        points = pool_points(self.L, self.maps, self.oversampling, self.rule)
        if isinstance(points, SO3Rule):
            return None, np.asarray(points.euler), np.asarray(points.weights)
        a, b, c = points.euler_angles()
        return points, np.stack([a.ravel(), b.ravel(), c.ravel()], -1), points.weights().ravel()


def _layers(spec) -> list:
    """The flat list of layer specs of a (nested) ``serial`` spec."""
    if isinstance(spec, tuple) and len(spec) == 2 and spec[0] == "serial":
        return [s for part in spec[1] for s in _layers(part)]
    return [spec]


def pooled_lift(kernel_fn) -> Optional[PooledLift]:
    """The :class:`PooledLift` structure of ``kernel_fn``, or ``None`` when it is not such a network.

    Recognised: ``S2ConvSO3`` first; then any pointwise layers (nonlinearities given as maps, ``Dense``);
    then ``SO3Pool``; then only ``Dense`` layers. ``Elementwise`` layers given by a name (whose map the spec
    does not hold), a ``LayerNorm`` or nonlinearity after the pool (they act on the pooled kernel and its
    pooled self-variances, not point by point) and anything else give ``None``.
    """
    spec = getattr(kernel_fn, "spec", None)
    if spec is None:
        return None
    layers = _layers(spec)
    if not layers or not (isinstance(layers[0], tuple) and layers[0][0] == "S2ConvSO3"):
        return None
    _, _, L, W_std, b_std = layers[0]
    maps, readout, pool = [], [], None
    for s in layers[1:]:
        if not isinstance(s, tuple) or not s:
            return None
        kind = s[0]
        m = s[-1] if kind in ("pointwise", "Dense") else None
        if kind == "SO3Pool" and pool is None:
            pool = s
        elif m is not None and isinstance(m, PointwiseMap) and pool is None:
            maps.append(m)
        elif kind == "Dense" and isinstance(m, AffineMap) and pool is not None:
            readout.append(m)
        else:
            return None
    if pool is None:
        return None
    return PooledLift(int(L), float(W_std), b_std, tuple(maps), float(pool[1]), pool[2] == "rule", tuple(readout))


# ----------------------------------------------------------------------------- Wigner tables


def _packed_wigner(L: int, euler: np.ndarray) -> np.ndarray:
    """``(G, N_L)`` packed real Wigner entries ``D^l_mn`` (order l, m, n) at Euler angles ``(G, 3)``."""
    D = wigner_D_padded(L, euler[:, 0], euler[:, 1], euler[:, 2], xp=np)
    return np.asarray(unpad_blocks(D))


@functools.lru_cache(maxsize=8)
def _clebsch_gordan_factors(L: int) -> dict:
    """Per degree pair ``(l1, l2)``: ``(Q1 (k1, k2, K), Q2 (k1, k2, K), blocks)`` with
    ``Φ^{l1 l2}[(m1 n1), (m2 n2)] = Σ_J Σ_{M, N ∈ J} Q1[m1, m2, M] A_J[M, N] Q2[n1, n2, N]`` for ``Φ = T A``
    (``A`` packed to degree ``2L − 2``); ``blocks``: per output degree ``J``, ``(o, K_J, a)``: its indices
    ``M, N`` run over ``o .. o + K_J`` and ``A_J = A[a : a + K_J²]`` as a ``(K_J, K_J)`` matrix.

    ``T`` (``vec(D^{l1} ⊗ D^{l2}) = T D₂``) is projected on a product grid exact to degree ``4L − 4``;
    its block of each output degree ``J`` is rank one in ``((m1 m2 M), (n1 n2 N))`` (a real
    Clebsch–Gordan coefficient in each index triple), and the factors come from its SVD.
    """
    L2 = 2 * L - 1
    N, N2 = num_block_coeffs(L), num_block_coeffs(L2)
    grid = so3_grid(L2)  # exact to degree 2 L2 - 2 = 4L - 4
    a, b, c = grid.euler_angles()
    D2 = _packed_wigner(L2, np.stack([a.ravel(), b.ravel(), c.ravel()], -1))
    w = grid.weights().ravel()
    ls = _block_index(L2)[0]  # the degree of each packed entry
    D = D2[:, :N]
    T = ((D[:, :, None] * D[:, None, :]).reshape(D.shape[0], -1) * w[:, None]).T @ D2 * (2 * ls + 1)
    T = T.reshape(N, N, N2)
    offs = [num_block_coeffs(l) for l in range(L + 1)]  # where degree l starts in the packed order
    offs2 = [num_block_coeffs(l) for l in range(L2 + 1)]
    out = {}
    for l1 in range(L):
        for l2 in range(L):
            k1, k2 = 2 * l1 + 1, 2 * l2 + 1
            Tb = T[offs[l1]:offs[l1 + 1], offs[l2]:offs[l2 + 1]].reshape(k1, k1, k2, k2, N2)
            Q1s, Q2s, blocks = [], [], []
            o = 0
            for J in range(abs(l1 - l2), l1 + l2 + 1):
                K = 2 * J + 1
                TJ = Tb[..., offs2[J]:offs2[J + 1]].reshape(k1, k1, k2, k2, K, K)
                u, sv, vt = np.linalg.svd(TJ.transpose(0, 2, 4, 1, 3, 5).reshape(k1 * k2 * K, -1))
                if sv.size > 1 and sv[1] > 1e-8 * sv[0]:  # the identity above would not hold
                    raise AssertionError(f"Clebsch-Gordan block ({l1}, {l2}, {J}) is not rank one: {sv[:2]}")
                Q1s.append((u[:, 0] * np.sqrt(sv[0])).reshape(k1, k2, K))
                Q2s.append((vt[0] * np.sqrt(sv[0])).reshape(k1, k2, K))
                blocks.append((o, K, offs2[J]))
                o += K
            out[l1, l2] = (np.concatenate(Q1s, -1), np.concatenate(Q2s, -1), tuple(blocks))
    return out


def _phi(A2, L: int):
    """``Φ = T A₂``: ``(..., N₂) → (..., N_L, N_L)``, from the Clebsch–Gordan factors (block by degree pair).

    Per degree pair, ``A`` is block diagonal in the output degree ``J``: the first product runs block by block
    (``k1 k2 Σ_J K_J²`` multiply-adds instead of ``(k1 k2)³``), the second over all ``M`` at once."""
    factors = _clebsch_gordan_factors(L)
    rows = []
    for l1 in range(L):
        row = []
        for l2 in range(L):
            Q1, Q2, blocks = factors[l1, l2]
            k1, k2 = Q1.shape[:2]
            X = jnp.concatenate([jnp.einsum("...MN,uvN->...Muv", A2[..., a:a + K * K].reshape(A2.shape[:-1] + (K, K)),
                                            jnp.asarray(Q2[..., o:o + K], A2.dtype)) for o, K, a in blocks], axis=-3)
            P = jnp.einsum("xyM,...Muv->...xuyv", jnp.asarray(Q1, A2.dtype), X)  # (.., m1, n1, m2, n2)
            row.append(P.reshape(P.shape[:-4] + (k1 * k1, k2 * k2)))
        rows.append(jnp.concatenate(row, axis=-1))
    return jnp.concatenate(rows, axis=-2)


# ----------------------------------------------------------------------------- the tile


_DERIVATIVES = {"psi": (), "q": (1,), "qp": (2,), "qqp": (1, 2), "B": (0,), "Bqp": (0, 2), "qB": (1, 0),
                "BB": (0, 0)}


def _pointwise_derivatives(psi: Callable) -> Callable:
    """``(B, q, q') → {name: array}``: Ψ and the partial derivatives the blocks need, elementwise.

    One function (nested forward-mode derivatives of the elementwise ``Ψ``), so that the compiled
    program evaluates the shared subexpressions once per point for all eight."""

    def partial(f, i):
        def g(*a):
            return jax.jvp(f, a, tuple(jnp.ones_like(x) if k == i else jnp.zeros_like(x) for k, x in enumerate(a)))[1]

        return g

    def derivatives(B, q1, q2):
        q1, q2 = jnp.broadcast_to(q1, B.shape), jnp.broadcast_to(q2, B.shape)
        out = {}
        for name, args in _DERIVATIVES.items():
            f = psi
            for a in args:
                f = partial(f, a)
            out[name] = f(B, q1, q2)
        return out

    return derivatives


def _separable(grid, Lb: int) -> bool:
    """Whether bandlimit-``Lb`` functions go through the separable transforms of ``grid`` (a product grid fine
    enough), or through dense products with the Wigner table of the points (a point rule, or a coarse grid)."""
    return grid is not None and grid.bandlimit >= Lb


def _lift_values(M, grid, D, L: int):
    """The lift values ``B(g) = Σ_e M_e D_e(g)`` on the pool's points: ``M (P, N_L) → (P, G)``, ``D (G, N_L)`` the
    packed Wigner entries at the points. On a product grid by the separable synthesis (at L = 6, 35,301 points:
    10x faster than the dense product, equal to rounding)."""
    if not _separable(grid, L):
        return M @ D.T
    return to_grid(pad_blocks(M), grid.bandlimit).reshape(M.shape[0], -1)


def _analyse(vals, grid, Lb: int, D2, w):
    """``Σ_g w_g vals_g D_e(g)`` for the packed entries ``e`` of degree ``< Lb``: ``(P, G) → (P, N_Lb)``; ``D2 (G, ≥ N_Lb)``
    the packed Wigner entries at the points, ``w (G,)`` their weights."""
    n = num_block_coeffs(Lb)
    if not _separable(grid, Lb):
        return (vals * w) @ D2[:, :n]
    A = unpad_blocks(from_grid(vals.reshape(vals.shape[:-1] + grid.shape), grid.bandlimit, Lb))
    return A * jnp.asarray(1.0 / (2 * _block_index(Lb)[0] + 1), vals.dtype)  # from_grid gives (2l+1) Σ w f D


#: atom pairs whose values on the quadrature points are held at once (``chunk · G`` numbers per derivative):
#: evaluating and analysing the pointwise derivatives chunk by chunk keeps them in cache; the NTK tile of the
#: ``eqntk qm9`` network took 10.3 instead of 15.9 ms per conformation pair (8,125 points, ethanol, 2-core CPU)
PAIR_CHUNK = 16


def energy_force_tile(chain: PooledLift, Z, environment: Callable, get: str = "ntk",
                      pair_chunk: int = PAIR_CHUNK) -> Callable:
    """The jitted ``(R1 (b1, n, 3), R2 (b2, n, 3)) → (ee (b1, b2), ef (b1, b2, 3n), fe (b1, b2, 3n),
    ff (b1, b2, 3n, 3n))`` blocks of the same-element conformation kernel
    ``k(R, R') = Σ_{i, j: Z_i = Z_j} κ(x_i(R), x_j(R'))`` (``x = environment(R)``, ``(n, L_in², C)``):
    ``ee = k``, ``ef = −∂k/∂R'``, ``fe = −∂k/∂R``, ``ff = ∂²k/∂R∂R'`` (layout of
    ``eqntk.forces.energy_force_kernel``, vmapped over both conformation sets).

    Memory: per same-element atom pair of the tile, ``Φ`` (``N_L²`` numbers) and the tangents ``p``, ``p Φ``
    (``3n · N_L`` each); the pointwise derivatives on the quadrature points of ``pair_chunk`` pairs at a time
    (:data:`PAIR_CHUNK`; as many as the tile has: no loop, e.g. for XLA's flop count, which counts a loop body once).
    """
    check_kind("energy_force_tile", get)
    pair_chunk = check_int("energy_force_tile", "pair_chunk", pair_chunk)
    Z = np.asarray(Z)
    groups = [np.nonzero(Z == e)[0] for e in np.unique(Z)]
    L = chain.L
    L2 = 2 * L - 1
    N, N2 = num_block_coeffs(L), num_block_coeffs(L2)
    grid, euler, weights = chain.quadrature()
    D2 = _packed_wigner(L2, euler)  # (G, N2)
    der = _pointwise_derivatives(chain.psi(get))
    b2 = 0.0 if chain.b_std is None else chain.b_std**2
    slices = [slice(l * l, (l + 1) ** 2) for l in range(L)]
    offs = [num_block_coeffs(l) for l in range(L + 1)]

    def tile(R1, R2):
        dtype = R1.dtype
        D2j = jnp.asarray(D2, dtype)
        Dj = D2j[:, :N]
        w = jnp.asarray(weights, dtype)

        def per_conf(R):
            def x_of(r):
                x = environment(r)[:, :L * L]
                return x, x

            xd, x = jax.jacfwd(x_of, has_aux=True)(R)  # (n, L², C, n, 3), and x itself from the same pass
            return x, jnp.moveaxis(xd.reshape(xd.shape[:3] + (-1,)), -1, 1)  # (n, L², C), (n, 3n, L², C)

        X1, Xd1 = jax.vmap(per_conf)(R1)
        X2, Xd2 = jax.vmap(per_conf)(R2)
        s = chain.W_std**2 / (4 * np.pi * X1.shape[-1])
        G = [(X1[:, g], Xd1[:, g], X2[:, g], Xd2[:, g]) for g in groups]
        # lift values on the points, all same-element atom pairs at once
        Ms = [s * jnp.concatenate([jnp.einsum("Iimc,Jjnc->IiJjmn", x1[..., sl, :], x2[..., sl, :]).reshape(
            x1.shape[:2] + x2.shape[:2] + (-1,)) for sl in slices], axis=-1) for x1, _, x2, _ in G]
        q1 = [s * jnp.sum(x1**2, axis=(-2, -1)) + b2 for x1, _, _, _ in G]
        q2 = [s * jnp.sum(x2**2, axis=(-2, -1)) + b2 for _, _, x2, _ in G]
        Q1 = jnp.concatenate([jnp.broadcast_to(a[:, :, None, None], M.shape[:-1]).reshape(-1) for a, M in zip(q1, Ms)])
        Q2 = jnp.concatenate([jnp.broadcast_to(a[None, None], M.shape[:-1]).reshape(-1) for a, M in zip(q2, Ms)])
        M_all = jnp.concatenate([M.reshape(-1, N) for M in Ms])  # (pairs, N_L)
        n_pairs = M_all.shape[0]
        n_chunks = -(-n_pairs // pair_chunk)

        def chunked(a):  # (pairs, ...) -> (n_chunks, pair_chunk, ...), padded with copies of the last pair
            a = jnp.concatenate([a, jnp.repeat(a[-1:], n_chunks * pair_chunk - n_pairs, axis=0)])
            return a.reshape((n_chunks, pair_chunk) + a.shape[1:])

        def per_chunk(args):
            """Lift values → pointwise derivatives → their sums and Wigner coefficients, for one chunk of pairs."""
            M, q1c, q2c = args
            v = der(_lift_values(M, grid, Dj, L) + b2, q1c[:, None], q2c[:, None])  # (chunk, G) each
            sums = jnp.stack([v[k] @ w for k in ("psi", "q", "qp", "qqp")])
            A1 = _analyse(jnp.concatenate([v[k] for k in ("B", "Bqp", "qB")]), grid, L, D2j, w).reshape(3, -1, N)
            return sums, A1, _analyse(v["BB"], grid, L2, D2j, w)

        sums, A1, A2 = jax.lax.map(per_chunk, (chunked(M_all), chunked(Q1), chunked(Q2)))
        unchunk = lambda a: jnp.moveaxis(a, 1, 0).reshape(a.shape[1], -1, *a.shape[3:])[:, :n_pairs]  # noqa: E731
        sums = dict(zip(("psi", "q", "qp", "qqp"), unchunk(sums)))
        AB, ABqp, AqB = unchunk(A1)
        Phi = _phi(A2.reshape(-1, N2)[:n_pairs], L)
        ee = ef = fe = ff = 0.0
        cuts = np.cumsum([0] + [int(np.prod(M.shape[:-1])) for M in Ms])
        for gi, (x1, xd1, x2, xd2) in enumerate(G):
            sh = Ms[gi].shape[:-1]  # (b1, atoms, b2, atoms)
            cut = lambda a: a[cuts[gi]:cuts[gi + 1]].reshape(sh + a.shape[1:])  # noqa: E731
            sP, sq, sqp, sqq = (cut(sums[k]) for k in ("psi", "q", "qp", "qqp"))
            aB, aBqp, aqB, phi = cut(AB), cut(ABqp), cut(AqB), cut(Phi)
            qd1 = 2 * s * jnp.einsum("Iilc,Iialc->Iia", x1, xd1)  # ∂q/∂R (tangent a)
            qd2 = 2 * s * jnp.einsum("Jjlc,Jjblc->Jjb", x2, xd2)
            p = s * jnp.concatenate([jnp.einsum("Iiamc,Jjnc->IiJjamn", xd1[..., sl, :], x2[..., sl, :]).reshape(
                sh + (xd1.shape[2], -1)) for sl in slices], axis=-1)  # ∂M/∂R (tangent a), (b1, i, b2, j, 3n, N)
            ee = ee + jnp.einsum("IiJj->IJ", sP)
            fe = fe - jnp.einsum("IiJjae,IiJje->IJa", p, aB) - jnp.einsum("Iia,IiJj->IJa", qd1, sq)
            ef = ef - jnp.einsum("Jjb,IiJj->IJb", qd2, sqp)
            # what multiplies x ⊗ ∂x'_b (summed over m, c) for tangent a: p_a Φ + ∂q_a A_qB; A_B as row 3n (ef)
            U = jnp.einsum("IiJjae,IiJjef->IiJjaf", p, phi) + qd1[:, :, None, None, :, None] * aqB[..., None, :]
            U = jnp.concatenate([U, aB[..., None, :]], axis=-2)  # (b1, i, b2, j, 3n + 1, N_L)
            t = jnp.einsum("IiJja,Jjb->IJab", jnp.einsum("IiJjae,IiJje->IiJja", p, aBqp), qd2)
            t = t + jnp.einsum("Iia,Jjb,IiJj->IJab", qd1, qd2, sqq)
            for l, sl in enumerate(slices):
                k, o = 2 * l + 1, slice(offs[l], offs[l + 1])
                x1l, xd1l, xd2l = x1[..., sl, :], xd1[..., sl, :], xd2[..., sl, :]
                # (p_a Φ + ∂q_a A_qB) x + A_B ∂x_a: the sum over atoms i first; then with ∂x'_b
                V = jnp.einsum("IiJjamn,Iimc->IJjanc", U[..., o].reshape(sh + (-1, k, k)), x1l)
                Y = jnp.einsum("Iiamc,IiJjmn->IJjanc", xd1l, aB[..., o].reshape(sh + (k, k)))
                V = V + jnp.concatenate([Y, jnp.zeros_like(Y[:, :, :, :1])], axis=3)
                out = s * jnp.einsum("IJjanc,Jjbnc->IJab", V, xd2l)
                t, ef = t + out[:, :, :-1], ef - out[:, :, -1]
            ff = ff + t
        return ee, ef, fe, ff

    return jax.jit(tile)
