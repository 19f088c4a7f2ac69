"""Exact quadrature on SO(3) (normalised Haar measure, total mass 1).

Grid of bandlimit ``B`` in z-y-z Euler angles: α and γ on ``2B - 1`` uniform
points of [0, 2π), cos β on ``B`` Gauss–Legendre nodes, weight
``w_β / (2 (2B - 1)²)`` per point.

Exactness: it integrates every Wigner function ``D^J_mn`` of degree
``J ≤ 2B - 2`` exactly — hence every product of two functions of bandlimit
``B`` (degrees ``l < B``). It is inexact at degree ``2B - 1`` (the uniform
α grid aliases the frequency ``2B - 1`` onto 0).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

__all__ = ["SO3Grid", "so3_grid", "grid_bandlimit_for"]


@dataclasses.dataclass(frozen=True)
class SO3Grid:
    """An Euler-angle product grid on SO(3).

    Attributes:
        bandlimit: ``B``.
        alpha: (2B-1,) first Euler angles.
        beta: (B,) middle Euler angles (Gauss–Legendre in cos β).
        gamma: (2B-1,) last Euler angles.
        beta_weights: (B,) weights summing to 1; the weight of point
            (a, b, c) is ``beta_weights[b] / (2B - 1)²``.
    """

    bandlimit: int
    alpha: np.ndarray
    beta: np.ndarray
    gamma: np.ndarray
    beta_weights: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(n_alpha, n_beta, n_gamma)``."""
        return (self.alpha.size, self.beta.size, self.gamma.size)

    @property
    def size(self) -> int:
        return self.alpha.size * self.beta.size * self.gamma.size

    @property
    def exact_degree(self) -> int:
        """Largest Wigner degree ``J`` integrated exactly: ``2B - 2``."""
        return 2 * self.bandlimit - 2

    def weights(self) -> np.ndarray:
        """Full weight array ``(n_alpha, n_beta, n_gamma)`` (sums to 1)."""
        n = self.alpha.size * self.gamma.size
        return np.broadcast_to(self.beta_weights[None, :, None] / n, self.shape).copy()

    def euler_angles(self):
        """Meshgrids ``(α, β, γ)``, each ``(n_alpha, n_beta, n_gamma)``."""
        return np.meshgrid(self.alpha, self.beta, self.gamma, indexing="ij")


@functools.lru_cache(maxsize=64)
def so3_grid(bandlimit: int) -> SO3Grid:
    """The exact SO(3) grid of bandlimit ``B`` (see the module docstring)."""
    if int(bandlimit) != bandlimit or bandlimit < 1:
        raise ValueError(f"SO(3) grid bandlimit must be a positive integer, got {bandlimit!r}")
    B = int(bandlimit)
    x, w = np.polynomial.legendre.leggauss(B)
    n = 2 * B - 1
    ang = 2 * np.pi * np.arange(n) / n
    return SO3Grid(B, ang, np.arccos(x), ang.copy(), w / 2.0)


def grid_bandlimit_for(l_in: int, l_out: int, oversampling: float, nonlinear: bool) -> int:
    """Grid bandlimit for projecting ``σ(ψ)`` onto degrees ``< l_out``, ``ψ`` of bandlimit ``l_in``.

    The integrand ``σ(ψ) D^l`` has degree ``≤ s (l_in - 1) + l_out - 1`` if σ were a
    polynomial of degree ``s``; ``s = oversampling`` for a nonlinear σ, 1 for a
    linear one (then the result is exact). σ(ψ) is not bandlimited in general:
    raise ``oversampling`` until the kernel stops changing (see the convergence
    benchmark).
    """
    s = oversampling if nonlinear else 1.0
    degree = s * (l_in - 1) + (l_out - 1)
    B = math.ceil(degree / 2 - 1e-9) + 1
    return int(max(B, l_in, l_out, 1))
