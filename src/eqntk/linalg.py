r"""The one solver: Gram validation, the PSD tolerance, Cholesky with jitter, spectra and flow weights.

Every eqntk function that factorises a kernel Gram matrix ([`eqntk.predict`][eqntk.predict],
[`eqntk.spectral`][eqntk.spectral], [`eqntk.dynamics`][eqntk.dynamics], `eqntk.experiments.common`)
goes through this module, so a Gram matrix is accepted or refused by all of them alike.

The tolerance rule
------------------
A Gram matrix ``K`` ``(n, n)`` with eigenvalues ``μ_1 ≤ … ≤ μ_n`` is accepted as positive
semi-definite when::

    μ_1 ≥ −τ · max_i |μ_i|,        τ = max(√eps, n·eps, kernel_rtol)

([`psd_tolerance`][eqntk.linalg.psd_tolerance]), and its negative eigenvalues are then clipped to 0.
The three terms:

* ``n·eps``: a backward-stable eigensolver (or Cholesky) returns the eigenvalues of ``K + E`` with
  ``‖E‖ ≲ n·eps·‖K‖``: a PSD matrix can come out with ``μ_1 ≈ −n·eps·μ_n``;
* ``√eps``: each entry of a kernel Gram is the result of a chain of non-linear maps (arccos,
  erf, sums over groups or pixels), each rounding; half the digits is the conventional floor
  for "zero within round-off" (``1.5e-8`` in float64, ``3.5e-4`` in float32);
* ``kernel_rtol``: the relative accuracy the *kernel* states when it is below the dtype's —
  a quadrature kernel is PSD only to its quadrature accuracy (e.g. ``SO3Pool`` with small
  oversampling, ~1e-4), a Gram summed from float32 tiles to ~1e-6. User functions pass it as
  ``psd_rtol=``; it can only widen the tolerance, never tighten it below round-off.

``eps`` is that of the *coarsest* dtype the Gram went through: the dtype it was given in and
the one it is factorised in (a float32 Gram factorised in float64 is still a float32 Gram).
The same ``τ`` bounds the asymmetry ``max|K − Kᵀ| ≤ τ · max|K|`` ([`gram`][eqntk.linalg.gram]).

Solvers
-------
* [`cholesky`][eqntk.linalg.cholesky] factorises ``K + r·I``. If it fails on a Gram matrix
  accepted by the rule, a jitter ``10^j · eps · μ_max`` (``j = 1, 2, …``; at least twice the
  missing ``−μ_1 − r``) is added to the diagonal until it succeeds, at most
  ``max_jitter · μ_max`` (default ``100 · τ``), and a
  [`JitterWarning`][eqntk.linalg.JitterWarning] reports it: results are those of ridge
  ``r + jitter``. When ``r > τ·max|diag K|`` could hide an indefinite ``K``,
  ``K + τ·max|diag K|·I`` is factorised as a certificate (success implies ``μ_1 ≥ −τ μ_n``), and
  only on failure are the eigenvalues computed and the rule applied.
  A NumPy Gram is factorised by [`cholesky_inplace`][eqntk.linalg.cholesky_inplace] (LAPACK's ``potrf``,
  blockwise above ``CHOLESKY_BLOCK`` rows: OpenBLAS's threaded ``potrf`` crashes on large matrices). A JAX
  Gram goes to ``jnp.linalg.cholesky``, which on CPU calls the same OpenBLAS ``potrf`` whole: factorise a
  large Gram as a NumPy array (28,000 rows crashed with 2 threads, 14,000 did not).
* [`spectrum`][eqntk.linalg.spectrum] is the eigendecomposition ``K = V diag(μ) Vᵀ`` (rule
  applied, ``μ`` clipped) with the spectrum ``λ = μ + r`` of ``K + r·I``;
  [`shift`][eqntk.linalg.shift] changes ``r`` without a new decomposition (one decomposition
  serves a ridge grid).
* [`flow_weights`][eqntk.linalg.flow_weights] are the spectral filters
  ``g(λ, s) = (1 − e^{−λ s}) / λ`` of gradient flow (``s = ∞``: ``1/λ``, kernel ridge
  regression), with a pseudo-inverse below the cutoff ``n·eps·λ_max`` (the ``rcond`` of
  ``numpy.linalg.lstsq``).

Arrays stay in their library and dtype: NumPy in, NumPy (and SciPy) linear algebra out; a JAX
array is factorised by jitted JAX functions (float64 needs ``jax_enable_x64``; this module never
changes JAX's configuration). The decisions (accept, refuse, jitter) are taken on the host.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
import scipy.linalg

__all__ = ["JitterWarning", "Spectrum", "psd_tolerance", "check_psd", "gram", "cholesky", "cho_solve",
           "shifted_solve", "largest_eigenvalue", "cholesky_inplace",
           "spectrum", "shift", "flow_weights"]

Array = Any
DType = Any


class JitterWarning(RuntimeWarning):
    """A Cholesky factorisation needed extra jitter on the diagonal (results use ridge + jitter)."""


class Spectrum(NamedTuple):
    """Eigendecomposition of a PSD Gram ``K = V diag(μ) Vᵀ`` and of ``K + r·I`` (ascending order).

    Attributes:
        lam: ``(n,)`` eigenvalues ``λ = μ + r`` of ``K + r·I``.
        mu: ``(n,)`` eigenvalues ``μ ≥ 0`` of ``K`` (round-off negatives clipped to 0).
        vecs: ``(n, n)`` orthonormal eigenvectors (columns).
        cutoff: ``n·eps·λ_max``: eigenvalues ``λ ≤ cutoff`` count as zero in inverses.
    """

    lam: Array
    mu: Array
    vecs: Array
    cutoff: float


# ----------------------------------------------------------------------------------------------
# The tolerance rule
# ----------------------------------------------------------------------------------------------


def _eps(dtypes: Union[DType, Sequence[DType]]) -> float:
    """``eps`` of the coarsest floating dtype among ``dtypes`` (float64's when there is none)."""
    dts = dtypes if isinstance(dtypes, (tuple, list)) else (dtypes,)
    eps = [float(jnp.finfo(d).eps) for d in dts if d is not None and jnp.issubdtype(d, jnp.floating)]
    return max(eps) if eps else float(np.finfo(np.float64).eps)


def psd_tolerance(n: int, dtype: Union[DType, Sequence[DType]] = np.float64,
                  kernel_rtol: Optional[float] = None) -> float:
    """The relative tolerance ``τ = max(√eps, n·eps, kernel_rtol)`` of an ``(n, n)`` Gram matrix.

    Args:
        n: size of the Gram matrix.
        dtype: its dtype, or a sequence of the dtypes it went through (the coarsest counts).
        kernel_rtol: the relative accuracy the kernel states (``None``: exact up to round-off).

    Returns:
        ``τ``: eigenvalues down to ``−τ · max|μ|`` are round-off (see the module docstring).
    """
    eps = _eps(dtype)
    floor = max(math.sqrt(eps), int(n) * eps)
    if kernel_rtol is None:
        return floor
    k = float(kernel_rtol)
    if not (math.isfinite(k) and k >= 0):
        raise ValueError(f"psd_rtol (the kernel's relative accuracy) must be a finite number >= 0, got {kernel_rtol!r}")
    return max(floor, k)


def _psd_error(name: str, mu_min: float, mu_max: float, rtol: float) -> ValueError:
    scale = max(abs(mu_min), abs(mu_max))
    return ValueError(
        f"{name} is not positive semi-definite: smallest eigenvalue {mu_min:.6e}, largest {mu_max:.6e} "
        f"(relative {mu_min / scale:.3e}, tolerated down to {-rtol:.1e}); a kernel Gram matrix must be PSD — "
        f"check the kernel computation, or pass psd_rtol= (the kernel's relative accuracy) to accept it")


def check_psd(values: Array, name: str = "the Gram matrix", rtol: Optional[float] = None) -> None:
    """Raise ``ValueError`` unless ``μ_min ≥ −rtol · max|μ|`` (the rule of the module docstring).

    Args:
        values: eigenvalues ``(n,)`` (any order), or a symmetric Gram matrix ``(n, n)`` whose
            eigenvalues are then computed.
        name: how the error message names the matrix.
        rtol: the tolerance ``τ`` (default [`psd_tolerance`][eqntk.linalg.psd_tolerance] of ``n`` and the
            dtype of ``values``).
    """
    values = _backend(values).asarray(values)
    if values.ndim == 2:
        values = _backend(values).eigvalsh(values)
    elif values.ndim != 1:
        raise ValueError(f"check_psd needs eigenvalues (n,) or a Gram matrix (n, n), got shape {values.shape}")
    if values.shape[0] == 0:
        return
    rtol = psd_tolerance(values.shape[0], values.dtype) if rtol is None else float(rtol)
    mu = np.asarray(values, dtype=np.float64)
    mu_min, mu_max = float(mu.min()), float(mu.max())
    if mu_min < -rtol * max(abs(mu_min), abs(mu_max)):
        raise _psd_error(name, mu_min, mu_max, rtol)


# ----------------------------------------------------------------------------------------------
# Backends: NumPy/SciPy for NumPy arrays, jitted JAX for JAX arrays
# ----------------------------------------------------------------------------------------------


@jax.jit
def _jax_stats(k):
    """``(all finite, max|k|, max|k − kᵀ|, max|diag k|)``."""
    return (jnp.all(jnp.isfinite(k)), jnp.max(jnp.abs(k)), jnp.max(jnp.abs(k - k.T)),
            jnp.max(jnp.abs(jnp.diag(k))))


@jax.jit
def _jax_chol(k, r):
    """Lower Cholesky factor of ``k + r·I`` and whether it succeeded (JAX returns NaNs on failure)."""
    c = jnp.linalg.cholesky(k + r * jnp.eye(k.shape[0], dtype=k.dtype))
    return c, jnp.all(jnp.isfinite(c))


_jax_eigh = jax.jit(jnp.linalg.eigh)


@jax.jit
def _jax_symmetrize(k):
    return 0.5 * (k + k.T)


@jax.jit
def _jax_cho_solve(c, b):
    return jsl.cho_solve((c, True), b)


@jax.jit
def _jax_flow_weights(lam, s, cutoff):
    return _flow_weights(jnp, lam, s, cutoff)


#: rows per block of the NumPy statistics and in-place symmetrisation (no n × n temporaries)
_BLOCK = 2048


class _NumPy:
    asarray = staticmethod(np.asarray)
    eigvalsh = staticmethod(np.linalg.eigvalsh)

    @staticmethod
    def eigh(k, overwrite: bool = False):
        """Eigenvalues (ascending) and eigenvectors of symmetric ``k``. ``overwrite``: a C-ordered ``k`` is used
        as LAPACK's work array (destroyed) and the MRRR driver needs O(n) more: ``k`` plus the eigenvectors in
        all, against a copy and a 2n² workspace otherwise (28,000 rows: 12.5 GB instead of 31 GB)."""
        if not overwrite:
            return np.linalg.eigh(k)
        # kᵀ is k (symmetric) and Fortran-ordered when k is C-ordered: LAPACK works on it without a copy
        return scipy.linalg.eigh(k.T, overwrite_a=True, check_finite=False, driver="evr")

    @staticmethod
    def stats(k):
        finite, scale, asym = True, 0.0, 0.0
        for s in range(0, k.shape[0], _BLOCK):
            rows = k[s:s + _BLOCK]
            finite = finite and bool(np.all(np.isfinite(rows)))
            scale = max(scale, float(np.max(np.abs(rows))))
            asym = max(asym, float(np.max(np.abs(rows - k[:, s:s + _BLOCK].T))))
        return finite, scale, asym, float(np.max(np.abs(np.diag(k))))

    @staticmethod
    def chol(k, r):
        # a copy, in k's floating dtype (other dtypes in float64, as numpy.linalg.cholesky factorises them)
        c = np.array(k, dtype=k.dtype if k.dtype in (np.float32, np.float64) else np.float64, order="C")
        c.flat[::c.shape[0] + 1] += r
        if not cholesky_inplace(c):
            return None, False
        for s in range(0, c.shape[0], _BLOCK):  # a clean lower factor, as numpy.linalg.cholesky's
            c[s:s + _BLOCK] = np.tril(c[s:s + _BLOCK], s)  # (row i of the block is row s + i)
        return c, True

    @staticmethod
    def symmetrize(k, overwrite: bool = False):
        if not overwrite:
            return 0.5 * (k + k.T)
        n = k.shape[0]
        for s in range(0, n, _BLOCK):
            for t in range(s, n, _BLOCK):
                avg = 0.5 * (k[s:s + _BLOCK, t:t + _BLOCK] + k[t:t + _BLOCK, s:s + _BLOCK].T)
                k[s:s + _BLOCK, t:t + _BLOCK] = avg
                k[t:t + _BLOCK, s:s + _BLOCK] = avg.T
        return k

    @staticmethod
    def cho_solve(c, b):
        return scipy.linalg.cho_solve((c, True), b)

    @staticmethod
    def to(values, like):
        return np.asarray(values, dtype=like.dtype)


class _JAX:  # JAX arrays are immutable: ``overwrite`` is accepted and ignored
    asarray = staticmethod(lambda a: a)
    eigvalsh = staticmethod(jax.jit(jnp.linalg.eigvalsh))

    @staticmethod
    def eigh(k, overwrite: bool = False):
        return _jax_eigh(k)

    @staticmethod
    def symmetrize(k, overwrite: bool = False):
        return _jax_symmetrize(k)

    cho_solve = staticmethod(_jax_cho_solve)

    @staticmethod
    def stats(k):
        ok, scale, asym, diag = _jax_stats(k)
        return bool(ok), float(scale), float(asym), float(diag)

    @staticmethod
    def chol(k, r):
        c, ok = _jax_chol(k, r)
        return c, bool(ok)

    @staticmethod
    def to(values, like):
        return jax.device_put(np.asarray(values, dtype=like.dtype))


def _backend(a: Array):
    return _JAX if isinstance(a, jax.Array) else _NumPy


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------


def gram(k: Array, name: str = "the Gram matrix", *, kernel_rtol: Optional[float] = None,
         dtype: Optional[DType] = None, overwrite: bool = False) -> tuple[Array, float]:
    """A validated, symmetrised Gram matrix ``(K + Kᵀ)/2`` ``(n, n)`` and its tolerance ``τ``.

    Refuses (``ValueError``) non-square or empty matrices, NaN/inf, non-floating dtypes and an
    asymmetry ``max|K − Kᵀ| > τ · max|K|``. Positive semi-definiteness is checked by the
    factorisations ([`cholesky`][eqntk.linalg.cholesky], [`spectrum`][eqntk.linalg.spectrum]), which need the
    eigenvalues anyway.

    Args:
        k: ``(n, n)`` floating NumPy or JAX array (kept in its library and dtype).
        name: how error messages name the matrix.
        kernel_rtol: the kernel's stated relative accuracy (``psd_rtol=`` of the callers).
        dtype: the dtype to work in (``k`` is cast to it; default: its own). The tolerance counts
            both it and the dtype ``k`` came in (a float32 Gram cast to float64 is a float32 Gram).
        overwrite: a NumPy ``k`` of that dtype may be symmetrised in place (and is returned): no
            ``n × n`` temporary, for Grams near the memory's size.

    Returns:
        ``(K_sym (n, n), τ)`` with ``τ = psd_tolerance(n, (dtype, k.dtype), kernel_rtol)``.
    """
    be = _backend(k)
    k = be.asarray(k)
    given = k.dtype
    if dtype is not None and k.dtype != dtype:
        k = k.astype(dtype)
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"{name} must be a square (n, n) Gram matrix, got shape {k.shape}")
    if k.shape[0] == 0:
        raise ValueError(f"empty training set: {name} has shape {k.shape}")
    if not jnp.issubdtype(k.dtype, jnp.floating):
        raise ValueError(f"{name} must be a floating-point array, got dtype {k.dtype}")
    rtol = psd_tolerance(k.shape[0], (k.dtype, given), kernel_rtol)
    finite, scale, asym, _ = be.stats(k)
    if not finite:
        raise ValueError(f"{name} contains NaN or inf")
    if asym > rtol * scale:
        raise ValueError(f"{name} is not symmetric: max |K - K^T| = {asym:.3e} (max |K| = {scale:.3e}, "
                         f"tolerated {rtol:.1e} relative)")
    return be.symmetrize(k, overwrite=overwrite or k.dtype != given), rtol


