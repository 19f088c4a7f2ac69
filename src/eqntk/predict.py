r"""Kernel regression and infinite-width training dynamics from Gram matrices.

Everything here acts on Gram matrices — the NNGP ``K`` or the NTK ``Θ`` of any
network (or any other positive semi-definite kernel) — and, in
:func:`gradient_descent_mse_ensemble`, on a ``kernel_fn(x1, x2, get)`` that
returns a named tuple with ``.nngp`` / ``.ntk`` fields (an eqntk or
neural-tangents ``kernel_fn``).

Notation
--------
``n`` training points, ``m`` test points, targets ``y`` of shape ``(n,)`` or
``(n, k)`` (any trailing shape ``(n, *out)`` works; outputs share the kernel,
i.e. the kernel is ``Θ ⊗ I_k``). ``Θ`` is the train-train Gram matrix
``(n, n)``, ``Θ_*`` the test-train one ``(m, n)``, ``K_**`` the test-test NNGP
``(m, m)``. ``λ ≥ 0`` is the ridge (``ridge``).

Time convention (read this)
---------------------------
The loss is a MEAN over the ``n`` training points and a SUM over the ``k``
outputs::

    L(θ) = 1/(2n) Σ_i |f(x_i) − y_i|²,      dθ/dt = −η ∇_θ L     (η = learning_rate)

so, for the linearised (infinite-width) network, the function-space gradient
flow is::

    df/dt = −(η/n) Θ (f − y).

``t`` counts gradient-descent *steps* of size ``η`` (continuous, may be
fractional): discrete GD on ``L`` with step ``η`` follows this flow for small
``η`` (it is stable for ``η < 2n / λ_max(Θ)``). Only ``η t / n`` matters.

*Mapping to neural-tangents.* ``nt.predict.gradient_descent_mse[_ensemble]``
normalises the loss by ``y_train.size = n·k`` instead of ``n``
(``df/dt = −η/(n k) Θ (f − y)``). For scalar outputs (``k = 1``) the two agree;
for ``k`` outputs eqntk at time ``t`` equals neural-tangents at time ``k·t``
(same ``learning_rate``). neural-tangents' ``diag_reg`` is by default relative
(``diag_reg · trace(Θ)/n``); here ``ridge`` is absolute everywhere, except in
:func:`gradient_descent_mse_ensemble`, which keeps neural-tangents'
``diag_reg`` / ``diag_reg_absolute_scale`` semantics.

Mean predictions (ensemble over initialisations)
------------------------------------------------
An infinite ensemble of infinite-width networks starts from outputs of mean 0,
so the mean prediction solves the flow from ``f(0) = 0``. In the eigenbasis
``Θ + λI = V diag(λ_i) Vᵀ``::

    mean_*(t) = Θ_* V diag(g_i(t)) Vᵀ y,       g_i(t) = (1 − e^{−λ_i s}) / λ_i,   s = η t / n.

``g_i`` is evaluated as ``s · φ(λ_i s)`` with ``φ(x) = −expm1(−x)/x``,
``φ(0) = 1``: stable for eigenvalues near zero (``g → s`` as ``λ → 0``). At
``t = ∞`` (``np.inf``), ``g_i = 1/λ_i``, i.e. kernel ridge regression
``Θ_* (Θ + λI)⁻¹ y``; eigenvalues below ``n·eps·λ_max`` (only possible when
``ridge ≈ 0`` and ``Θ`` is singular) get ``g = 0`` (pseudo-inverse, the exact
``t → ∞`` limit of the predictions for an exactly singular ``Θ``). Train
predictions are the same formula with ``Θ_* = Θ``.

*NTK ensemble*: the kernel is the NTK (all layers trained). *NNGP ensemble*:
the same dynamics with ``Θ → K`` — training only the readout layer; at
``t = ∞`` its mean and covariance are the Bayesian GP posterior.

With ``ridge = λ > 0`` the flow is that of the linearised model with the
penalty ``λ/(2n) |θ − θ_0|²`` (weight decay towards the initialisation):
``df/dt = −(η/n) [Θ (f − y) + λ f]`` from ``f(0) = 0``; at ``t = ∞`` it is
kernel ridge regression with the same ridge (note: neural-tangents' train-set
predictions ignore the ridge, ours do not).

Covariance (Lee et al. 2019, "Wide neural networks of any depth evolve as
linear models under gradient descent")
---------------------------------------------------------------------------
Initial outputs are the NNGP prior ``f(0) ~ GP(0, K)``; the ridge is treated as
observation noise added to the initial train outputs
(``Cov f_train(0) = K + λI``). With ``A(t) = V diag(g_i(t)) Vᵀ`` (eigenbasis
of ``Θ + λI``) and ``B = A Θ_*ᵀ``::

    Cov_*(t) = K_** − K_* B − Bᵀ K_*ᵀ + Bᵀ (K + λI) B.

For the NNGP ensemble (``Θ = K``) this is
``K_** − K_* (K+λI)⁻¹ (I − e^{−2η(K+λI)t/n}) K_*ᵀ``: the prior ``K_**`` at
``t = 0`` and the GP posterior ``K_** − K_* (K + λI)⁻¹ K_*ᵀ`` (observation
noise ``λ``) at ``t = ∞``. With ``λ = 0`` both formulas agree with
neural-tangents.

Numerics and validation
-----------------------
All functions validate their inputs and raise ``ValueError`` with an explicit
message for: non-square / mismatched shapes, empty training sets, NaN/inf,
negative ridge or times, non-positive learning rate, asymmetric Gram matrices,
and Gram matrices that are significantly non-PSD. The factorisations are those of
:mod:`eqntk.linalg`, with its one tolerance rule: a Gram matrix is PSD when its smallest
eigenvalue is ``≥ −τ · max|eigenvalue|``, ``τ = max(sqrt(eps), n·eps, psd_rtol)`` (``psd_rtol``:
the kernel's stated relative accuracy, e.g. of a quadrature kernel; it can only widen ``τ``), and
round-off below it is clipped to 0. Infinite-time regression uses a Cholesky factorisation of
``Θ + λI``; if it fails on a PSD (within tolerance) Gram matrix, a jitter ``10^j · eps · λ_max``
is added to the diagonal, increasing until it succeeds (at most ``max_jitter · λ_max``, default
``100 · τ``), and a :class:`JitterWarning` reports the jitter used (results are those of ridge
``λ + jitter``). Computations run in JAX in the dtype of the inputs (float64 needs
``jax_enable_x64``; this module never changes JAX's configuration). The functions are not meant
to be jitted (validation inspects values); the work inside is JAX linear algebra.

Example
-------
>>> import jax; jax.config.update("jax_enable_x64", True)
>>> import numpy as np
>>> from eqntk import predict
>>> rng = np.random.default_rng(0)
>>> x, xt = rng.normal(size=(10, 3)), rng.normal(size=(4, 3))
>>> def kernel_fn(x1, x2=None, get=("nngp", "ntk")):   # any eqntk kernel_fn works
...     x2 = x1 if x2 is None else x2
...     nngp = np.exp(-0.5 * ((x1[:, None] - x2[None]) ** 2).sum(-1))
...     import collections; Kern = collections.namedtuple("Kernel", "nngp ntk")
...     k = Kern(nngp, 2.0 * nngp)
...     return getattr(k, get) if isinstance(get, str) else k
>>> labels = rng.integers(0, 3, size=10)
>>> y = predict.one_hot(labels, 3)
>>> k = kernel_fn(x)                                            # train-train
>>> kt = kernel_fn(xt, x)                                       # test-train
>>> f_inf = predict.kernel_regression(k.ntk, y, kt.ntk, ridge=1e-6)    # (4, 3)
>>> flow = predict.gradient_flow(k.ntk, y, [0.0, 10.0, np.inf], kt.ntk)
>>> flow.test.shape, flow.train.shape                           # (times, m, k), (times, n, k)
((3, 4, 3), (3, 10, 3))
>>> post = predict.gp_inference(k.nngp, y, kt.nngp, np.diag(kernel_fn(xt).nngp), ridge=1e-2)
>>> post.mean.shape, post.covariance.shape                      # variances only: diagonal given
((4, 3), (4,))
>>> predict_fn = predict.gradient_descent_mse_ensemble(kernel_fn, x, y, learning_rate=1.0)
>>> out = predict_fn(t=100.0, x_test=xt, get="ntk", compute_cov=True)
>>> out.mean.shape, out.covariance.shape
((4, 3), (4, 4))
>>> acc = predict.accuracy(out.mean, labels[:4])               # fraction of correct argmaxes
"""

