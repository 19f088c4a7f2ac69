"""Real Wigner-D matrices of SO(3), for any degree, in eqntk's harmonic basis.

``D^l(R)`` is the (2l+1)×(2l+1) orthogonal matrix with ``Y_l(R x) = D^l(R) Y_l(x)``
for eqntk's real harmonics (see :mod:`eqntk.so3.harmonics`). It is a
homomorphism, ``D(R1 R2) = D(R1) D(R2)``, and rotating a function,
``(R·f)(x) = f(R⁻¹ x)``, maps its coefficients ``f̂_l ↦ D^l(R) f̂_l``.

Euler angles are z-y-z: ``R = R_z(α) R_y(β) R_z(γ)``; then

    D^l(α, β, γ) = Z_l(α) J_l Z_l(β) J_lᵀ Z_l(γ),

where ``Z_l`` (rotation about the pole) is a sparse cos/sin mixing of the
orders ±m, and ``J_l = D^l(R_x(-π/2))`` is a fixed matrix computed once per
degree by exact quadrature on S² (stable for every degree). Only the β factor
is dense: this is the tensor-grid structure the transforms use.

Coefficient layout used across :mod:`eqntk.so3`: *padded* per-degree arrays,
the order axis has ``2L - 1`` entries for ``m = -(L-1)..L-1`` (index ``m + L - 1``),
entries with ``|m| > l`` are zero. :func:`pad` / :func:`unpad` convert from/to the
flat input layout ``l² + l + m``.
"""

from __future__ import annotations

import functools

import numpy as np
import jax
import jax.numpy as jnp

from .harmonics import gauss_legendre_s2_grid, real_sph_harm_angles

__all__ = [
    "J_matrices",
    "z_rotation_factors",
    "wigner_d_beta",
    "wigner_D",
    "wigner_D_padded",
    "pad",
    "unpad",
    "pad_blocks",
    "unpad_blocks",
    "euler_from_matrix",
    "matrix_from_euler",
    "random_rotation",
    "rotate_coeffs",
]


# --------------------------------------------------------------------------- J


@functools.lru_cache(maxsize=16)
def _J_numpy(bandlimit: int) -> np.ndarray:
    """``J_l = D^l(R_x(-π/2))`` for ``l < L``, padded: ``(L, 2L-1, 2L-1)`` float64.

    Computed by projection, ``D(Q)_{mm'} = ∫ Y_lm(Q x) Y_lm'(x) dΩ``, with a
    Gauss–Legendre grid that is exact for the degree-2l integrand.
    """
    L = bandlimit
    grid = gauss_legendre_s2_grid(L)
    x = grid.points()  # (nt, np, 3)
    Y = real_sph_harm_angles(L, grid.theta[:, None], grid.phi[None, :])
    # Q = R_x(-π/2): (x, y, z) -> (x, z, -y)
    qx = np.stack([x[..., 0], x[..., 2], -x[..., 1]], axis=-1)
    theta = np.arccos(np.clip(qx[..., 2], -1, 1))
    phi = np.arctan2(qx[..., 1], qx[..., 0])
    YQ = real_sph_harm_angles(L, theta, phi)
    w = grid.weights[:, None]
    out = np.zeros((L, 2 * L - 1, 2 * L - 1))
    for l in range(L):
        s = slice(l * l, (l + 1) ** 2)
        D = np.einsum("tpm,tpn,tp->mn", YQ[..., s], Y[..., s], np.broadcast_to(w, Y.shape[:2]))
        out[l, L - 1 - l : L + l, L - 1 - l : L + l] = D
    return out


def J_matrices(bandlimit: int) -> np.ndarray:
    """Padded ``J_l = D^l(R_x(-π/2))`` for ``l < L``: array ``(L, 2L-1, 2L-1)`` (float64, NumPy)."""
    if int(bandlimit) != bandlimit or bandlimit < 1:
        raise ValueError(f"bandlimit must be a positive integer, got {bandlimit!r}")
    return _J_numpy(int(bandlimit))


# ---------------------------------------------------------------- z rotations


def z_rotation_factors(bandlimit: int, angle, xp=jnp):
    """Factors of ``Z(angle) = D(R_z(angle))`` on the padded order axis.

    ``(Z v)_m = cos(|m| a) v_m + s_m v_{-m}`` with ``s_m = -sign(m) sin(|m| a)``.

    Args:
        bandlimit: ``L``.
        angle: array of shape ``S``.

    Returns:
        ``(c, s)``, each of shape ``S + (2L - 1,)``.
    """
    m = xp.arange(-(bandlimit - 1), bandlimit)
    a = xp.asarray(angle)[..., None]
    c = xp.cos(xp.abs(m) * a)
    s = -xp.sign(m) * xp.sin(xp.abs(m) * a)
    return c, s