# ----------------------------------------------------------------------------------------------
# Cholesky with jitter
# ----------------------------------------------------------------------------------------------


def cholesky(k: Array, ridge: float, rtol: float, max_jitter: Optional[float] = None,
             name: str = "the Gram matrix") -> tuple[Array, float]:
    """Lower Cholesky factor ``L`` of ``K + r·I`` (``L Lᵀ``) and the ridge ``r`` actually used.

    ``r = ridge``, or ``ridge + jitter`` (with a [`JitterWarning`][eqntk.linalg.JitterWarning]) when the factorisation
    of an accepted Gram needs it; see the module docstring for the jitter policy.

    Args:
        k: symmetric ``(n, n)`` Gram matrix (from [`gram`][eqntk.linalg.gram]).
        ridge: ``>= 0``, absolute.
        rtol: the tolerance ``τ`` (from [`gram`][eqntk.linalg.gram] or [`psd_tolerance`][eqntk.linalg.psd_tolerance]).
        max_jitter: largest jitter tried, relative to ``max|μ|`` (default ``100 · τ``).
        name: how messages name the matrix.

    Returns:
        ``(L (n, n) lower triangular, r)``.

    Raises:
        ValueError: ``K`` is not PSD within ``τ``; ``K = 0`` with ``ridge = 0``; or the
            factorisation fails even with the largest jitter.
    """
    be = _backend(k)
    chol, ok = be.chol(k, ridge)
    if ok:
        # A large ridge could hide a significantly indefinite k: certify k + tau·I instead.
        tau = rtol * be.stats(k)[3]
        if ridge > tau and not be.chol(k, tau)[1]:
            check_psd(be.eigvalsh(k), name, rtol)
        return chol, ridge
    mu = np.asarray(be.eigvalsh(k), dtype=np.float64)
    check_psd(mu, name, rtol)
    mu_min, mu_max = float(mu[0]), float(mu[-1])
    scale = max(abs(mu_min), abs(mu_max))
    if scale == 0.0:
        raise ValueError(f"{name} is identically zero and ridge = 0: the regression is undefined (use ridge > 0)")
    eps = _eps(k.dtype)
    cap = (100.0 * rtol if max_jitter is None else float(max_jitter)) * scale
    jitter = max(10 * eps * scale, 2.0 * max(0.0, -mu_min - ridge))
    while jitter <= cap:
        chol, ok = be.chol(k, ridge + jitter)
        if ok:
            warnings.warn(
                f"Cholesky factorisation of {name} + {ridge:.3e}·I failed (eigenvalues in [{mu_min:.3e}, "
                f"{mu_max:.3e}]); added jitter {jitter:.3e} (= {jitter / scale:.1e} × largest eigenvalue) to the "
                f"diagonal: results are those of ridge = {ridge + jitter:.3e}. Pass a ridge explicitly to silence "
                f"this.", JitterWarning, stacklevel=3)
            return chol, ridge + jitter
        jitter *= 10.0
    raise ValueError(
        f"Cholesky factorisation of {name} + {ridge:.3e}·I failed even with jitter up to {cap:.3e} "
        f"(eigenvalues in [{mu_min:.3e}, {mu_max:.3e}]); use a larger ridge")


