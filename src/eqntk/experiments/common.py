"""Shared helpers of the experiments: fixed-shape kernel calls, ridge selection, tables, JSON, plots."""

from __future__ import annotations

import json
import math
import os
import platform
import time
import warnings
from typing import Callable, Optional, Sequence

import numpy as np

__all__ = [
    "DEFAULT_RIDGES",
    "Timer",
    "padded_kernel",
    "select_ridge",
    "format_table",
    "write_json",
    "environment_info",
    "x64_enabled",
]

#: Ridge grid, relative to the mean diagonal of the training kernel.
DEFAULT_RIDGES = (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


def x64_enabled() -> bool:
    import jax

    return bool(jax.config.jax_enable_x64)


class Timer:
    """Wall-clock seconds of named steps: ``with timer("kernels"): ...``; ``timer.seconds`` is a dict."""

    def __init__(self):
        self.seconds: dict = {}
        self._t0 = time.perf_counter()

    def __call__(self, name: str):
        timer = self

        class _Ctx:
            def __enter__(self):
                self.t = time.perf_counter()

            def __exit__(self, *exc):
                timer.seconds[name] = timer.seconds.get(name, 0.0) + time.perf_counter() - self.t

        return _Ctx()

    @property
    def total(self) -> float:
        return time.perf_counter() - self._t0


def _pad_to(x: np.ndarray, n: int) -> np.ndarray:
    if x.shape[0] == n:
        return x
    reps = np.broadcast_to(x[:1], (n - x.shape[0],) + x.shape[1:])
    return np.concatenate([x, reps], axis=0)


def padded_kernel(kernel_fn: Callable, x1: np.ndarray, x2: Optional[np.ndarray] = None, *, get=("nngp", "ntk"),
                  tile: int = 128, store: Optional[str] = None, progress: Optional[bool] = None) -> dict:
    """``kernel_fn(x1, x2, get)`` on inputs padded to multiples of ``tile`` (then cropped).

    Every call then runs tiles of exactly ``tile × tile`` pairs, so one compilation serves all
    calls of a network (the driver would otherwise balance tiles to each call's size and
    recompile). ``x2=None``: the symmetric Gram of ``x1`` (upper tiles only).

    Returns ``{kind: (n1, n2) float64 NumPy array}`` for the kinds in ``get``.
    """
    kinds = (get,) if isinstance(get, str) else tuple(get)
    n1 = x1.shape[0]
    n2 = n1 if x2 is None else x2.shape[0]
    if n1 == 0 or n2 == 0:
        return {k: np.zeros((n1, n2)) for k in kinds}
    p1 = _pad_to(x1, tile * math.ceil(n1 / tile))
    p2 = None if x2 is None else _pad_to(x2, tile * math.ceil(n2 / tile))
    res = kernel_fn(p1, p2, kinds, tile_size=tile, progress=progress, store=store)
    return {k: np.asarray(getattr(res, k), dtype=np.float64)[:n1, :n2] for k in kinds}


#: rows from which :func:`select_ridge` factorises per ridge instead of decomposing once (its ``method='auto'``).
#: On a 2-core CPU at 4,000 rows the eigendecomposition took 5.9 s and a Cholesky factorisation 0.32 s; the
#: reduction to tridiagonal form streams ~2n³ bytes and turns memory bound once the matrix leaves the cache,
#: while the factorisation stays compute bound. n³ scaling alone gives 4.9 min against 14 s per ridge at
#: 14,000 rows and 34 against 2 min at 28,000 (N = 500 and 1,000 ethanol conformations with forces), so a
#: grid of ten ridges costs less by Cholesky there.
CHOLESKY_ROWS = 10_000


def select_ridge(k_train: np.ndarray, y_train: np.ndarray, k_val: np.ndarray, y_val: np.ndarray,
                 score: Callable[[np.ndarray, np.ndarray], float], ridges: Sequence[float] = DEFAULT_RIDGES,
                 higher_is_better: bool = False, psd_rtol: Optional[float] = None, with_coef: bool = False,
                 overwrite: bool = False, method: str = "eigh") -> tuple:
    """Kernel ridge regression for each relative ridge; the best on the validation split.

    The absolute ridge is ``r · mean(diag k_train)``. One eigendecomposition of ``k_train``
    (:func:`eqntk.linalg.spectrum`, float64) serves the whole grid; ridges whose ``K + r·I`` is
    numerically singular use the pseudo-inverse (``method='eigh'``, the default; see below for the other). Returns ``(best relative ridge, its validation
    score, [(r, score), ...])``; ``with_coef``: and the dual coefficients ``(K + r·scale·I)⁻¹ y_train``
    of the best ridge (from the same eigendecomposition: the model that was validated, without a
    second factorisation). ``psd_rtol``: the kernel's relative accuracy (Grams summed from
    kernels computed in float32 need ~1e-5, see :func:`psd_tolerance`); the PSD rule is that of
    :mod:`eqntk.linalg`, shared with :func:`fit_predict` (:func:`eqntk.predict.kernel_regression`).
    ``overwrite``: ``k_train`` may be destroyed (symmetrised and decomposed in place): the memory is
    ``k_train`` plus its eigenvectors, for Grams near the machine's size (``linalg.spectrum``).

    ``method``: ``'eigh'`` as above; ``'cholesky'``: one factorisation of ``K + r·scale·I`` per ridge
    (:func:`eqntk.linalg.shifted_solve`; memory ``K`` plus one work matrix). A ridge at which it is not
    numerically positive definite is skipped (where the pseudo-inverse would serve it); the PSD rule is
    certified by the factorisations, ``K + τ·μ_max·I`` positive definite (``μ_max`` by power iteration,
    one more factorisation where no ridge of the grid is that small), else ``K`` is refused as with
    ``'eigh'``; ``'auto'``: Cholesky from :data:`CHOLESKY_ROWS` rows. LAPACK's reduction to tridiagonal form streams the whole matrix
    once per column: its cost is bound by memory bandwidth once the Gram outgrows the cache.
    """
    from .. import linalg

    if method not in ("auto", "eigh", "cholesky"):
        raise ValueError(f"select_ridge: method must be 'auto', 'eigh' or 'cholesky', got {method!r}")
    k, rtol = linalg.gram(np.asarray(k_train), "training kernel", kernel_rtol=psd_rtol, dtype=np.float64,
                          overwrite=overwrite)
    scale = float(np.mean(np.diag(k)))
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"training kernel has a non-positive or non-finite mean diagonal ({scale})")
    if method == "cholesky" or (method == "auto" and k.shape[0] >= CHOLESKY_ROWS):
        return _select_ridge_cholesky(k, y_train, k_val, y_val, score, ridges, higher_is_better, rtol, scale,
                                      with_coef)
    spec = linalg.spectrum(k, 0.0, rtol, "training kernel", overwrite=overwrite)
    yv = spec.vecs.T @ np.asarray(y_train, dtype=np.float64).reshape(k.shape[0], -1)
    kv = np.asarray(k_val, dtype=np.float64) @ spec.vecs
    inf = np.array([np.inf])
    trials = []
    for r in ridges:
        shifted = linalg.shift(spec, r * scale)
        g = linalg.flow_weights(shifted.lam, inf, shifted.cutoff)[0]  # (n,): 1/(μ + r·scale), pseudo-inverse
        pred = (kv @ (yv * g[:, None])).reshape((kv.shape[0],) + np.shape(y_train)[1:])
        s = float(score(pred, y_val))
        if np.isfinite(s):
            trials.append((float(r), s))
    if not trials:
        raise ValueError("kernel regression failed for every ridge of the grid (use a ridge > 0)")
    pick = max if higher_is_better else min
    best = pick(trials, key=lambda t: t[1])
    if not with_coef:
        return best[0], best[1], trials
    shifted = linalg.shift(spec, best[0] * scale)
    g = linalg.flow_weights(shifted.lam, inf, shifted.cutoff)[0]
    coef = np.asarray(spec.vecs @ (yv * g[:, None])).reshape(np.shape(y_train))
    return best[0], best[1], trials, coef


