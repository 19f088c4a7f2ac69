"""Real spherical harmonics and sampling grids on the sphere S².

Convention (the one of sphericart and of eqntk's inputs): orthonormal real
harmonics on the unit sphere, ``∫ Y_lm Y_l'm' dΩ = δ δ``, stored at flat index
``l² + l + m`` for ``m = -l..l``, in standard x, y, z coordinates with z the
pole and no Condon–Shortley phase::

    Y_1,-1 ∝ y,   Y_1,0 ∝ z,   Y_1,1 ∝ x.

For ``m > 0`` the harmonic is ``∝ P_l^m(cos θ) cos(mφ)``, for ``m < 0`` it is
``∝ P_l^|m|(cos θ) sin(|m|φ)``, with the same positive constant.

Everything here is NumPy float64: these functions build tables once
(quadrature grids, Wigner matrices, input conversion), they are not the hot loop.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.special

__all__ = [
    "num_coeffs",
    "bandlimit_of",
    "real_sph_harm",
    "real_sph_harm_angles",
    "S2Grid",
    "gauss_legendre_s2_grid",
    "driscoll_healy_s2_grid",
    "s2_grid",
    "coeffs_from_s2_samples",
    "s2_samples_from_coeffs",
]


def num_coeffs(bandlimit: int) -> int:
    """Number of real SH coefficients of degrees ``l < bandlimit``: ``bandlimit²``."""
    return int(bandlimit) ** 2


def bandlimit_of(n_coeffs: int) -> int:
    """Inverse of :func:`num_coeffs`; raises ``ValueError`` unless ``n_coeffs`` is a square."""
    L = int(round(np.sqrt(n_coeffs)))
    if L * L != n_coeffs or L < 1:
        raise ValueError(
            f"a spherical-harmonic axis must have L² entries (degrees l < L), got {n_coeffs}"
        )
    return L


def real_sph_harm_angles(bandlimit: int, theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Real orthonormal harmonics at polar angle ``theta`` and azimuth ``phi``.

    Args:
        bandlimit: ``L``; degrees ``l < L`` are returned.
        theta: polar angles (radians), any shape ``S``.
        phi: azimuths (radians), broadcastable to ``S``.

    Returns:
        array of shape ``S + (L²,)``, index ``l² + l + m``.
    """
    theta, phi = np.broadcast_arrays(np.asarray(theta, float), np.asarray(phi, float))
    out = np.empty(theta.shape + (bandlimit**2,))
    for l in range(bandlimit):
        for m in range(0, l + 1):
            # scipy's complex harmonic carries the Condon–Shortley phase (-1)^m.
            y = scipy.special.sph_harm_y(l, m, theta, phi)
            if m == 0:
                out[..., l * l + l] = y.real
            else:
                s = np.sqrt(2.0) * (-1.0) ** m
                out[..., l * l + l + m] = s * y.real
                out[..., l * l + l - m] = s * y.imag
    return out


def real_sph_harm(bandlimit: int, xyz: np.ndarray) -> np.ndarray:
    """Real orthonormal harmonics at points ``xyz`` (shape ``S + (3,)``; normalised internally).

    Returns an array of shape ``S + (L²,)``, index ``l² + l + m``.
    """
    xyz = np.asarray(xyz, float)
    r = np.linalg.norm(xyz, axis=-1)
    if np.any(r == 0):
        raise ValueError("real_sph_harm: points must be non-zero")
    theta = np.arccos(np.clip(xyz[..., 2] / r, -1.0, 1.0))
    phi = np.arctan2(xyz[..., 1], xyz[..., 0])
    return real_sph_harm_angles(bandlimit, theta, phi)


class S2Grid:
    """A product quadrature grid on S²: polar angles ``theta`` × azimuths ``phi``.

    Attributes:
        theta: (n_theta,) polar angles.
        phi: (n_phi,) azimuths, uniform on [0, 2π).
        weights: (n_theta,) weights per ring such that
            ``Σ_i Σ_j weights[i] f(theta_i, phi_j) = ∫_{S²} f dΩ`` for bandlimited ``f``
            (the 1/n_phi of the azimuthal sum is included).
        kind: ``'gl'`` or ``'dh'``.
        bandlimit: ``L``; products of two functions of bandlimit ``L`` integrate exactly.
    """

    def __init__(self, theta, phi, weights, kind, bandlimit):
        self.theta = np.asarray(theta, float)
        self.phi = np.asarray(phi, float)
        self.weights = np.asarray(weights, float)
        self.kind = kind
        self.bandlimit = int(bandlimit)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.theta.size, self.phi.size)

    def points(self) -> np.ndarray:
        """Unit vectors of the grid, shape ``(n_theta, n_phi, 3)``."""
        t, p = np.meshgrid(self.theta, self.phi, indexing="ij")
        return np.stack([np.sin(t) * np.cos(p), np.sin(t) * np.sin(p), np.cos(t)], axis=-1)