def wigner_d_beta(bandlimit: int, beta, dtype=None, xp=jnp):
    """``d^l(β) = D^l(R_y(β)) = J_l Z_l(β) J_lᵀ``, padded.

    Args:
        bandlimit: ``L``.
        beta: array of shape ``S``.
        xp: ``jax.numpy`` (default) or ``numpy`` (float64 tables, whatever JAX's x64 flag).

    Returns:
        array ``S + (L, 2L-1, 2L-1)``.
    """
    J = xp.asarray(J_matrices(bandlimit), dtype=dtype)
    c, s = z_rotation_factors(bandlimit, xp.asarray(beta, dtype=dtype), xp=xp)
    c = c[..., None, None, :]
    s = s[..., None, None, :]
    # (J Z J^T)_{mn} = Σ_k J_{mk} (Z J^T)_{kn};  Z J^T = rows of J^T mixed
    JT = xp.swapaxes(J, -1, -2)
    ZJT = xp.swapaxes(c, -1, -2) * JT + xp.swapaxes(s, -1, -2) * xp.flip(JT, axis=-2)
    return J @ ZJT


def wigner_D_padded(bandlimit: int, alpha, beta, gamma, dtype=None, xp=jnp):
    """All ``D^l(α, β, γ)`` for ``l < L`` in padded layout: ``S + (L, 2L-1, 2L-1)``.

    ``xp=numpy`` computes in NumPy float64 (for tables), otherwise in JAX.
    """
    d = wigner_d_beta(bandlimit, beta, dtype=dtype, xp=xp)
    ca, sa = z_rotation_factors(bandlimit, xp.asarray(alpha, dtype=dtype), xp=xp)
    cg, sg = z_rotation_factors(bandlimit, xp.asarray(gamma, dtype=dtype), xp=xp)
    # Z(α) d: mix rows
    d = ca[..., None, :, None] * d + sa[..., None, :, None] * xp.flip(d, axis=-2)
    # (Z(α) d) Z(γ): columns; (M Z)_{mn} = Σ_k M_{mk} Z_{kn}, Z_{kn} nonzero for k = ±n:
    # Z_{nn} = cos(|n|γ), Z_{-n,n} = s_{-n} = sign(n) sin(|n|γ) = -s_n
    d = cg[..., None, None, :] * d - sg[..., None, None, :] * xp.flip(d, axis=-1)
    return d


def wigner_D(l: int, alpha, beta, gamma, dtype=None):
    """The real Wigner-D matrix of degree ``l``: shape ``S + (2l+1, 2l+1)``."""
    L = l + 1
    D = wigner_D_padded(L, alpha, beta, gamma, dtype=dtype)
    return D[..., l, :, :]


# -------------------------------------------------------------------- layouts


@functools.lru_cache(maxsize=64)
def _pad_index(bandlimit: int):
    L = bandlimit
    ls, ms = [], []
    for l in range(L):
        for m in range(-l, l + 1):
            ls.append(l)
            ms.append(m + L - 1)
    return np.array(ls), np.array(ms)


def pad(x):
    """Flat SH layout ``(..., L², C)`` (index l² + l + m) → padded ``(..., L, 2L-1, C)``."""
    x = jnp.asarray(x)
    L = int(round(np.sqrt(x.shape[-2])))
    ls, ms = _pad_index(L)
    return jnp.zeros(x.shape[:-2] + (L, 2 * L - 1, x.shape[-1]), x.dtype).at[..., ls, ms, :].set(x)


def unpad(x):
    """Inverse of :func:`pad`: padded ``(..., L, 2L-1, C)`` → flat ``(..., L², C)``."""
    ls, ms = _pad_index(x.shape[-3])
    return x[..., ls, ms, :]


@functools.lru_cache(maxsize=64)
def _block_index(bandlimit: int):
    L = bandlimit
    ls, ms, ns = [], [], []
    for l in range(L):
        for m in range(-l, l + 1):
            for n in range(-l, l + 1):
                ls.append(l)
                ms.append(m + L - 1)
                ns.append(n + L - 1)
    return np.array(ls), np.array(ms), np.array(ns)