def cho_solve(chol: Array, rhs: Array) -> Array:
    """``(L Lᵀ)⁻¹ rhs`` with ``L`` ``(n, n)`` from [`cholesky`][eqntk.linalg.cholesky], ``rhs`` ``(n, *p)``."""
    return _backend(chol).cho_solve(chol, rhs)


# ----------------------------------------------------------------------------------------------
# Spectra and spectral filters
# ----------------------------------------------------------------------------------------------


def shifted_solve(k: np.ndarray, ridge: float, rhs: np.ndarray, work: np.ndarray) -> Optional[np.ndarray]:
    """``(K + ridge·I)⁻¹ rhs`` by a Cholesky factorisation in ``work``, or ``None`` where ``K + ridge·I`` is not
    numerically positive definite. NumPy only.

    Args:
        k: symmetric ``(n, n)`` (from [`gram`][eqntk.linalg.gram]); left as it is.
        ridge: absolute, added to the diagonal.
        rhs: ``(n,)`` or ``(n, m)``.
        work: a C-ordered ``(n, n)`` buffer of ``k``'s dtype, overwritten (reuse it across ridges: the memory
            is ``k`` and ``work``, no identity matrix or other copy).

    Returns:
        The solution, shaped as ``rhs``; ``None`` if the factorisation fails.
    """
    if not work.flags.c_contiguous or work.shape != k.shape:
        raise ValueError(f"shifted_solve: work must be a C-ordered {k.shape} array, got {work.shape}")
    n = k.shape[0]
    np.copyto(work, k)
    work.flat[::n + 1] += ridge
    if not cholesky_inplace(work):
        return None
    # the lower factor L of the C-ordered work is the upper factor Lᵀ of the Fortran-ordered workᵀ
    return scipy.linalg.cho_solve((work.T, False), rhs, check_finite=False)