@functools.lru_cache(maxsize=64)
def gauss_legendre_s2_grid(bandlimit: int) -> S2Grid:
    """Gauss–Legendre grid: ``L`` nodes in cos θ, ``2L - 1`` uniform azimuths.

    Integrates exactly every product of two functions of bandlimit ``L``
    (total degree ≤ 2L - 2).
    """
    L = _check_bandlimit(bandlimit)
    x, w = np.polynomial.legendre.leggauss(L)
    theta = np.arccos(x)[::-1]
    w = w[::-1]
    nphi = 2 * L - 1
    phi = 2 * np.pi * np.arange(nphi) / nphi
    return S2Grid(theta, phi, w * 2 * np.pi / nphi, "gl", L)


@functools.lru_cache(maxsize=64)
def driscoll_healy_s2_grid(bandlimit: int) -> S2Grid:
    """Driscoll–Healy grid: ``2L`` equiangular polar angles ``π(2j+1)/(4L)`` × ``2L`` azimuths.

    The weights are the Driscoll–Healy ones; they integrate exactly every
    product of two functions of bandlimit ``L``.
    """
    L = _check_bandlimit(bandlimit)
    n = 2 * L
    j = np.arange(n)
    theta = np.pi * (2 * j + 1) / (2 * n)
    k = np.arange(L)
    w = (2.0 / L) * np.sin(theta) * np.sum(
        np.sin((2 * k[None, :] + 1) * theta[:, None]) / (2 * k[None, :] + 1), axis=1
    )
    # w integrates functions of cos θ over [0, π] with measure sin θ dθ (sum w = 2).
    phi = 2 * np.pi * np.arange(n) / n
    return S2Grid(theta, phi, w * 2 * np.pi / n, "dh", L)


def s2_grid(bandlimit: int, kind: str = "gl") -> S2Grid:
    """The S² grid of the given kind (``'gl'`` Gauss–Legendre or ``'dh'`` Driscoll–Healy)."""
    if kind == "gl":
        return gauss_legendre_s2_grid(bandlimit)
    if kind == "dh":
        return driscoll_healy_s2_grid(bandlimit)
    raise ValueError(f"unknown S² grid kind {kind!r}; use 'gl' or 'dh'")


@functools.lru_cache(maxsize=32)
def _grid_harmonics(bandlimit: int, kind: str) -> np.ndarray:
    g = s2_grid(bandlimit, kind)
    return real_sph_harm_angles(bandlimit, g.theta[:, None], g.phi[None, :])


def coeffs_from_s2_samples(values, bandlimit: int, kind: str = "gl") -> np.ndarray:
    """Real SH coefficients of a function sampled on an S² grid.

    Args:
        values: samples of shape ``(..., n_theta, n_phi, C)`` on
            ``s2_grid(bandlimit, kind)`` (``(L, 2L-1)`` for ``'gl'``,
            ``(2L, 2L)`` for ``'dh'``).
        bandlimit: ``L``; the function must have degrees ``< L`` to be recovered exactly.
        kind: ``'gl'`` or ``'dh'``.

    Returns:
        coefficients of shape ``(..., L², C)`` — eqntk's input layout.
    """
    g = s2_grid(bandlimit, kind)
    v = np.asarray(values, float)
    if v.ndim < 3 or v.shape[-3:-1] != g.shape:
        raise ValueError(
            f"coeffs_from_s2_samples: expected samples of shape (..., {g.shape[0]}, "
            f"{g.shape[1]}, C) for the {kind!r} grid of bandlimit {bandlimit}, got {v.shape}"
        )
    if not np.all(np.isfinite(v)):
        raise ValueError("coeffs_from_s2_samples: samples contain NaN or inf")
    Y = _grid_harmonics(g.bandlimit, kind)  # (nt, np, L²)
    return np.einsum("...tpc,tpk,t->...kc", v, Y, g.weights)


def s2_samples_from_coeffs(coeffs, bandlimit: int | None = None, kind: str = "gl") -> np.ndarray:
    """Inverse of :func:`coeffs_from_s2_samples`: ``(..., L², C)`` → ``(..., n_theta, n_phi, C)``."""
    c = np.asarray(coeffs, float)
    L = bandlimit_of(c.shape[-2])
    G = L if bandlimit is None else int(bandlimit)
    if G < L:
        raise ValueError(f"grid bandlimit {G} is below the coefficients' bandlimit {L}")
    Y = _grid_harmonics(G, kind)[..., : L * L]
    return np.einsum("...kc,tpk->...tpc", c, Y)


def _check_bandlimit(L) -> int:
    if int(L) != L or L < 1:
        raise ValueError(f"bandlimit must be a positive integer, got {L!r}")
    return int(L)
