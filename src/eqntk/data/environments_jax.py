"""Atomic environments as a differentiable JAX function of the positions (for forces).

The signals are those of :func:`eqntk.data.atomic_environments` (its module docstring has the
definition: per neighbour element and radial function, a smeared bump on S² at each neighbour's
direction, weighted by the radial function, the cosine cutoff and optionally the charge). Here
they are a pure function of ONE molecule's positions, for a fixed list of atomic numbers:

    env = environment_fn(Z, spec)        # Z: (n,) atomic numbers
    x = env(R)                           # R: (n, 3) Å  ->  (n, L², C), as atomic_environments
    jax.jacfwd(env)(R)                   # (n, L², C, n, 3): the derivative in the positions

``env`` is jit-able, ``vmap``-able over conformations ``(B, n, 3)`` and differentiable: every
ordered pair ``(i, j ≠ i)`` enters with the smooth cutoff, whose derivative vanishes at the
cutoff from both sides, so no neighbour list is needed and ``env`` is continuously
differentiable in ``R`` wherever no two atoms coincide. Atoms with no neighbour inside the
cutoff get an all-zero neighbour signal (the numpy path raises there unless
``allow_isolated=True``; check a reference conformation with it when that matters).

The real spherical harmonics are sphericart's (orthonormal, no Condon–Shortley phase, flat
index ``l² + l + m``), evaluated by :func:`real_sph_harm_jax` from the associated-Legendre
recursion in Cartesian form (no angles, no pole singularity). sphericart's own JAX bindings
(``sphericart-jax``) would do this too but pin JAX below the version eqntk runs on.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional

import numpy as np
import jax.numpy as jnp

from .elements import check_elements
from .environments import EnvironmentSpec, cosine_cutoff, radial_functions, smoothing_coefficients

__all__ = ["real_sph_harm_jax", "environment_fn"]


def _legendre_norms(L: int) -> np.ndarray:
    """``√2^[m>0] · √((2l+1)/(4π) · (l−m)!/(l+m)!)`` for ``0 ≤ m ≤ l < L``: (L, L), lower triangle."""
    n = np.zeros((L, L))
    for l in range(L):
        for m in range(l + 1):
            n[l, m] = math.sqrt((2 * l + 1) / (4 * math.pi) * math.factorial(l - m) / math.factorial(l + m))
            n[l, m] *= math.sqrt(2.0) if m else 1.0
    return n


def real_sph_harm_jax(bandlimit: int, xyz):
    """Real orthonormal spherical harmonics ``Y_lm`` (``l < bandlimit``) of unit vectors, in JAX.

    The differentiable counterpart of :func:`eqntk.so3.harmonics.real_sph_harm` (numpy) and
    of sphericart's, with the same values.

    ``xyz``: ``(..., 3)`` unit vectors (not normalised here). Returns ``(..., L²)``, flat index
    ``l² + l + m``; the convention of :mod:`sphericart` (z pole, no Condon–Shortley phase):
    ``Y_l0 = N_l0 P_l(z)``, ``Y_l,±m = √2 N_lm Q_lm(z) · {Re, Im}((x + iy)^m)`` with
    ``P_l^m(z) = (1 − z²)^{m/2} Q_lm(z)``. Pure ``jax.numpy``: differentiable, jit-able.
    """
    L = int(bandlimit)
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    norms = _legendre_norms(L)
    out = [None] * (L * L)
    re, im = jnp.ones_like(z), jnp.zeros_like(z)  # (x + iy)^m
    for m in range(L):
        if m:
            re, im = re * x - im * y, re * y + im * x
        q_prev, q = None, jnp.full_like(z, float(np.prod(np.arange(1, 2 * m, 2))))  # Q_mm = (2m − 1)!!
        for l in range(m, L):
            if l == m + 1:
                q_prev, q = q, (2 * m + 1) * z * q
            elif l > m + 1:
                q_prev, q = q, ((2 * l - 1) * z * q - (l + m - 1) * q_prev) / (l - m)
            if m == 0:
                out[l * l + l] = norms[l, 0] * q
            else:
                out[l * l + l + m] = norms[l, m] * q * re
                out[l * l + l - m] = norms[l, m] * q * im
    return jnp.stack(out, axis=-1)


def environment_fn(Z, spec: Optional[EnvironmentSpec] = None, **kwargs) -> Callable:
    """``R (n, 3) Å → (n, L², C)``: the atomic environments of one molecule with atomic numbers ``Z``.

    Args:
        Z: ``(n,)`` atomic numbers, fixed (the function's positions change, its atoms do not).
        spec: an :class:`EnvironmentSpec`; keyword arguments override its fields, as for
            :func:`eqntk.data.atomic_environments`, whose values this function reproduces
            (to rounding, for conformations in which every atom has a neighbour inside the cutoff).

    Returns:
        a pure JAX function of the positions (float64 under ``jax_enable_x64``); see the
        module docstring for differentiability and isolated atoms.

    Raises:
        ValueError: elements outside ``spec.elements``, fewer than two atoms, ``Z`` not 1-d.
    """
    spec = dataclasses.replace(spec or EnvironmentSpec(), **kwargs) if kwargs else (spec or EnvironmentSpec())
    Z = np.asarray(Z)
    if Z.ndim != 1 or Z.size < 2 or not np.issubdtype(Z.dtype, np.integer):
        raise ValueError(f"environment_fn: Z must be a 1-d integer array of at least 2 atomic numbers, got "
                         f"shape {Z.shape}, dtype {Z.dtype}")
    check_elements(Z, spec.elements, where="environment_fn")
    n, L, K, E = Z.size, spec.bandlimit, spec.n_radial_channels, len(spec.elements)
    onehot = (Z[:, None] == np.asarray(spec.elements)[None, :]).astype(np.float64)  # (n, E)
    charge = Z.astype(np.float64) if spec.charge_weight else np.ones(n)
    cl_flat = np.repeat(smoothing_coefficients(L, spec.smoothing, spec.width), 2 * np.arange(L) + 1)
    off_diag = ~np.eye(n, dtype=bool)
    center = None
    if spec.include_center:
        center = np.zeros((n, L * L, E))
        center[:, 0, :] = onehot * charge[:, None] / np.sqrt(4 * np.pi)

    def env(R):
        R = jnp.asarray(R)
        if R.shape != (n, 3):
            raise ValueError(f"environment_fn: positions must have shape ({n}, 3), got {R.shape}")
        d = R[None, :, :] - R[:, None, :]  # (i, j, 3): R_j − R_i
        # the diagonal (i = j) gets a dummy unit vector and distance 1, masked below (no NaN gradients)
        d = jnp.where(off_diag[..., None], d, jnp.array([0.0, 0.0, 1.0], dtype=d.dtype))
        r = jnp.sqrt(jnp.sum(d * d, axis=-1))  # (n, n)
        Y = real_sph_harm_jax(L, d / r[..., None])  # (n, n, L²)
        g = radial_functions(r.reshape(-1), spec, xp=jnp).reshape(n, n, K)
        w = jnp.where(off_diag, cosine_cutoff(r, spec.cutoff, xp=jnp), 0.0) * charge[None, :]
        f = jnp.einsum("ijk,ijl,je->ilek", w[..., None] * g, Y, onehot).reshape(n, L * L, E * K)
        f = f * cl_flat[None, :, None]
        return f if center is None else jnp.concatenate([f, jnp.asarray(center, f.dtype)], axis=-1)

    return env
