"""Exact quadrature on SO(3) (normalised Haar measure, total mass 1).

Grid of bandlimit ``B`` in z-y-z Euler angles: α and γ on ``2B - 1`` uniform
points of [0, 2π), cos β on ``B`` Gauss–Legendre nodes, weight
``w_β / (2 (2B - 1)²)`` per point.

Exactness: it integrates every Wigner function ``D^J_mn`` of degree
``J ≤ 2B - 2`` exactly — hence every product of two functions of bandlimit
``B`` (degrees ``l < B``). It is inexact at degree ``2B - 1`` (the uniform
α grid aliases the frequency ``2B - 1`` onto 0).

Point rules (:class:`SO3Rule`, :func:`pool_rule`): non-product rules of the same exact degree with
about 1.5× fewer points, shipped for the even degrees 2…12 (docs/mathematics.md, "Point rules for
the pool"); the mean over SO(3) uses them.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Optional

import numpy as np

__all__ = ["SO3Grid", "so3_grid", "grid_bandlimit_for", "SO3Rule", "so3_rule", "stored_rule_degrees", "pool_rule"]


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


# ------------------------------------------------------------------ point rules
#
# The Euler product grid is convenient (separable transforms, β-slices) but not economical: exact
# degree t = 2B - 2 costs (2B-1)² B points, while Σ_{J≤t} (2J+1)² equations in 4 unknowns per point
# need only about a quarter of that count. For the mean over SO(3) (a pool) nothing needs the
# product structure, so a non-product rule of the same exact degree replaces the grid there.
# The rules are computed by scripts/so3_designs.py and shipped as package data.

_RULES_FILE = "rules.npz"


@dataclasses.dataclass(frozen=True)
class SO3Rule:
    """A positive quadrature rule on SO(3): ``∫ f(u) du ≈ Σ_i w_i f(u_i)``.

    Attributes:
        degree: ``t``: every Wigner function ``D^J_mn`` of degree ``J ≤ t`` is integrated exactly.
        euler: (N, 3) z-y-z Euler angles ``(α, β, γ)`` of the points (the convention of
            :func:`eqntk.so3.wigner.wigner_D_padded`).
        weights: (N,) positive weights summing to 1.
    """

    degree: int
    euler: np.ndarray
    weights: np.ndarray

    @property
    def size(self) -> int:
        return self.weights.size


@functools.lru_cache(maxsize=1)
def _stored_rules() -> dict:
    import importlib.resources

    path = importlib.resources.files(__package__).joinpath(_RULES_FILE)
    with importlib.resources.as_file(path) as p, np.load(p) as f:
        return {int(k[1:-len("_euler")]): (f[k], f[k.replace("_euler", "_weights")]) for k in f.files
                if k.endswith("_euler")}


@functools.lru_cache(maxsize=64)
def so3_rule(degree: int) -> Optional[SO3Rule]:
    """The stored rule of exact degree ``degree`` (see :class:`SO3Rule`), or ``None`` if none is stored."""
    stored = _stored_rules().get(int(degree))
    if stored is None:
        return None
    euler, w = stored
    return SO3Rule(int(degree), np.asarray(euler, np.float64), np.asarray(w, np.float64))


def stored_rule_degrees() -> tuple[int, ...]:
    """Degrees of the shipped rules."""
    return tuple(sorted(_stored_rules()))


def pool_rule(l_in: int, oversampling: float, nonlinear: bool) -> Optional[SO3Rule]:
    """The point rule for the mean over SO(3) of ``σ(ψ)``, ``ψ`` of bandlimit ``l_in``, or ``None``.

    It has the exact degree ``2B - 2`` of the product grid ``so3_grid(B)``,
    ``B = grid_bandlimit_for(l_in, 1, oversampling, nonlinear)``, that it replaces, and is returned
    only when it has fewer points (for degrees without a stored rule the grid is used).
    """
    B = grid_bandlimit_for(l_in, 1, oversampling, nonlinear)
    rule = so3_rule(2 * B - 2)
    if rule is None or rule.size >= so3_grid(B).size:
        return None
    return rule