from __future__ import annotations

import collections
from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np

from . import linalg
from .core.checks import check_real
from .linalg import JitterWarning

__all__ = [
    "Gaussian",
    "FlowPrediction",
    "JitterWarning",
    "one_hot",
    "predict_class",
    "accuracy",
    "kernel_regression",
    "gp_inference",
    "gradient_flow",
    "gradient_flow_covariance",
    "gradient_descent_mse_ensemble",
]

Array = Any
Times = Union[float, Sequence[float], Array]

_KINDS = ("nngp", "ntk")


class Gaussian(NamedTuple):
    """Mean and covariance (``(m, m)``) or variance (``(m,)``) of Gaussian predictions.

    ``covariance`` is ``None`` when it was not requested.
    """

    mean: Array
    covariance: Optional[Array]


class FlowPrediction(NamedTuple):
    """Mean predictions along gradient flow.

    ``train``: shape ``t.shape + y.shape``; ``test``: ``t.shape + (m,) + y.shape[1:]``,
    or ``None`` when no test kernel was given.
    """

    train: Array
    test: Optional[Array]


# ----------------------------------------------------------------------------------------------
# Jitted numerical kernels (private; one compilation per shape, scalars are traced)
# ----------------------------------------------------------------------------------------------


@jax.jit
def _all_finite(a):
    return jnp.all(jnp.isfinite(a))


