"""Spectra of kernels: eigen-decompositions, irrep-resolved spectra, learning-curve theory.

Conventions. For a Gram matrix ``K`` of ``M`` samples of a data distribution, the kernel
integral operator on the empirical measure has eigenvalues ``η_k = λ_k(K) / M`` and orthonormal
eigenfunctions ``φ_k = √M v_k`` (``v_k`` the unit eigenvectors). A target ``y`` has coefficients
``w_k = ⟨φ_k, y⟩ = v_k·y / √M``, so ``Σ_k w_k² = |y|² / M`` is its mean square.

Learning curves. :func:`learning_curve_theory` evaluates the theory of Bordelon, Canatar &
Pehlevan (ICML 2020; Canatar et al., Nat. Commun. 2021) for kernel (ridge) regression with
``P`` training samples:

    κ = λ + κ Σ_k η_k / (P η_k + κ),      γ = Σ_k P η_k² / (P η_k + κ)²,
    E_g(P) = (1 / (1 − γ)) Σ_k κ² w_k² / (P η_k + κ)²  (+ γ σ² / (1 − γ) with label noise σ²),

the expected test mean-square error. With an NTK this is also the infinite-time error of the
network's mean prediction under gradient flow (eqntk.predict).

Irreps. Before pooling, an equivariant kernel is block diagonal over irreducible
representations: :func:`so3_degree_spectrum` resolves an SO(3) kernel's spectrum by degree ``l``,
:func:`planar_irrep_spectrum` a p2/p4/p4m kernel's by irrep of the point group (C_n characters,
D_4's A1, A2, B1, B2, E).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np
import scipy.optimize

from . import linalg

__all__ = ["Eigensystem", "eigensystem", "target_spectrum", "learning_curve_theory",
           "empirical_learning_curve", "so3_degree_spectrum", "planar_irrep_spectrum"]


class Eigensystem(NamedTuple):
    """``eigenvalues`` (M,) operator eigenvalues ``η_k`` (descending), ``vectors`` (M, M) unit eigenvectors."""

    eigenvalues: np.ndarray
    vectors: np.ndarray


def eigensystem(K, psd_rtol: Optional[float] = None) -> Eigensystem:
    """Operator eigenvalues ``η_k = λ_k / M`` (descending; round-off negatives clipped to 0).

    ``psd_rtol``: the kernel's relative accuracy (a Gram computed in float32 or summed from
    float32 kernels needs ~1e-5; a quadrature kernel is PSD only to its quadrature accuracy).
    Eigenvalues down to ``−τ · max|λ|``, ``τ = max(√eps, M·eps, psd_rtol)``, are round-off
    (the rule of :mod:`eqntk.linalg`, shared with :mod:`eqntk.predict`; ``eps`` of the dtype
    ``K`` is given in); anything more negative raises ``ValueError``.
    """
    K, rtol = linalg.gram(np.asarray(K), "the Gram matrix", kernel_rtol=psd_rtol, dtype=np.float64)
    spec = linalg.spectrum(K, 0.0, rtol)
    return Eigensystem(spec.mu[::-1] / K.shape[0], spec.vecs[:, ::-1])


def target_spectrum(system: Eigensystem, y) -> np.ndarray:
    """Squared target coefficients ``w_k²`` (summed over outputs), shape (M,).

    ``w_k² / Σ w²`` is the fraction of the target's energy along eigendirection ``k``.
    """
    y = np.asarray(y, np.float64)
    M = system.vectors.shape[0]
    if y.shape[0] != M:
        raise ValueError(f"y has {y.shape[0]} samples, the kernel {M}")
    c = system.vectors.T @ y.reshape(M, -1) / np.sqrt(M)
    return np.sum(c**2, axis=1)


def learning_curve_theory(eigenvalues, target_power, n_train, ridge: float = 0.0,
                          noise: float = 0.0) -> np.ndarray:
    """Predicted test MSE ``E_g(P)`` for each ``P`` in ``n_train`` (see module docs).

    Args:
        eigenvalues: (K,) operator eigenvalues ``η_k ≥ 0``.
        target_power: (K,) squared target coefficients ``w_k²`` (:func:`target_spectrum`).
        n_train: training-set sizes ``P`` (array-like of positive numbers).
        ridge: ``λ ≥ 0`` added to the training Gram matrix: the predictor is
            ``k_·P (K_PP + λ I)⁻¹ y_P`` (the convention of eqntk.predict).
        noise: label-noise variance ``σ²``.
    """
    eta = np.asarray(eigenvalues, np.float64)
    w2 = np.asarray(target_power, np.float64)
    if eta.shape != w2.shape:
        raise ValueError("eigenvalues and target_power must have the same shape")
    if ridge < 0 or noise < 0:
        raise ValueError("ridge and noise must be ≥ 0")
    out = []
    for P in np.atleast_1d(np.asarray(n_train, np.float64)):
        if P <= 0:
            raise ValueError(f"training-set sizes must be positive, got {P}")

        def fixed_point(k):
            return k - ridge - k * np.sum(eta / (P * eta + k))

        # κ > 0 solves κ = λ + κ Σ η/(Pη + κ); for λ = 0 and P < rank it is the positive root
        hi = ridge + np.sum(eta) + 1.0
        lo = 1e-300 if ridge == 0 else ridge
        if fixed_point(lo) > 0:  # λ = 0 and P ≥ number of non-zero modes: interpolation limit
            kappa = 0.0
        else:
            kappa = scipy.optimize.brentq(fixed_point, lo, hi, xtol=1e-300, rtol=1e-14, maxiter=500)
        denom = P * eta + kappa
        safe = np.where(denom > 0, denom, 1.0)
        gamma = np.sum(np.where(denom > 0, P * eta**2 / safe**2, 0.0))
        err = np.sum(np.where(denom > 0, kappa**2 * w2 / safe**2, w2 * (eta == 0)))
        out.append((err + gamma * noise) / (1 - gamma))
    return np.array(out)


def empirical_learning_curve(K, y, n_train, n_repeats: int = 20, ridge: float = 0.0, seed: int = 0,
                             psd_rtol: Optional[float] = None):
    """Measured test MSE of kernel ridge regression on random subsets of the ``M`` samples.

    For each ``P``: draw ``P`` training samples, predict all ``M`` samples with
    ``K_·P (K_PP + λ I)⁻¹ y_P`` and average the squared error over the pool and ``n_repeats``
    draws. Returns ``(mean, standard error)``, each ``(len(n_train),)``. The solves are those of
    :mod:`eqntk.linalg` (Cholesky with its jitter policy for ``λ > 0``, the spectral
    pseudo-inverse for ``λ = 0``); ``psd_rtol`` as in :func:`eigensystem`.
    """
    K, rtol = linalg.gram(np.asarray(K), "the Gram matrix", kernel_rtol=psd_rtol, dtype=np.float64)
    y = np.asarray(y, np.float64).reshape(K.shape[0], -1)
    rng = np.random.default_rng(seed)
    means, ses = [], []
    for P in np.atleast_1d(n_train):
        P = int(P)
        errs = []
        for _ in range(n_repeats):
            idx = rng.choice(K.shape[0], size=P, replace=False)
            alpha = _ridge_solve(K[np.ix_(idx, idx)], y[idx], ridge, rtol)
            errs.append(np.mean(np.sum((K[:, idx] @ alpha - y) ** 2, axis=1)))
        means.append(np.mean(errs))
        ses.append(np.std(errs, ddof=1) / np.sqrt(n_repeats) if n_repeats > 1 else np.nan)
    return np.array(means), np.array(ses)


def _ridge_solve(k: np.ndarray, y: np.ndarray, ridge: float, rtol: float) -> np.ndarray:
    """``(k + ridge·I)⁻¹ y`` (``k`` ``(P, P)``, ``y`` ``(P, p)``): Cholesky for ``ridge > 0`` (~10x faster than an
    eigendecomposition for thousands of samples), the spectral pseudo-inverse for ``ridge = 0``."""
    if ridge > 0:
        chol, _ = linalg.cholesky(k, ridge, rtol, name="the training Gram matrix")
        return linalg.cho_solve(chol, y)
    spec = linalg.spectrum(k, 0.0, rtol, name="the training Gram matrix")
    g = linalg.flow_weights(spec.lam, np.array([np.inf]), spec.cutoff)[0]
    return spec.vecs @ (g[:, None] * (spec.vecs.T @ y))


def so3_degree_spectrum(blocks, bandlimit: Optional[int] = None) -> dict:
    """Spectrum of an unpooled SO(3) kernel resolved by degree.

    Args:
        blocks: ``(M, M, Σ_{l<L}(2l+1)²)`` Wigner-D blocks of the pair kernels ``ψ_ij(u)``
            (``kernel_fn`` output of a network ending in an SO(3) feature map), order (l, m, n).

    Returns:
        ``{l: eigenvalues}``: the eigenvalues (descending) of the kernel operator on
        inputs × SO(3) restricted to degree ``l`` — those of the ``M(2l+1)`` square matrix
        ``ψ̂^l_mn(i, j) / (M (2l+1))``; each has multiplicity ``2l + 1`` in the full operator.
    """
    from .so3.wigner import num_block_coeffs

    B = np.asarray(blocks, np.float64)
    if B.ndim != 3 or B.shape[0] != B.shape[1]:
        raise ValueError(f"expected blocks of shape (M, M, Σ(2l+1)²), got {B.shape}")
    M = B.shape[0]
    L = 1
    while num_block_coeffs(L) < B.shape[2]:
        L += 1
    if num_block_coeffs(L) != B.shape[2] or (bandlimit is not None and bandlimit != L):
        raise ValueError(f"{B.shape[2]} block coefficients do not match a bandlimit {bandlimit or ''}")
    out, off = {}, 0
    for l in range(L):
        k = 2 * l + 1
        b = B[:, :, off : off + k * k].reshape(M, M, k, k)
        off += k * k
        A = np.transpose(b, (0, 2, 1, 3)).reshape(M * k, M * k) / (M * k)
        A = 0.5 * (A + A.T)
        out[l] = np.sort(np.linalg.eigvalsh(A))[::-1]
    return out


def planar_irrep_spectrum(M, group) -> dict:
    """Spectrum of an unpooled planar GCNN kernel resolved by irrep of the point group.

    Args:
        M: per-element kernels ``(M, M, |G|, H, W, H, W)`` of ``M`` inputs with themselves
            (``kernel_fn(x, get=...)`` of a network ending in a group feature map).
        group: ``'p2'``, ``'p4'``, ``'p4m'`` or an :class:`eqntk.planar.PlanarGroup`.

    Returns:
        ``{irrep: eigenvalues}`` (descending) of the kernel operator on inputs × group × pixels
        with the uniform probability measure, restricted to the irrep's isotypic component;
        each eigenvalue has multiplicity ``dim ρ`` there (see :mod:`eqntk.planar.irreps`: on
        ``r ↦ ρ(r)ᵀ v`` the operator is ``|G| K̂(ρ)ᵀ``).
    """
    from .planar.groups import P2, P4, P4M, PlanarGroup
    from .planar.irreps import group_fourier, irreps

    G = group if isinstance(group, PlanarGroup) else {"p2": P2, "p4": P4, "p4m": P4M}.get(group)
    if G is None:
        raise ValueError(f"unknown planar group {group!r}; use 'p2', 'p4' or 'p4m'")
    K = np.asarray(M)
    if K.ndim != 7 or K.shape[0] != K.shape[1] or K.shape[2] != G.order:
        raise ValueError(f"expected per-element kernels (M, M, {G.order}, H, W, H, W), got {K.shape}")
    n, npx = K.shape[0], K.shape[3] * K.shape[4]
    out = {}
    for name, B in group_fourier(K, G).items():
        B = np.asarray(B)  # (M, M, dim, dim, H, W, H, W)
        dim = B.shape[2]
        A = np.transpose(B.reshape(n, n, dim, dim, npx, npx), (0, 3, 4, 1, 2, 5)).reshape(n * dim * npx, -1)
        A = 0.5 * (A + A.conj().T) * G.order / (n * G.order * npx)
        out[name] = np.sort(np.linalg.eigvalsh(A))[::-1]
    return out