#: order of the diagonal blocks of :func:`cholesky_inplace`: larger matrices are factorised blockwise
CHOLESKY_BLOCK = 2048


def cholesky_inplace(a: np.ndarray) -> bool:
    """The lower Cholesky factor ``L`` (``A = L Lᵀ``) of a C-ordered symmetric ``a`` ``(n, n)``, in place.

    Up to ``CHOLESKY_BLOCK`` rows LAPACK's ``potrf`` factorises ``a``; larger matrices are factorised
    blockwise (right-looking): ``potrf`` on each ``CHOLESKY_BLOCK`` diagonal block, a triangular solve for the
    panel below it and a matrix product for the trailing lower triangle, one block column at a time.
    OpenBLAS's own threaded ``potrf`` writes past its buffers and crashes the process (SIGSEGV) on large
    matrices: SciPy 1.17's OpenBLAS 0.3.30, 28,000 rows, 2 threads (``benchmarks/openblas_potrf.py``
    reproduces it); on blocks it runs as for small ones. The flops are those of ``potrf`` (``n³/3``);
    memory: ``a`` plus about three panels (``n × CHOLESKY_BLOCK`` each: the panel solve's input and output,
    the trailing product; 1.4 GB at 28,000 rows in float64).

    Args:
        a: C-ordered, float32 or float64, finite (as [`gram`][eqntk.linalg.gram] checks: LAPACK does not
            report NaN pivots); its lower triangle (diagonal included) is overwritten with ``L``, the strictly
            upper triangle with intermediate values (ignore it).

    Returns:
        ``True``, or ``False`` when ``a`` is not numerically positive definite (``a`` is then partly
        overwritten).
    """
    if not a.flags.c_contiguous or a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"cholesky_inplace: a must be a square C-ordered array, got {a.shape}")
    if a.dtype not in (np.float32, np.float64):
        raise ValueError(f"cholesky_inplace: a must be float32 or float64, got {a.dtype}")
    (potrf,) = scipy.linalg.get_lapack_funcs(("potrf",), (a,))
    n, b = a.shape[0], CHOLESKY_BLOCK
    for j in range(0, n, b):
        e = min(j + b, n)
        # the C-ordered diagonal block is its own transpose: potrf's upper factor of it, transposed, is L₁₁
        u, info = potrf(a[j:e, j:e].T, lower=False, clean=True, overwrite_a=True)
        if info != 0:
            if info < 0:
                raise RuntimeError(f"cholesky_inplace: LAPACK potrf argument {-info} is invalid")
            return False
        if not np.shares_memory(u, a):  # (a block of a larger a is copied by f2py; a whole a is not)
            a[j:e, j:e] = u.T
        if e == n:
            break
        # the panel: L₂₁ = A₂₁ L₁₁⁻ᵀ, i.e. L₂₁ᵀ = L₁₁⁻¹ A₂₁ᵀ
        a[e:, j:e] = scipy.linalg.solve_triangular(u.T, a[e:, j:e].T, lower=True, check_finite=False).T
        panel = a[e:, j:e]
        for c in range(e, n, b):  # the trailing lower triangle: A₂₂ −= L₂₁ L₂₁ᵀ, one block column at a time
            d = min(c + b, n)
            a[c:, c:d] -= panel[c - e:] @ panel[c - e:d - e].T
    return True


