r"""Landmark (Nyström, subset-of-regressors) kernel ridge regression: only ``K_nm`` and ``K_mm``.

With ``m`` landmarks ``z_1 … z_m`` (for molecules: atom environments, GAP style), the model is
``f(x) = Σ_j α_j k(x, z_j)`` and ``α`` minimises

    ‖K_nm α − y‖² + λ αᵀ K_mm α,

which is kernel ridge regression with the Nyström kernel ``K̃ = K_nm K_mm⁺ K_mn``: exact KRR when
the landmarks span the training inputs' features (e.g. all training atoms), an approximation
whose error falls as ``m`` grows otherwise. Cost: ``O(n m²)`` time and ``O(n m)`` memory instead
of ``O(n³)`` and ``O(n²)``; only the ``(n, m)`` and ``(m, m)`` kernels are ever computed.

The solve never forms the normal equations ``K_mn K_nm + λ K_mm`` (condition number squared):

1. ``K_mm = V diag(μ) Vᵀ`` with the PSD rule of :mod:`eqntk.linalg` (refused if indefinite
   beyond the kernel's stated accuracy ``psd_rtol``, negative round-off clipped); directions with
   ``μ ≤ rcond · μ_max`` are dropped (``r ≤ m`` kept; default ``rcond = m·eps``, the
   pseudo-inverse cutoff of :func:`eqntk.linalg.spectrum`). Small directions carry kernel noise
   amplified by ``μ^{-1/2}``, but the ridge damps them; a larger ``rcond`` (``≈ δ²`` for a kernel
   accurate to ``δ``) discards them instead (``benchmarks/qm9_landmarks.py --rcond`` compares cutoffs);
2. features ``Φ = K_nm V_r diag(μ_r)^{-1/2}`` ``(n, r)``, so that ``K̃ = Φ Φᵀ``;
3. the thin SVD ``Φ = U diag(s) Wᵀ`` once; then for every ridge ``λ`` (a whole validation grid
   from one factorisation) ``α = V_r μ_r^{-1/2} W diag(s / (s² + λ)) Uᵀ y``.

Step 3 is the SVD of the stacked system ``[Φ; √λ I]`` that GAP solves by QR, for all ``λ`` at
once. Relative ridges are taken, as everywhere in eqntk's experiments, relative to the mean
diagonal of the (here: Nyström) training Gram, ``mean_i ‖Φ_i‖²``.

Arrays are NumPy float64 (the factorisations run on the host, in LAPACK).
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import numpy as np

from . import linalg

__all__ = ["LandmarkBasis", "LandmarkModel", "landmark_basis", "landmark_model", "landmark_predict"]


class LandmarkBasis(NamedTuple):
    """Step 1 of the module docstring, for one landmark kernel: reusable across training sets.

    Attributes:
        proj: ``(m, r)`` ``V_r diag(μ_r)^{-1/2}``: landmark kernels → Nyström features.
        rank: ``r``, the landmark directions kept.
    """

    proj: np.ndarray
    rank: int


class LandmarkModel(NamedTuple):
    """A factorised landmark regression problem (see the module docstring).

    Attributes:
        proj: ``(m, r)`` ``V_r diag(μ_r)^{-1/2}``: landmark kernels → Nyström features.
        u: ``(n, q)`` left singular vectors of the training features ``Φ`` (``q = min(n, r)``).
        s: ``(q,)`` their singular values (descending).
        w: ``(r, q)`` right singular vectors.
        scale: ``mean_i ‖Φ_i‖²``, the mean diagonal of the Nyström training Gram (relative ridges).
        rank: ``r``, the landmark directions kept (``K_mm``'s eigenvalues above the cutoff).
    """

    proj: np.ndarray
    u: np.ndarray
    s: np.ndarray
    w: np.ndarray
    scale: float
    rank: int


def _matrix(a, name: str, shape: tuple) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or any(s is not None and d != s for d, s in zip(a.shape, shape)):
        want = ", ".join("·" if s is None else str(s) for s in shape)
        raise ValueError(f"{name} must have shape ({want}), got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf")
    return a


def landmark_basis(k_landmarks, *, psd_rtol: Optional[float] = None,
                   rcond: Optional[float] = None) -> LandmarkBasis:
    """The Nyström feature map of the landmark kernel ``K_mm`` (step 1 of the module docstring).

    ``O(m³)`` once; pass the result to :func:`landmark_model` for every training set that uses
    these landmarks. ``psd_rtol``, ``rcond`` as in :func:`landmark_model`.
    """
    k_mm = _matrix(k_landmarks, "k_landmarks", (None, None))
    m = k_mm.shape[0]
    k_mm, tau = linalg.gram(k_mm, "the landmark kernel k_landmarks", kernel_rtol=psd_rtol, dtype=np.float64)
    spec = linalg.spectrum(k_mm, 0.0, tau, "the landmark kernel k_landmarks")
    if rcond is not None and not (np.isfinite(rcond) and 0 <= rcond < 1):
        raise ValueError(f"rcond must be a number in [0, 1), got {rcond!r}")
    if rcond is None:
        rcond = m * np.finfo(np.float64).eps
    keep = spec.mu > rcond * float(np.max(spec.mu))
    if not np.any(keep):
        raise ValueError("the landmark kernel k_landmarks is zero (no landmark direction above round-off)")
    return LandmarkBasis(spec.vecs[:, keep] / np.sqrt(spec.mu[keep]), int(np.count_nonzero(keep)))


def landmark_model(k_train_landmarks, k_landmarks, *, psd_rtol: Optional[float] = None,
                   rcond: Optional[float] = None) -> LandmarkModel:
    """Factorise a landmark regression problem once (every ridge then costs ``O(n q)``).

    Args:
        k_train_landmarks: ``(n, m)`` kernel between the training inputs and the landmarks
            (molecules: ``K[a, j] = Σ_{i∈a} k(x_i, z_j)``, see :func:`eqntk.data.landmark_atoms`).
        k_landmarks: ``(m, m)`` kernel between the landmarks, or its :class:`LandmarkBasis`
            (:func:`landmark_basis`; then ``psd_rtol`` and ``rcond`` were applied there and must
            be left ``None``).
        psd_rtol: the kernels' relative accuracy (e.g. ~1e-6 for Grams summed from float32 tiles),
            as in :func:`eqntk.linalg.psd_tolerance`: ``K_mm`` is refused if it is indefinite beyond it.
        rcond: eigen-directions of ``K_mm`` with ``μ ≤ rcond · μ_max`` are dropped (default
            ``m·eps``; see the module docstring).

    Returns:
        the :class:`LandmarkModel`.
    """
    if isinstance(k_landmarks, LandmarkBasis):
        if psd_rtol is not None or rcond is not None:
            raise ValueError("psd_rtol and rcond belong to landmark_basis when k_landmarks is a LandmarkBasis")
        basis = k_landmarks
    else:
        basis = landmark_basis(k_landmarks, psd_rtol=psd_rtol, rcond=rcond)
    m = basis.proj.shape[0]
    k_nm = _matrix(k_train_landmarks, "k_train_landmarks", (None, m))
    if k_nm.shape[0] == 0:
        raise ValueError("empty training set: k_train_landmarks has no rows")
    phi = k_nm @ basis.proj
    u, s, wt = np.linalg.svd(phi, full_matrices=False)
    scale = float(np.mean(np.sum(phi**2, axis=1)))
    if not scale > 0:
        raise ValueError("the Nyström training Gram is zero: no training input sees any landmark")
    return LandmarkModel(basis.proj, u, s, wt.T, scale, basis.rank)


def landmark_predict(model: LandmarkModel, y_train, k_test_landmarks, ridges: Sequence[float], *,
                     relative: bool = True) -> np.ndarray:
    """Predictions of landmark ridge regression for each ridge of a grid.

    Args:
        model: from :func:`landmark_model` on the training inputs.
        y_train: ``(n,)`` or ``(n, k)`` targets.
        k_test_landmarks: ``(t, m)`` kernel between the inputs to predict and the landmarks.
        ridges: ridges ``λ ≥ 0`` (``λ = 0``: the minimum-norm least-squares fit).
        relative: ``λ = ridge · model.scale`` (the mean Nyström training diagonal), as in the
            experiments' ridge grids; ``False``: absolute.

    Returns:
        ``(len(ridges), t)`` or ``(len(ridges), t, k)`` predictions.
    """
    y = np.asarray(y_train, dtype=np.float64)
    n = model.u.shape[0]
    if y.shape[:1] != (n,) or y.ndim > 2:
        raise ValueError(f"y_train must have shape ({n},) or ({n}, k), got {y.shape}")
    kt = _matrix(k_test_landmarks, "k_test_landmarks", (None, model.proj.shape[0]))
    lam = np.asarray(ridges, dtype=np.float64).reshape(-1)
    if lam.size == 0 or not np.all(np.isfinite(lam)) or np.any(lam < 0):
        raise ValueError(f"ridges must be one or more finite numbers >= 0, got {list(ridges)!r}")
    lam = lam * model.scale if relative else lam
    c = model.u.T @ y.reshape(n, -1)                         # (q, k)
    g = (kt @ model.proj) @ model.w                          # (t, q)
    s = model.s
    tiny = s.size * np.finfo(np.float64).eps * (s[0] if s.size else 0.0)
    out = []
    for l_ in lam:
        with np.errstate(divide="ignore", invalid="ignore"):
            f = np.where(s > tiny, s / (s**2 + l_), 0.0)     # pseudo-inverse below round-off at λ = 0
        out.append(g @ (f[:, None] * c))
    return np.stack(out).reshape((lam.size, kt.shape[0]) + y.shape[1:])