@jax.jit
def _cho_predict(chol, y, kt, r):
    """``kt (K+rI)⁻¹ y``, or ``y − r (K+rI)⁻¹ y`` (train points) when ``kt`` is None; ``y`` is ``(n, *out)``."""
    n = y.shape[0]
    alpha = jsl.cho_solve((chol, True), y.reshape(n, -1))
    if kt is None:
        return y - r * alpha.reshape(y.shape)
    return (kt @ alpha).reshape(kt.shape[:1] + y.shape[1:])


@jax.jit
def _cho_posterior_cov(chol, kt, ktt):
    """``ktt − kt (K+rI)⁻¹ ktᵀ``, or its diagonal when ``ktt`` is a vector."""
    w = jsl.solve_triangular(chol, kt.T, lower=True)  # (n, m): L⁻¹ K_*ᵀ
    if ktt.ndim == 1:
        return ktt - jnp.sum(w * w, axis=0)
    return ktt - w.T @ w


# ----------------------------------------------------------------------------------------------
# Validation helpers (private)
# ----------------------------------------------------------------------------------------------


def _to_jax(a: Array, dtype=None) -> jnp.ndarray:
    """A JAX array (``device_put``, which, unlike ``jnp.asarray``, compiles nothing per shape)."""
    if not isinstance(a, jax.Array):
        a = jax.device_put(np.asarray(a) if dtype is None else np.asarray(a, dtype=dtype))
    return a if dtype is None or a.dtype == dtype else a.astype(dtype)


def _dtype_of(a: Array):
    return a.dtype if isinstance(a, jax.Array) else jax.dtypes.canonicalize_dtype(np.asarray(a).dtype)


def _as_float_array(a: Array, name: str, dtype=None) -> jnp.ndarray:
    a = _to_jax(a)
    if dtype is not None and a.dtype != dtype:
        a = a.astype(dtype)
    elif not jnp.issubdtype(a.dtype, jnp.floating):
        a = a.astype(jnp.result_type(float))
    if not bool(_all_finite(a)):
        raise ValueError(f"{name} contains NaN or inf")
    return a


def _common_dtype(*arrays: Array):
    """The floating dtype of the computation: promotion of the floating inputs (default float)."""
    dts = [_dtype_of(a) for a in arrays if a is not None]
    fdts = [d for d in dts if jnp.issubdtype(d, jnp.floating)]
    if not fdts:
        return jnp.result_type(float)
    return jnp.result_type(*fdts)


def _check_ridge(ridge: float, name: str = "ridge") -> float:
    return check_real("eqntk.predict", name, ridge, lo=0.0)


def _check_learning_rate(learning_rate: float) -> float:
    return check_real("eqntk.predict", "learning_rate", learning_rate, lo=0.0, strict=True)


def _gram(k: Array, name: str, dtype, rtol: Optional[float]) -> tuple[jnp.ndarray, float]:
    """Validated, symmetrised ``(n, n)`` JAX Gram matrix in ``dtype`` and its tolerance (:func:`eqntk.linalg.gram`)."""
    return linalg.gram(_to_jax(k), name, kernel_rtol=rtol, dtype=dtype)


def _targets(y: Array, n: int, dtype) -> tuple[jnp.ndarray, tuple[int, ...]]:
    """``y`` (shape ``(n, *out)``) validated and in ``dtype``, and ``out``."""
    y = _to_jax(y)
    if y.ndim == 0:
        raise ValueError("y_train must have shape (n,) or (n, k), got a scalar")
    if y.shape[0] != n:
        raise ValueError(f"y_train has {y.shape[0]} rows (shape {y.shape}) but the train Gram matrix is {n} x {n}")
    y = _as_float_array(y, "y_train", dtype)
    return y, tuple(y.shape[1:])


def _cross(k: Array, name: str, n: int, dtype) -> jnp.ndarray:
    k = _to_jax(k)
    if k.ndim != 2 or k.shape[1] != n:
        raise ValueError(f"{name} must have shape (m, n) with n = {n} training points, got shape {k.shape}")
    return _as_float_array(k, name, dtype)


def _test_test(k: Array, name: str, m: int, dtype) -> jnp.ndarray:
    k = _to_jax(k)
    if k.shape not in ((m, m), (m,)):
        raise ValueError(f"{name} must have shape ({m}, {m}) (covariance) or ({m},) (variances only), "
                         f"got shape {k.shape}")
    return _as_float_array(k, name, dtype)


def _scaled_times(t: Times, scale: float, dtype) -> jnp.ndarray:
    """Validated times ``t`` (any shape, ``>= 0``, ``inf`` allowed) times ``scale = η/n``."""
    ta = np.asarray(t, dtype=np.float64)
    if np.any(np.isnan(ta)):
        raise ValueError("times t contain NaN")
    if np.any(ta < 0):
        raise ValueError(f"times must be >= 0 (np.inf allowed), got min(t) = {ta.min()}")
    return _to_jax(scale * ta, dtype)