def largest_eigenvalue(k: np.ndarray, steps: int = 30, seed: int = 0) -> float:
    """A lower bound on the largest eigenvalue of a symmetric PSD ``(n, n)`` matrix (power iteration).

    Args:
        k: the matrix (NumPy).
        steps: products with ``k``; a Gram matrix's top eigenvalue is usually well separated, and the
            Rayleigh quotient converges quadratically to it.
        seed: of the random start.

    Returns:
        The Rayleigh quotient after ``steps`` products (``≤ μ_max``).
    """
    v = np.random.default_rng(seed).normal(size=k.shape[0])
    mu = 0.0
    for _ in range(steps):
        w = k @ v
        mu = float(v @ w) / float(v @ v)
        norm = np.linalg.norm(w)
        if norm == 0:
            return 0.0
        v = w / norm
    return mu


def spectrum(k: Array, ridge: float = 0.0, rtol: Optional[float] = None,
             name: str = "the Gram matrix", overwrite: bool = False) -> Spectrum:
    """Eigendecomposition of ``K`` (rule applied, round-off negatives clipped) and spectrum of ``K + ridge·I``.

    Args:
        k: symmetric ``(n, n)`` Gram matrix (from [`gram`][eqntk.linalg.gram]).
        ridge: ``>= 0``, absolute.
        rtol: the tolerance ``τ`` (default [`psd_tolerance`][eqntk.linalg.psd_tolerance] of ``n`` and ``k.dtype``).
        name: how the error message names the matrix.
        overwrite: a NumPy ``k`` may be destroyed (LAPACK works in it): memory ``k`` plus the
            eigenvectors, against twice as much more otherwise.

    Returns:
        [`Spectrum`][eqntk.linalg.Spectrum] with ``mu (n,)``, ``lam = mu + ridge (n,)``, ``vecs (n, n)``, ascending.
    """
    be = _backend(k)
    rtol = psd_tolerance(k.shape[0], k.dtype) if rtol is None else rtol
    mu, v = be.eigh(k, overwrite=overwrite)
    mu_np = np.asarray(mu, dtype=np.float64)
    check_psd(mu_np, name, rtol)
    mu_np = np.maximum(mu_np, 0.0)
    return shift(Spectrum(None, be.to(mu_np, k), v, 0.0), ridge)