def _select_ridge_cholesky(k: np.ndarray, y_train, k_val, y_val, score: Callable, ridges: Sequence[float],
                           higher_is_better: bool, rtol: float, scale: float, with_coef: bool) -> tuple:
    """:func:`select_ridge` by one Cholesky factorisation per ridge (its ``method='cholesky'``)."""
    import operator

    from .. import linalg

    y = np.asarray(y_train, dtype=np.float64).reshape(k.shape[0], -1)
    kv = np.asarray(k_val, dtype=np.float64)
    work = np.empty(k.shape, k.dtype)  # C-ordered whatever k is
    better = operator.gt if higher_is_better else operator.lt
    trials, best, solved = [], None, []
    for r in ridges:
        coef = linalg.shifted_solve(k, r * scale, y, work)
        if coef is None:
            continue
        solved.append(r * scale)
        s = float(score((kv @ coef).reshape((kv.shape[0],) + np.shape(y_train)[1:]), y_val))
        if np.isfinite(s):
            trials.append((float(r), s))
            if best is None or better(s, best[1]):
                best = (float(r), s, coef)
    # the PSD rule (linalg.check_psd: μ_min ≥ −τ·μ_max), certified by a factorisation at a ridge ≤ τ·μ_max
    tol = rtol * linalg.largest_eigenvalue(k)
    if not any(a <= tol for a in solved) and linalg.shifted_solve(k, tol, y[:, :1], work) is None:
        raise ValueError(f"training kernel is not positive semi-definite: K + {tol:.3e}·I does not factorise "
                         f"(the tolerated {rtol:.1e} times the largest eigenvalue); check the kernel computation, "
                         f"or pass psd_rtol= (the kernel's relative accuracy) to accept it")
    del work
    if best is None:
        raise ValueError("kernel regression failed for every ridge of the grid (use a larger ridge)")
    if not with_coef:
        return best[0], best[1], trials
    return best[0], best[1], trials, best[2].reshape(np.shape(y_train))