# ----------------------------------------------------------------------------------------------
# Classification helpers
# ----------------------------------------------------------------------------------------------


def one_hot(labels: Array, num_classes: Optional[int] = None, *, centered: bool = False, dtype=None) -> jnp.ndarray:
    """One-hot MSE regression targets for integer class labels.

    Args:
        labels: integer labels in ``[0, num_classes)``, shape ``(n,)``.
        num_classes: number of classes ``C`` (default ``max(labels) + 1``).
        centered: subtract ``1/C`` from every entry (zero-mean targets; argmax unchanged).
        dtype: output dtype (default: JAX's default float, float64 under x64).

    Returns:
        Targets of shape ``(n, C)``.
    """
    lab = np.asarray(labels)
    if lab.ndim != 1:
        raise ValueError(f"labels must have shape (n,), got {lab.shape}")
    if lab.size and not np.issubdtype(lab.dtype, np.integer):
        if not np.all(lab == np.round(lab)):
            raise ValueError("labels must be integers")
        lab = lab.astype(np.int64)
    lab = lab.astype(np.int64)
    if num_classes is None:
        if lab.size == 0:
            raise ValueError("num_classes is required for empty labels")
        num_classes = int(lab.max()) + 1
    num_classes = int(num_classes)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if lab.size and (lab.min() < 0 or lab.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got range [{lab.min()}, {lab.max()}]")
    dtype = jnp.result_type(float) if dtype is None else dtype
    y = (np.arange(num_classes)[None, :] == lab[:, None]).astype(np.float64)
    if centered:
        y = y - 1.0 / num_classes
    return _to_jax(y.astype(dtype))


def predict_class(outputs: Array) -> jnp.ndarray:
    """Predicted classes ``argmax`` over the last axis: ``(..., m, C) -> (..., m)`` integers."""
    outputs = jnp.asarray(outputs)
    if outputs.ndim < 1:
        raise ValueError("outputs must have a class axis (last axis)")
    return jnp.argmax(outputs, axis=-1)


def accuracy(outputs: Array, labels: Array) -> jnp.ndarray:
    """Fraction of correct argmax predictions.

    Args:
        outputs: predictions of shape ``(..., m, C)`` (e.g. with leading time axes).
        labels: integer labels ``(m,)`` or one-hot / MSE targets ``(m, C)`` (argmax taken).

    Returns:
        Accuracy of shape ``outputs.shape[:-2]`` (a scalar for ``(m, C)`` outputs).
    """
    outputs = jnp.asarray(outputs)
    labels = jnp.asarray(labels)
    if outputs.ndim < 2:
        raise ValueError(f"outputs must have shape (..., m, C), got {outputs.shape}")
    if labels.ndim == 2:
        if labels.shape != outputs.shape[-2:]:
            raise ValueError(f"one-hot labels shape {labels.shape} != outputs' last two axes {outputs.shape[-2:]}")
        labels = jnp.argmax(labels, axis=-1)
    elif labels.ndim != 1 or labels.shape[0] != outputs.shape[-2]:
        raise ValueError(f"labels must have shape ({outputs.shape[-2]},) or {outputs.shape[-2:]}, got {labels.shape}")
    return jnp.mean(predict_class(outputs) == labels, axis=-1)


# ----------------------------------------------------------------------------------------------
# Infinite time: kernel (ridge) regression and GP inference
# ----------------------------------------------------------------------------------------------


def kernel_regression(k_train_train: Array, y_train: Array, k_test_train: Optional[Array] = None, *,
                      ridge: float = 0.0, psd_rtol: Optional[float] = None,
                      max_jitter: Optional[float] = None) -> jnp.ndarray:
    """Kernel (ridge) regression ``K_* (K + ridge·I)⁻¹ y`` by Cholesky factorisation.

    Equals the ``t = ∞`` mean of :func:`gradient_flow` with the same ridge (NTK: the trained
    network ensemble; NNGP: the GP posterior mean with observation noise ``ridge``).

    Args:
        k_train_train: train Gram matrix ``(n, n)`` (NNGP or NTK), symmetric PSD.
        y_train: targets ``(n,)`` or ``(n, k)``.
        k_test_train: test-train kernel ``(m, n)``; ``None`` predicts on the training points
            (``y − ridge (K + ridge·I)⁻¹ y``, i.e. ``y`` itself for ``ridge = 0``).
        ridge: absolute diagonal regulariser ``>= 0`` (same units as the kernel).
        psd_rtol: the kernel's relative accuracy; the PSD tolerance is
            ``max(sqrt(eps), n·eps, psd_rtol)`` (:func:`eqntk.linalg.psd_tolerance`).
        max_jitter: largest relative jitter tried if the Cholesky factorisation fails
            (default ``100 ·`` the PSD tolerance); a :class:`JitterWarning` is emitted when jitter is used.

    Returns:
        Predictions ``(m,) + y.shape[1:]`` (or ``y.shape`` on the training points).

    Raises:
        ValueError: bad shapes, NaN/inf, negative ridge, non-PSD Gram, or a factorisation that
            fails even with the largest jitter.
    """
    ridge = _check_ridge(ridge)
    dtype = _common_dtype(k_train_train, k_test_train)
    k, rtol = _gram(k_train_train, "k_train_train", dtype, psd_rtol)
    n = k.shape[0]
    y, out = _targets(y_train, n, dtype)
    kt = None if k_test_train is None else _cross(k_test_train, "k_test_train", n, dtype)
    chol, r = linalg.cholesky(k, ridge, rtol, max_jitter, "k_train_train")
    if kt is None and r == 0:
        return y
    return _cho_predict(chol, y, kt, r)


def gp_inference(k_train_train: Array, y_train: Array, k_test_train: Array, k_test_test: Optional[Array], *,
                 ridge: float = 0.0, psd_rtol: Optional[float] = None,
                 max_jitter: Optional[float] = None) -> Gaussian:
    """Gaussian-process posterior (NNGP inference) with observation noise ``ridge``.

    ``mean = K_* (K + σ²I)⁻¹ y``, ``covariance = K_** − K_* (K + σ²I)⁻¹ K_*ᵀ`` (``σ² = ridge``), the
    posterior of the noise-free latent function at the test points (add ``σ²`` for noisy test
    observations). Computed with a Cholesky factorisation (jitter policy as in
    :func:`kernel_regression`). For posterior on the training points pass ``k_train_train``
    for ``k_test_train`` and ``k_test_test``.

    Args:
        k_train_train: NNGP Gram matrix of the training points ``(n, n)``.
        y_train: targets ``(n,)`` or ``(n, k)`` (outputs are independent with a shared covariance).
        k_test_train: ``(m, n)``.
        k_test_test: ``(m, m)`` for the full covariance, ``(m,)`` (its diagonal) for variances only,
            or ``None`` for the mean only.
        ridge: observation-noise variance ``σ² >= 0``.

    Returns:
        ``Gaussian(mean (m,) + y.shape[1:], covariance (m, m) | variance (m,) | None)``.
    """
    ridge = _check_ridge(ridge)
    dtype = _common_dtype(k_train_train, k_test_train, k_test_test)
    k, rtol = _gram(k_train_train, "k_train_train", dtype, psd_rtol)
    n = k.shape[0]
    y, out = _targets(y_train, n, dtype)
    kt = _cross(k_test_train, "k_test_train", n, dtype)
    m = kt.shape[0]
    ktt = None if k_test_test is None else _test_test(k_test_test, "k_test_test", m, dtype)
    chol, _ = linalg.cholesky(k, ridge, rtol, max_jitter, "k_train_train")
    mean = _cho_predict(chol, y, kt, 0.0)
    if ktt is None:
        return Gaussian(mean, None)
    return Gaussian(mean, _cho_posterior_cov(chol, kt, ktt))


# ----------------------------------------------------------------------------------------------
# Gradient flow at finite times
# ----------------------------------------------------------------------------------------------


@jax.jit
def _flow_mean(spec: linalg.Spectrum, y: jnp.ndarray, s: jnp.ndarray, kt: Optional[jnp.ndarray]
               ) -> tuple[jnp.ndarray, Optional[jnp.ndarray]]:
    """Train ``s.shape + y.shape`` and test ``s.shape + (m,) + y.shape[1:]`` means (scaled times ``s``)."""
    n = y.shape[0]
    g = linalg.flow_weights(spec.lam, s.reshape(-1), spec.cutoff)  # (T, n)
    c = spec.vecs.T @ y.reshape(n, -1)  # (n, p)
    train = jnp.einsum("ji,ti,ip->tjp", spec.vecs, spec.mu[None, :] * g, c)
    train = train.reshape(s.shape + y.shape)
    if kt is None:
        return train, None
    alpha = jnp.einsum("ji,ti,ip->tjp", spec.vecs, g, c)  # (T, n, p): A(t) y
    test = jnp.einsum("mj,tjp->tmp", kt, alpha)
    return train, test.reshape(s.shape + kt.shape[:1] + y.shape[1:])


def gradient_flow(k_train_train: Array, y_train: Array, t: Times, k_test_train: Optional[Array] = None, *,
                  learning_rate: float = 1.0, ridge: float = 0.0,
                  psd_rtol: Optional[float] = None) -> FlowPrediction:
    """Ensemble-mean predictions of gradient flow on the MSE loss at times ``t``.

    Solves ``df/dt = −(η/n) [Θ (f − y) + ridge·f]``, ``f(0) = 0`` (loss ``1/(2n) Σ_i |f(x_i) − y_i|²``,
    mean over data; see the module docstring for the mapping to neural-tangents) in the
    eigenbasis of ``Θ + ridge·I``::

        f_*(t) = Θ_* V diag((1 − e^{−λ_i η t/n}) / λ_i) Vᵀ y

    With the NTK this is the NTK-ensemble mean (all layers trained); with the NNGP it is the
    NNGP ensemble (readout only). ``t = np.inf`` gives kernel ridge regression with the same
    ridge (pseudo-inverse on numerically zero eigenvalues).

    Args:
        k_train_train: train Gram matrix ``Θ`` ``(n, n)``, symmetric PSD.
        y_train: targets ``(n,)`` or ``(n, k)``.
        t: time(s) ``>= 0`` in units of gradient-descent steps of size ``learning_rate``: a scalar or
            an array of any shape; ``np.inf`` allowed.
        k_test_train: test-train kernel ``(m, n)`` or ``None``.
        learning_rate: ``η > 0``; only ``η t / n`` matters.
        ridge: absolute ridge ``>= 0`` (weight decay towards the initialisation, see module docs).
        psd_rtol: the kernel's relative accuracy; the PSD tolerance is
            ``max(sqrt(eps), n·eps, psd_rtol)`` (:func:`eqntk.linalg.psd_tolerance`).

    Returns:
        ``FlowPrediction(train=t.shape + y.shape, test=t.shape + (m,) + y.shape[1:] or None)``.
    """
    ridge = _check_ridge(ridge)
    lr = _check_learning_rate(learning_rate)
    dtype = _common_dtype(k_train_train, k_test_train)
    k, rtol = _gram(k_train_train, "k_train_train", dtype, psd_rtol)
    n = k.shape[0]
    y, out = _targets(y_train, n, dtype)
    kt = None if k_test_train is None else _cross(k_test_train, "k_test_train", n, dtype)
    s = _scaled_times(t, lr / n, dtype)
    spec = linalg.spectrum(k, ridge, rtol, "k_train_train")
    return FlowPrediction(*_flow_mean(spec, y, s, kt))


@jax.jit
def _flow_cov(spec: linalg.Spectrum, s: jnp.ndarray, kt: jnp.ndarray, nngp_dd: jnp.ndarray, nngp_td: jnp.ndarray,
              nngp_tt: jnp.ndarray, ridge: float) -> jnp.ndarray:
    """``Cov_*(s) = K_** − K_* B − Bᵀ K_*ᵀ + Bᵀ (K + ridge I) B``, ``B = A(s) Θ_*ᵀ``.

    Shape ``s.shape + nngp_tt.shape`` (covariances ``(m, m)`` or variances ``(m,)``).
    """
    return _flow_cov_flat(spec, s.reshape(-1), kt, nngp_dd, nngp_td, nngp_tt, ridge).reshape(s.shape + nngp_tt.shape)


def _flow_cov_flat(spec, s, kt, nngp_dd, nngp_td, nngp_tt, ridge):
    g = linalg.flow_weights(spec.lam, s, spec.cutoff)  # (T, n)
    p = spec.vecs.T @ kt.T  # (n, m)
    b = jnp.einsum("ji,ti,im->tjm", spec.vecs, g, p)  # (T, n, m)
    kr = nngp_dd + ridge * jnp.eye(nngp_dd.shape[0], dtype=nngp_dd.dtype)
    kb = jnp.einsum("jk,tkm->tjm", kr, b)
    if nngp_tt.ndim == 1:
        cross = jnp.einsum("mj,tjm->tm", nngp_td, b)
        quad = jnp.einsum("tjm,tjm->tm", b, kb)
        return nngp_tt[None] - 2 * cross + quad
    cross = jnp.einsum("mj,tjl->tml", nngp_td, b)
    quad = jnp.einsum("tjm,tjl->tml", b, kb)
    cov = nngp_tt[None] - cross - jnp.swapaxes(cross, 1, 2) + quad
    return 0.5 * (cov + jnp.swapaxes(cov, 1, 2))


def gradient_flow_covariance(k_train_train: Array, k_test_train: Array, nngp_test_test: Array, t: Times, *,
                             nngp_train_train: Optional[Array] = None, nngp_test_train: Optional[Array] = None,
                             learning_rate: float = 1.0, ridge: float = 0.0,
                             psd_rtol: Optional[float] = None) -> jnp.ndarray:
    """Covariance of the ensemble's test outputs along gradient flow (Lee et al. 2019).

    Initial outputs are the NNGP prior ``GP(0, K)`` (``K + ridge·I`` on the training points: the
    ridge acts as observation noise); training follows :func:`gradient_flow` with kernel ``Θ``::

        Cov_*(t) = K_** − K_* B − Bᵀ K_*ᵀ + Bᵀ (K + ridge·I) B,   B = (Θ+λI)⁻¹ (I − e^{−η(Θ+λI)t/n}) Θ_*ᵀ

    * NNGP ensemble: pass the NNGP as ``k_*`` and leave ``nngp_*`` unset; this is
      ``K_** − K_* (K+λI)⁻¹ (I − e^{−2η(K+λI)t/n}) K_*ᵀ`` — the prior at ``t = 0``, the GP
      posterior (noise ``λ``) at ``t = ∞``.
    * NTK ensemble: pass the NTK as ``k_*`` and the NNGP as ``nngp_train_train``,
      ``nngp_test_train``.

    Args:
        k_train_train: kernel driving the dynamics ``(n, n)`` (NTK, or NNGP for the NNGP ensemble).
        k_test_train: the same kernel, test-train ``(m, n)``.
        nngp_test_test: NNGP prior on the test points: ``(m, m)``, or ``(m,)`` for variances only.
        t: time(s) ``>= 0`` (same convention as :func:`gradient_flow`; ``np.inf`` allowed).
        nngp_train_train: NNGP ``(n, n)`` (default ``k_train_train``).
        nngp_test_train: NNGP ``(m, n)`` (default ``k_test_train``).
        learning_rate: ``η > 0``.
        ridge: absolute ridge / observation noise ``>= 0``.
        psd_rtol: the kernel's relative accuracy (PSD tolerance of ``k_train_train``, as in
            :func:`gradient_flow`).

    Returns:
        ``t.shape + (m, m)`` covariances, or ``t.shape + (m,)`` variances.
    """
    ridge = _check_ridge(ridge)
    lr = _check_learning_rate(learning_rate)
    if (nngp_train_train is None) != (nngp_test_train is None):
        raise ValueError("pass both nngp_train_train and nngp_test_train (NTK ensemble) or neither (NNGP ensemble)")
    dtype = _common_dtype(k_train_train, k_test_train, nngp_test_test, nngp_train_train, nngp_test_train)
    k, rtol = _gram(k_train_train, "k_train_train", dtype, psd_rtol)
    n = k.shape[0]
    kt = _cross(k_test_train, "k_test_train", n, dtype)
    m = kt.shape[0]
    ktt = _test_test(nngp_test_test, "nngp_test_test", m, dtype)
    if nngp_train_train is None:
        kdd, ktd = k, kt
    else:
        kdd, _ = _gram(nngp_train_train, "nngp_train_train", dtype, rtol)
        if kdd.shape != k.shape:
            raise ValueError(f"nngp_train_train has shape {kdd.shape}, k_train_train {k.shape}")
        ktd = _cross(nngp_test_train, "nngp_test_train", n, dtype)
        if ktd.shape != kt.shape:
            raise ValueError(f"nngp_test_train has shape {ktd.shape}, k_test_train {kt.shape}")
    s = _scaled_times(t, lr / n, dtype)
    spec = linalg.spectrum(k, ridge, rtol, "k_train_train")
    return _flow_cov(spec, s, kt, kdd, ktd, ktt, ridge)


# ----------------------------------------------------------------------------------------------
# neural-tangents-style convenience
# ----------------------------------------------------------------------------------------------


def _canonical_get(get) -> tuple[tuple[str, ...], bool]:
    if get is None:
        return _KINDS, False
    single = isinstance(get, str)
    get = (get,) if single else tuple(get)
    if not get:
        raise ValueError("get is empty")
    for g in get:
        if g not in _KINDS:
            raise ValueError(f"get must name 'nngp' and/or 'ntk', got {g!r}")
    return get, single


def _kernel_parts(kernel_fn: Callable, x1, x2, kinds: tuple[str, ...], kwargs: dict) -> dict:
    res = kernel_fn(x1, x2, kinds, **kwargs)
    parts = {}
    for g in kinds:
        v = getattr(res, g, None)
        if v is None:
            raise ValueError(f"kernel_fn(x1, x2, get={kinds!r}) returned no {g!r} field")
        parts[g] = _to_jax(v)
    return parts


def gradient_descent_mse_ensemble(kernel_fn: Callable, x_train: Array, y_train: Array, learning_rate: float = 1.0,
                                  diag_reg: float = 0.0, *, diag_reg_absolute_scale: bool = False,
                                  psd_rtol: Optional[float] = None, **kernel_fn_kwargs) -> Callable:
    """Infinite ensemble of infinite-width networks trained by gradient flow on MSE (like neural-tangents).

    Kernels (train-train, test-train, test-test) and eigendecompositions are computed lazily and the
    train-side ones cached across calls of the returned ``predict_fn``.

    Time convention: loss ``1/(2n) Σ_i |f(x_i) − y_i|²`` (mean over data, sum over outputs), so
    ``df/dt = −(η/n) Θ (f − y)``; neural-tangents divides by ``n·k`` instead: for ``k`` outputs our
    ``t`` equals its ``k·t``.

    Args:
        kernel_fn: ``kernel_fn(x1, x2=None, get=('nngp', 'ntk'), **kwargs)`` returning a named tuple
            with the requested ``.nngp`` / ``.ntk`` Gram matrices (shape ``(N1, N2)``).
        x_train: training inputs ``(n, ...)``.
        y_train: targets ``(n,)`` or ``(n, k)``.
        learning_rate: ``η > 0``.
        diag_reg: ridge, as in neural-tangents: ``diag_reg · trace(K)/n`` added to the diagonal of the
            kernel of each kind (``diag_reg`` itself if ``diag_reg_absolute_scale``).
        psd_rtol: the kernel's relative accuracy (PSD tolerance, as in :func:`gradient_flow`).
        **kernel_fn_kwargs: passed to every ``kernel_fn`` call.

    Returns:
        ``predict_fn(t=None, x_test=None, get=None, compute_cov=False)``:

        * ``t``: time(s) (scalar or array, ``>= 0``); ``None`` means ``t = ∞`` computed by
            Cholesky (kernel regression / GP inference), ``np.inf`` the same by eigendecomposition.
        * ``x_test``: test inputs ``(m, ...)``; ``None`` predicts on the training inputs (with
            the ridge: ``f_train = Θ (Θ+λI)⁻¹(...) y``, unlike neural-tangents which ignores it).
        * ``get``: ``'nngp'``, ``'ntk'``, or a tuple (``None`` = both).
        * ``compute_cov``: also return the covariance ``t.shape + (m, m)`` (needs the NNGP).

        For a single ``get`` string it returns the mean ``t.shape + (m,) + y.shape[1:]`` or a
        :class:`Gaussian` ``(mean, covariance)``; for a tuple, a named tuple with one such entry per kind.
    """
    lr = _check_learning_rate(learning_rate)
    diag_reg = _check_ridge(diag_reg, "diag_reg")
    y_arr = _to_jax(y_train)
    if y_arr.ndim == 0 or y_arr.shape[0] == 0:
        raise ValueError(f"y_train must have shape (n,) or (n, k) with n >= 1, got {y_arr.shape}")
    raw_train: dict = {}   # kind -> raw train-train kernel
    train: dict = {}       # kind -> (k, rtol, y, out, ridge), validated
    spectra: dict = {}     # kind -> linalg.Spectrum of k + ridge·I

    def fetch_train(kinds: tuple[str, ...]) -> None:
        missing = tuple(g for g in kinds if g not in raw_train)
        if missing:
            raw_train.update(_kernel_parts(kernel_fn, x_train, None, missing, kernel_fn_kwargs))

    def train_of(g: str):
        if g not in train:
            fetch_train((g,))
            name = f"train {g} kernel"
            dtype = _common_dtype(raw_train[g])
            k, rtol = _gram(raw_train[g], name, dtype, psd_rtol)
            y, out = _targets(y_train, k.shape[0], dtype)
            r = diag_reg if diag_reg_absolute_scale else diag_reg * float(jnp.trace(k)) / k.shape[0]
            train[g] = (k, rtol, y, out, r)
        return train[g]

    def spectrum_of(g: str) -> linalg.Spectrum:
        if g not in spectra:
            k, rtol, _, _, r = train_of(g)
            spectra[g] = linalg.spectrum(k, r, rtol, f"train {g} kernel")
        return spectra[g]

    def predict_fn(t: Optional[Times] = None, x_test: Optional[Array] = None, get=None, compute_cov: bool = False):
        kinds, single = _canonical_get(get)
        needed = tuple(g for g in _KINDS if g in kinds or (compute_cov and g == "nngp"))
        fetch_train(needed)
        n = train_of(needed[0])[0].shape[0]
        if x_test is None:
            tests = {g: train_of(g)[0] for g in needed}
            nngp_tt = tests["nngp"] if compute_cov else None
        else:
            tests = _kernel_parts(kernel_fn, x_test, x_train, needed, kernel_fn_kwargs)
            nngp_tt = (_kernel_parts(kernel_fn, x_test, None, ("nngp",), kernel_fn_kwargs)["nngp"]
                       if compute_cov else None)
        results = {}
        for g in kinds:
            k, rtol, y, out, r = train_of(g)
            kt = _cross(tests[g], f"test-train {g} kernel", n, k.dtype)
            m = kt.shape[0]
            if t is None and not (compute_cov and g == "ntk"):
                chol, _ = linalg.cholesky(k, r, rtol, None, f"train {g} kernel")
                mean = _cho_predict(chol, y, kt, 0.0)
                cov = None
                if compute_cov:  # NNGP: GP posterior with noise r
                    ktt = _test_test(nngp_tt, "test-test nngp kernel", m, k.dtype)
                    cov = _cho_posterior_cov(chol, kt, ktt)
                results[g] = Gaussian(mean, cov) if compute_cov else mean
                continue
            s = _scaled_times(np.inf if t is None else t, lr / n, k.dtype)
            spec = spectrum_of(g)
            mean = _flow_mean(spec, y, s, kt)[1]
            if not compute_cov:
                results[g] = mean
                continue
            kdd = _as_float_array(train_of("nngp")[0], "train nngp kernel", k.dtype)
            ktd = _cross(tests["nngp"], "test-train nngp kernel", n, k.dtype)
            ktt = _test_test(nngp_tt, "test-test nngp kernel", m, k.dtype)
            results[g] = Gaussian(mean, _flow_cov(spec, s, kt, kdd, ktd, ktt, r))
        if single:
            return results[kinds[0]]
        return collections.namedtuple("Gaussians" if compute_cov else "Predictions", kinds)(
            *[results[g] for g in kinds])

    return predict_fn