def shift(spec: Spectrum, ridge: float) -> Spectrum:
    """The same eigendecomposition for ``K + ridge·I``: ``lam = mu + ridge``, cutoff ``n·eps·lam_max``."""
    be = _backend(spec.vecs)
    mu = np.asarray(spec.mu, dtype=np.float64)
    lam = mu + float(ridge)
    cutoff = mu.shape[0] * _eps(spec.vecs.dtype) * float(lam[-1])
    return Spectrum(be.to(lam, spec.vecs), spec.mu, spec.vecs, cutoff)


def _flow_weights(xp, lam, s, cutoff):
    lam = lam[None, :]
    s = s[:, None]
    inf = xp.isinf(s)
    s_fin = xp.where(inf, 0, s)
    x = lam * s_fin
    x_safe = xp.where(x > 0, x, 1)
    phi = xp.where(x > 0, -xp.expm1(-x_safe) / x_safe, 1)
    keep = lam > cutoff
    inv = xp.where(keep, 1 / xp.where(keep, lam, 1), 0)
    return xp.where(inf, inv, s_fin * phi)


def flow_weights(lam: Array, s: Array, cutoff: float) -> Array:
    """``g(λ, s) = (1 − e^{−λ s}) / λ`` for eigenvalues ``lam (n,) >= 0``, scaled times ``s (T,)``: ``(T, n)``.

    ``g`` is evaluated as ``s · φ(λ s)``, ``φ(x) = −expm1(−x)/x``, ``φ(0) = 1``: stable as
    ``λ s → 0`` (``g → s``). ``s = inf`` gives ``1/λ`` (kernel ridge regression), and 0 where
    ``λ <= cutoff`` (pseudo-inverse). NumPy in, NumPy out; JAX arrays use a jitted version.
    """
    if isinstance(lam, jax.Array) or isinstance(s, jax.Array):
        return _jax_flow_weights(lam, s, cutoff)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return _flow_weights(np, np.asarray(lam), np.asarray(s, dtype=np.asarray(lam).dtype), cutoff)
