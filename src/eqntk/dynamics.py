r"""Finite-width training dynamics: ensembles of networks trained by full-batch gradient descent.

The infinite-width predictions of :mod:`eqntk.predict` are statements about the *ensemble mean* of
finite networks trained from independent initialisations. This module trains such ensembles so
the two can be compared.

Loss and time (the convention of :mod:`eqntk.predict`)
-----------------------------------------------------
Each member minimises the MSE loss, a MEAN over the ``n`` training points and a SUM over the
``k`` outputs::

    L(θ) = 1/(2n) Σ_i |f(θ, x_i) − y_i|²

by full-batch gradient descent ``θ ← θ − η ∇L(θ)`` (``optax.sgd(η)``, no momentum). For the
linearised network this is ``f ← f − (η/n) Θ (f − y)``, the Euler discretisation of
``df/dt = −(η/n) Θ (f − y)``. Hence, exactly:

* after ``k`` steps at learning rate ``η`` the ensemble mean is compared with
  ``predict.gradient_flow(Θ, y, t=k, k_test_train=Θ_*, learning_rate=η)``, which is the same
  as ``gradient_flow(Θ, y, t=k·η)`` (learning rate 1). We call ``τ = k·η`` the *flow time*; it is
  what :attr:`Trajectory.times` holds, and ``steps_for_times(τ, η) = τ/η`` (doubling ``η`` halves
  the number of steps to reach the same ``τ``).
* gradient descent follows the flow up to discretisation errors ``O(η λ_max(Θ)/n)``;
  :func:`kernel_gradient_descent` gives the *discrete-time* linearised prediction
  ``Θ_* V diag((1 − (1 − η λ_i/n)^k)/λ_i) Vᵀ y`` exactly, for comparisons in which the step size
  should not count as a finite-width effect.

Ensembles
---------
:func:`train_ensemble` draws ``n_members`` independent initialisations (``jax.random.split`` of
one key), trains them with ``jax.vmap`` over members (in chunks of ``member_chunk`` to bound
memory) and records train/test predictions of every member at the requested steps. With
``antithetic=True`` members come in pairs ``(θ, θ̄)`` where ``θ̄`` is ``θ`` with its readout
(last layer's parameters) negated: ``θ̄`` has the same distribution as ``θ`` (so the ensemble mean
is still unbiased), the same empirical NTK, and the opposite initial function, so for the
linearised network the initial-function term of the prediction cancels exactly within each
pair. This removes the dominant Monte Carlo noise of the ensemble mean and leaves the
finite-width effects (NTK fluctuations, non-linearity in the parameters) one wants to measure.

``optax`` is needed (``pip install eqntk[dynamics]``); it is imported when a function that
trains is called.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Sequence

import numpy as np
import jax
import jax.numpy as jnp

from . import linalg
from .core.checks import check_real

__all__ = ["Trajectory", "steps_for_times", "mse_loss", "train_ensemble", "kernel_gradient_descent",
           "negate_readout"]


@dataclasses.dataclass(frozen=True)
class Trajectory:
    """Predictions of an ensemble along training.

    Attributes:
        steps: ``(T,)`` gradient-descent step counts at which predictions were recorded.
        times: ``(T,)`` flow times ``τ = steps · learning_rate`` (``predict.gradient_flow``'s ``t``
            at learning rate 1).
        learning_rate: ``η``.
        train: ``(M, T, n, *out)`` predictions of each member on the training inputs.
        test: ``(M, T, m, *out)`` on the test inputs, or ``None``.
        loss: ``(M, T)`` training loss ``1/(2n) Σ|f − y|²`` of each member.
        antithetic: whether members come in readout-negated pairs ``(0, 1), (2, 3), …``.
    """

    steps: np.ndarray
    times: np.ndarray
    learning_rate: float
    train: np.ndarray
    test: Optional[np.ndarray]
    loss: np.ndarray
    antithetic: bool = False

    @property
    def train_mean(self) -> np.ndarray:
        """``(T, n, *out)`` ensemble mean on the training inputs."""
        return self.train.mean(axis=0)

    @property
    def test_mean(self) -> Optional[np.ndarray]:
        """``(T, m, *out)`` ensemble mean on the test inputs."""
        return None if self.test is None else self.test.mean(axis=0)

    def test_mean_stderr(self) -> Optional[np.ndarray]:
        """``(T, m, *out)`` standard error of :attr:`test_mean` (over antithetic pairs when paired)."""
        if self.test is None:
            return None
        s = self.test
        if self.antithetic:
            s = 0.5 * (s[0::2] + s[1::2])
        if s.shape[0] < 2:
            return np.full(s.shape[1:], np.nan)
        return s.std(axis=0, ddof=1) / np.sqrt(s.shape[0])


def _check_learning_rate(learning_rate) -> float:
    return check_real("eqntk.dynamics", "learning_rate", learning_rate, lo=0.0, strict=True)


def steps_for_times(times, learning_rate: float, *, rtol: float = 1e-6) -> np.ndarray:
    """Step counts ``τ/η`` that reach the flow times ``τ`` at learning rate ``η`` (integers).

    Raises ``ValueError`` if a time is negative, not finite, or not a multiple of ``η`` (within
    ``rtol``).
    """
    lr = _check_learning_rate(learning_rate)
    t = np.asarray(times, dtype=np.float64)
    if t.size == 0 or not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ValueError(f"times must be a non-empty array of finite numbers >= 0, got {times!r}")
    k = np.rint(t / lr)
    if np.any(np.abs(k * lr - t) > rtol * np.maximum(t, lr)):
        raise ValueError(f"times {t} are not multiples of the learning rate {lr}")
    return k.astype(np.int64)


def mse_loss(apply_fn: Callable, params, x, y) -> jnp.ndarray:
    """``1/(2n) Σ_i |f(x_i) − y_i|²`` (mean over data, sum over outputs; eqntk.predict's loss)."""
    f = apply_fn(params, x).reshape(y.shape)
    return 0.5 * jnp.sum((f - y) ** 2) / y.shape[0]


def negate_readout(params):
    """``params`` with the last layer's parameters negated (for a :func:`eqntk.stax.serial` network).

    For a network ending in a linear layer this negates the initial function and leaves the
    empirical NTK unchanged (each NTK term carries the readout weights twice).
    """
    if not isinstance(params, (list, tuple)) or not params:
        raise ValueError("negate_readout expects the parameter list of a serial network; pass flip_fn "
                         "for other parameter structures")
    idx = max((i for i, p in enumerate(params) if jax.tree_util.tree_leaves(p)), default=None)
    if idx is None:
        raise ValueError("negate_readout: the network has no parameters")
    out = list(params)
    out[idx] = jax.tree_util.tree_map(lambda a: -a, params[idx])
    return type(params)(out) if isinstance(params, tuple) else out


def _as_targets(y_train, n):
    y = np.asarray(y_train)
    if y.ndim == 0 or y.shape[0] != n:
        raise ValueError(f"y_train must have shape ({n}, ...) to match x_train, got {y.shape}")
    return y


def _chunks(n, size):
    size = n if size is None else max(1, int(size))
    return [(i, min(n, i + size)) for i in range(0, n, size)]


def train_ensemble(init_fn: Callable, apply_fn: Callable, x_train, y_train, x_test=None, *,
                   learning_rate: float, steps: Sequence[int], n_members: int, key,
                   optimizer=None, antithetic: bool = False, flip_fn: Optional[Callable] = None,
                   member_chunk: Optional[int] = None, dtype=None) -> Trajectory:
    """Train ``n_members`` independently initialised networks by full-batch GD on the MSE loss.

    Args:
        init_fn, apply_fn: a network (e.g. ``stax.serial(...)[:2]``): ``init_fn(key, input_shape)
            -> (out_shape, params)``, ``apply_fn(params, x) -> (N, k)``.
        x_train: ``(n, ...)`` training inputs, ``n >= 1``.
        y_train: ``(n,)`` or ``(n, k)`` targets; ``(n,)`` needs a network with one output.
        x_test: ``(m, ...)`` test inputs or ``None``.
        learning_rate: ``η > 0``; the optimiser is ``optax.sgd(η)`` unless ``optimizer`` is given
            (then ``η`` only labels the flow times ``τ = steps · η``).
        steps: step counts ``>= 0`` at which to record predictions (sorted and de-duplicated; use
            :func:`steps_for_times` to convert flow times).
        n_members: ensemble size (even when ``antithetic``).
        key: a ``jax.random`` key; member ``i`` is initialised from ``split(key, n_members)[i]``
            (from ``split(key, n_members // 2)[i // 2]`` when antithetic).
        optimizer: an ``optax.GradientTransformation`` (default ``optax.sgd(learning_rate)``).
        antithetic: pair each member with its readout-negated copy (see module docs).
        flip_fn: ``params -> params`` used to form the antithetic partner (default
            :func:`negate_readout`).
        member_chunk: train this many members at a time under ``jax.vmap`` (default: all). On
            XLA:CPU, vmapped convolutions with per-member filters ran several times slower per member than
            ``member_chunk=1`` (measured on a p4 GCNN of width 32); dense networks vmap well.
        dtype: cast inputs, targets and parameters to this floating dtype (default: the inputs'
            dtype if floating, else JAX's default float).

    Returns:
        :class:`Trajectory` with per-member predictions at ``steps``.
    """
    import optax

    lr = _check_learning_rate(learning_rate)
    if int(n_members) != n_members or n_members < 1:
        raise ValueError(f"n_members must be a positive integer, got {n_members!r}")
    n_members = int(n_members)
    if antithetic and n_members % 2:
        raise ValueError(f"antithetic ensembles need an even n_members, got {n_members}")
    xtr = np.asarray(x_train)
    if xtr.ndim == 0 or xtr.shape[0] == 0:
        raise ValueError(f"x_train must be a non-empty batch of inputs, got shape {xtr.shape}")
    n = xtr.shape[0]
    y = _as_targets(y_train, n)
    if y.size == 0:
        raise ValueError(f"y_train is empty (shape {y.shape})")
    xte = None if x_test is None else np.asarray(x_test)
    if xte is not None and (xte.ndim != xtr.ndim or xte.shape[1:] != xtr.shape[1:] or xte.shape[0] == 0):
        raise ValueError(f"x_test must have shape (m >= 1, {', '.join(map(str, xtr.shape[1:]))}), got {xte.shape}")
    st = np.unique(np.asarray(steps))
    if st.size == 0 or not np.issubdtype(st.dtype, np.number) or np.any(st != np.rint(st)) or np.any(st < 0):
        raise ValueError(f"steps must be a non-empty sequence of integers >= 0, got {steps!r}")
    st = st.astype(np.int64)

    if dtype is None:
        dtype = xtr.dtype if np.issubdtype(xtr.dtype, np.floating) else jnp.zeros(()).dtype
    dtype = jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"dtype must be floating, got {dtype}")
    xtr_j = jnp.asarray(xtr, dtype)
    y_j = jnp.asarray(y, dtype)
    xte_j = None if xte is None else jnp.asarray(xte, dtype)

    def cast(p):
        return jax.tree_util.tree_map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, p)

    def init_one(k):
        return cast(init_fn(k, xtr.shape)[1])

    # output shape must match the targets
    _, p_shape = jax.eval_shape(lambda k: init_fn(k, xtr.shape), jax.random.PRNGKey(0))
    out = jax.eval_shape(apply_fn, p_shape, jax.ShapeDtypeStruct(xtr.shape, dtype))
    if int(np.prod(out.shape)) != y.size or out.shape[0] != n:
        raise ValueError(f"the network's outputs on x_train have shape {out.shape}, the targets {y.shape}")

    opt = optax.sgd(lr) if optimizer is None else optimizer
    flip = negate_readout if flip_fn is None else flip_fn

    if antithetic:
        base = jax.random.split(key, n_members // 2)
        params_list = []
        for k in base:
            p = init_one(k)
            params_list += [p, cast(flip(p))]
        f_a, f_b = (apply_fn(params_list[i], xtr_j) for i in (0, 1))
        if not jnp.allclose(f_a, -f_b, rtol=1e-4, atol=1e-5 * (1 + float(jnp.abs(f_a).max()))):
            raise ValueError("antithetic: flip_fn(params) does not negate the network's initial outputs (is the "
                             "last layer a linear readout, and are params those of a serial network?)")
    else:
        params_list = [init_one(k) for k in jax.random.split(key, n_members)]

    loss = lambda p: mse_loss(apply_fn, p, xtr_j, y_j)  # noqa: E731
    grad = jax.grad(loss)

    def step_one(p, s):
        u, s = opt.update(grad(p), s, p)
        return optax.apply_updates(p, u), s

    def record_one(p):
        ftr = apply_fn(p, xtr_j).reshape(y.shape)
        fte = None if xte_j is None else apply_fn(p, xte_j)
        if fte is not None:
            fte = fte.reshape((xte.shape[0],) + y.shape[1:])
        return ftr, fte, 0.5 * jnp.sum((ftr - y_j) ** 2) / n

    # One jitted step per Python iteration: XLA:CPU runs convolutions inside a lax.fori_loop /
    # while_loop body tens of times slower than the same step compiled on its own (measured).
    step = jax.jit(jax.vmap(step_one))
    record = jax.jit(jax.vmap(record_one))

    def advance(p, s, k):
        for _ in range(k):
            p, s = step(p, s)
        return p, s

    tr_all, te_all, loss_all = [], [], []
    for a, b in _chunks(n_members, member_chunk):
        p = jax.tree_util.tree_map(lambda *l: jnp.stack(l), *params_list[a:b])
        s = jax.vmap(opt.init)(p)
        done = 0
        tr, te, ls = [], [], []
        for k in st:
            if k > done:
                p, s = advance(p, s, int(k - done))
                done = int(k)
            ftr, fte, l = record(p)
            tr.append(np.asarray(ftr))
            te.append(None if fte is None else np.asarray(fte))
            ls.append(np.asarray(l))
        tr_all.append(np.stack(tr, axis=1))
        te_all.append(None if xte is None else np.stack(te, axis=1))
        loss_all.append(np.stack(ls, axis=1))
    return Trajectory(steps=st, times=st * lr, learning_rate=lr, train=np.concatenate(tr_all),
                      test=None if xte is None else np.concatenate(te_all), loss=np.concatenate(loss_all),
                      antithetic=bool(antithetic))


def kernel_gradient_descent(k_train_train, y_train, steps, k_test_train=None, *, learning_rate: float,
                            f0_train=None, f0_test=None, psd_rtol: Optional[float] = None):
    """Discrete-time gradient descent of the linearised model with a constant kernel ``Θ``.

    ``f_{j+1} = f_j − (η/n) Θ (f_j − y)`` on the training set, ``f_*`` following through ``Θ_*``.
    From ``f_0 = 0`` (the ensemble mean)::

        f(k) = Θ V diag((1 − (1 − η λ_i/n)^k)/λ_i) Vᵀ y,   f_*(k) = Θ_* V diag(...) Vᵀ y;

    with initial outputs ``f0_train`` (and ``f0_test``) the residual term
    ``f0 − Θ_{(*)} V diag(...) Vᵀ f0_train`` is added (one network's exact trajectory when its
    NTK is constant, e.g. a linear model). As ``η → 0`` with ``k η`` fixed this is
    ``predict.gradient_flow(Θ, y, t=k, learning_rate=η)``.

    Computed in float64 NumPy, on the spectrum of :func:`eqntk.linalg.spectrum` (the PSD rule
    of :mod:`eqntk.linalg`, shared with :func:`eqntk.predict.gradient_flow`; ``psd_rtol``: the
    kernel's relative accuracy). Returns ``(train (T, n, *out), test (T, m, *out) or None)``.
    """
    lr = _check_learning_rate(learning_rate)
    K, rtol = linalg.gram(np.asarray(k_train_train), "k_train_train", kernel_rtol=psd_rtol, dtype=np.float64)
    n = K.shape[0]
    y = np.asarray(y_train, dtype=np.float64)
    if y.ndim == 0 or y.shape[0] != n:
        raise ValueError(f"y_train must have shape ({n}, ...), got {y.shape}")
    k = np.asarray(steps)
    if k.size == 0 or np.any(k < 0) or np.any(k != np.rint(k)):
        raise ValueError(f"steps must be integers >= 0, got {steps!r}")
    kt = None if k_test_train is None else np.asarray(k_test_train, dtype=np.float64)
    if kt is not None and (kt.ndim != 2 or kt.shape[1] != n):
        raise ValueError(f"k_test_train must have shape (m, {n}), got {kt.shape}")
    spec = linalg.spectrum(K, 0.0, rtol, "k_train_train")
    lam, V = spec.mu, spec.vecs
    a = lr / n
    kk = k.reshape(-1, 1).astype(np.float64)
    # g_i(k) = (1 − (1 − a λ_i)^k)/λ_i, with g → a k as λ → 0
    x = a * lam[None, :]
    below = x < 1
    xs = np.where(below, x, 0.0)
    pw = np.where(below, -np.expm1(kk * np.log1p(-xs)), 1.0 - (1.0 - x) ** kk)
    small = np.abs(x) < 1e-12
    g = np.where(small, a * kk, pw / np.where(small, 1.0, x / a))

    def apply(rhs, left):  # left V diag(g) Vᵀ rhs  → (T, rows, p)
        c = V.T @ rhs.reshape(n, -1)
        return np.einsum("rj,ji,ti,ip->trp", left, V, g, c)

    out = y.shape[1:]
    T = kk.shape[0]
    train = apply(y, K)
    test = None if kt is None else apply(y, kt)
    if f0_train is not None:
        f0 = np.asarray(f0_train, dtype=np.float64).reshape(n, -1)
        train = train + f0[None] - apply(f0, K)
        if test is not None:
            if f0_test is None:
                raise ValueError("f0_test is needed with f0_train and k_test_train")
            f0t = np.asarray(f0_test, dtype=np.float64).reshape(kt.shape[0], -1)
            test = test + f0t[None] - apply(f0, kt)
    train = train.reshape((T, n) + out)
    if test is not None:
        test = test.reshape((T, kt.shape[0]) + out)
    return train, test