def num_block_coeffs(bandlimit: int) -> int:
    """``Σ_{l<L} (2l+1)²``: Fourier coefficients of a function of bandlimit ``L`` on SO(3)."""
    L = int(bandlimit)
    return L * (2 * L - 1) * (2 * L + 1) // 3


def pad_blocks(x):
    """Packed blocks ``(..., Σ(2l+1)²)`` (order l, m, n) → padded ``(..., L, 2L-1, 2L-1)``."""
    x = jnp.asarray(x)
    M = x.shape[-1]
    L = 1
    while num_block_coeffs(L) < M:
        L += 1
    if num_block_coeffs(L) != M:
        raise ValueError(f"{M} is not Σ_(l<L) (2l+1)² for any L")
    ls, ms, ns = _block_index(L)
    return jnp.zeros(x.shape[:-1] + (L, 2 * L - 1, 2 * L - 1), x.dtype).at[..., ls, ms, ns].set(x)


def unpad_blocks(x):
    """Padded blocks ``(..., L, 2L-1, 2L-1)`` → packed ``(..., Σ(2l+1)²)``, order (l, m, n)."""
    L = x.shape[-3]
    ls, ms, ns = _block_index(L)
    return x[..., ls, ms, ns]


# ------------------------------------------------------------------ rotations


def matrix_from_euler(alpha, beta, gamma):
    """3×3 rotation ``R_z(α) R_y(β) R_z(γ)``; angles of shape ``S`` → ``S + (3, 3)``."""
    ca, sa = jnp.cos(alpha), jnp.sin(alpha)
    cb, sb = jnp.cos(beta), jnp.sin(beta)
    cg, sg = jnp.cos(gamma), jnp.sin(gamma)
    z = jnp.zeros_like(ca * cb * cg)
    o = jnp.ones_like(z)

    def rz(c, s):
        return jnp.stack([jnp.stack([c, -s, z], -1), jnp.stack([s, c, z], -1), jnp.stack([z, z, o], -1)], -2)

    def ry(c, s):
        return jnp.stack([jnp.stack([c, z, s], -1), jnp.stack([z, o, z], -1), jnp.stack([-s, z, c], -1)], -2)

    return rz(ca + z, sa + z) @ ry(cb + z, sb + z) @ rz(cg + z, sg + z)


def euler_from_matrix(R):
    """z-y-z Euler angles ``(α, β, γ)`` of rotation matrices ``S + (3, 3)``."""
    R = jnp.asarray(R)
    beta = jnp.arccos(jnp.clip(R[..., 2, 2], -1.0, 1.0))
    alpha = jnp.arctan2(R[..., 1, 2], R[..., 0, 2])
    gamma = jnp.arctan2(R[..., 2, 1], -R[..., 2, 0])
    # gimbal lock (β = 0 or π): put everything into α
    lock = jnp.abs(jnp.sin(beta)) < 1e-12
    alpha = jnp.where(lock, jnp.arctan2(-R[..., 0, 1], R[..., 1, 1]), alpha)
    gamma = jnp.where(lock, 0.0, gamma)
    return alpha, beta, gamma


def random_rotation(key, shape=(), dtype=None):
    """Haar-random rotations as Euler angles ``(α, β, γ)``, each of shape ``shape``."""
    ka, kb, kg = jax.random.split(key, 3)
    dtype = dtype or jnp.result_type(float)
    alpha = jax.random.uniform(ka, shape, dtype, 0.0, 2 * jnp.pi)
    gamma = jax.random.uniform(kg, shape, dtype, 0.0, 2 * jnp.pi)
    beta = jnp.arccos(jax.random.uniform(kb, shape, dtype, -1.0, 1.0))
    return alpha, beta, gamma


def rotate_coeffs(x, alpha, beta, gamma):
    """Rotate spherical signals in Fourier space: ``f̂_l ↦ D^l(R) f̂_l``.

    Args:
        x: coefficients ``(..., L², C)`` (flat layout).
        alpha, beta, gamma: Euler angles, scalars or broadcastable to ``x.shape[:-2]``.

    Returns:
        rotated coefficients, same shape as ``x``.
    """
    x = jnp.asarray(x)
    L = int(round(np.sqrt(x.shape[-2])))
    D = wigner_D_padded(L, alpha, beta, gamma, dtype=x.dtype)  # S + (L, P, P)
    out = jnp.einsum("...lmn,...lnc->...lmc", D, pad(x))
    return unpad(out)