def fit_predict(k_train: np.ndarray, y_train: np.ndarray, k_test: np.ndarray, ridge_rel: float,
                psd_rtol: Optional[float] = None) -> np.ndarray:
    """Kernel ridge regression predictions with the relative ridge ``ridge_rel``.

    Where the Cholesky factorisation needs jitter (a Gram indefinite within its tolerance and a small ridge),
    the predictions are those of ``ridge + jitter``, not of the model :func:`select_ridge` validated (which
    clips the eigenvalues instead): a ``JitterWarning`` says so. The validated model's own predictions are
    ``k_test @ coef`` with ``select_ridge(..., with_coef=True)``'s ``coef`` (as ``md17.fit_forces`` does).
    """
    from .. import predict

    scale = float(np.mean(np.diag(k_train)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pred = np.asarray(predict.kernel_regression(k_train, y_train, k_test, ridge=ridge_rel * scale,
                                                    psd_rtol=psd_rtol))
    for w in caught:
        if issubclass(w.category, predict.JitterWarning):
            warnings.warn(f"fit_predict: these predictions are not those of the validated relative ridge "
                          f"{ridge_rel:g}: {w.message}", predict.JitterWarning, stacklevel=2)
        else:
            warnings.warn(w.message, w.category, stacklevel=2)
    return pred


def psd_tolerance(dtype: str, atoms: bool = False) -> float:
    """The relative accuracy stated for the experiments' Grams of ``dtype`` kernels (their ``psd_rtol``).

    It is the ``kernel_rtol`` of :func:`eqntk.linalg.psd_tolerance`: the tolerated relative
    negative eigenvalue is ``max(√eps, n·eps, psd_tolerance(dtype))``. SO(3) kernels integrated
    with ``SO3Pool(oversampling=2)`` are PSD only to ~1e-4 relative (the integrand at one
    rotation is not a PSD kernel; only its exact integral is), float32 round-off adds ~1e-6; the
    ridge chosen on the validation split absorbs both. ``atoms=True``: a Gram between single atom
    environments (the landmarks of :mod:`eqntk.landmarks`), which sees the quadrature error
    undiluted by the sums over a molecule's atoms (the default QM9 network's NTK: ~3e-6 relative
    at oversampling 4, ``benchmarks/results/qm9_oversampling_rbf.json``): 1e-4 in float64.
    """
    if dtype == "float32":
        return 1e-3
    return 1e-4 if atoms else 1e-6


def format_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A plain-text table with right-aligned columns (first column left-aligned)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    w = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r):
        return "  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r))

    out = [line(cells[0]), "  ".join("-" * x for x in w)]
    out += [line(r) for r in cells[1:]]
    return "\n".join(out)


def _jsonable(o):
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, (np.floating, float)):
        v = float(o)
        return v if math.isfinite(v) else None
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, np.ndarray):
        return _jsonable(o.tolist())
    return o


def write_json(path: str, obj: dict) -> str:
    """Write ``obj`` as indented JSON (NumPy scalars converted, non-finite floats → null)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(_jsonable(obj), f, indent=1)
    os.replace(tmp, path)
    return path


def environment_info() -> dict:
    """Versions and machine, recorded in every result file."""
    import jax

    import eqntk

    return {"eqntk": getattr(eqntk, "__version__", None), "jax": jax.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "devices": [str(d) for d in jax.devices()],
            "x64": x64_enabled(), "date": time.strftime("%Y-%m-%d %H:%M:%S")}


#: What the command line prints when a plot is skipped.
PLOT_SKIPPED = "matplotlib is not installed: PNG skipped (pip install 'eqntk[plot]')"


def plotting_available() -> bool:
    """Whether matplotlib (the optional ``plot`` extra) can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def plot_if_available(plot: Callable, result: dict, path: str) -> Optional[str]:
    """``plot(result, path)``, or ``None`` (nothing written) when matplotlib is not installed."""
    return plot(result, path) if plotting_available() else None


def pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend (``pip install 'eqntk[plot]'``)."""
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError("plotting needs matplotlib: pip install 'eqntk[plot]'") from e

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, ax, path: str) -> str:
    """Grid, legend, tight layout; write ``path`` (folders created) and close the figure."""
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    pyplot().close(fig)
    return path
