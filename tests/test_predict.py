"""Tests of eqntk.predict against closed forms and independent computations (numpy/scipy).

Reference values are computed here with np.linalg.solve / scipy.linalg.expm / solve_ivp /
textbook GP formulas — never with the code under test.
"""

import collections
import warnings

import jax
import numpy as np
import pytest
import scipy.integrate
import scipy.linalg

from eqntk import predict

RNG = np.random.default_rng(1234)


def _host(fn):
    """Call ``fn`` and bring its (pytree of) JAX outputs to numpy (indexing numpy compiles nothing)."""
    return lambda *args, **kwargs: jax.tree_util.tree_map(np.asarray, fn(*args, **kwargs))


kernel_regression = _host(predict.kernel_regression)
gp_inference = _host(predict.gp_inference)
gradient_flow = _host(predict.gradient_flow)
gradient_flow_covariance = _host(predict.gradient_flow_covariance)


def joint_gram(n, m, rng, p=None, scale=1.0):
    """A well-conditioned joint PSD Gram of n train + m test points: (K, K*, K**)."""
    p = 3 * (n + m) if p is None else p
    z = rng.normal(size=(n + m, p))
    g = scale * z @ z.T / p
    return g[:n, :n], g[n:, :n], g[n:, n:]


def gram_with_spectrum(mu, rng):
    """V diag(mu) V^T with a random orthogonal V."""
    q, _ = np.linalg.qr(rng.normal(size=(len(mu), len(mu))))
    g = (q * np.asarray(mu)) @ q.T
    return 0.5 * (g + g.T), q


def expm_flow(theta, theta_t, y, t, lr, ridge=0.0):
    """Mean via matrix exponentials: alpha(t) = (Θ+λ)^{-1}(I - expm(-η(Θ+λ)t/n)) y."""
    n = theta.shape[0]
    a = theta + ridge * np.eye(n)
    alpha = np.linalg.solve(a, (np.eye(n) - scipy.linalg.expm(-lr * t / n * a)) @ y)
    return theta @ alpha, theta_t @ alpha


# --------------------------------------------------------------------------------------------
# Infinite time and t = 0
# --------------------------------------------------------------------------------------------


def test_t_inf_equals_linear_solve():
    k, kt, _ = joint_gram(10, 4, RNG)
    y = RNG.normal(size=(10, 3))
    ref = kt @ np.linalg.solve(k, y)
    np.testing.assert_allclose(kernel_regression(k, y, kt), ref, rtol=1e-10, atol=1e-10)
    flow = gradient_flow(k, y, np.inf, kt)
    np.testing.assert_allclose(flow.test, ref, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(flow.train, y, rtol=1e-9, atol=1e-9)
    # Train-set ridge-free regression interpolates.
    np.testing.assert_allclose(kernel_regression(k, y), y, rtol=1e-12)


def test_t_inf_equals_ridge_regression_with_same_ridge():
    k, kt, _ = joint_gram(10, 4, RNG)
    y = RNG.normal(size=10)
    ridge = 0.3
    a = np.linalg.solve(k + ridge * np.eye(10), y)
    flow = gradient_flow(k, y, np.inf, kt, ridge=ridge, learning_rate=0.7)
    np.testing.assert_allclose(flow.test, kt @ a, rtol=1e-10)
    np.testing.assert_allclose(flow.train, k @ a, rtol=1e-10)
    np.testing.assert_allclose(kernel_regression(k, y, kt, ridge=ridge), kt @ a, rtol=1e-10)
    np.testing.assert_allclose(kernel_regression(k, y, ridge=ridge), k @ a, rtol=1e-10)
    # Very late finite time approaches the same limit.
    late = gradient_flow(k, y, 1e6, kt, ridge=ridge)
    np.testing.assert_allclose(late.test, kt @ a, rtol=1e-8)


def test_t_zero_gives_zero_mean():
    k, kt, _ = joint_gram(10, 4, RNG)
    y = RNG.normal(size=(10, 3))
    flow = gradient_flow(k, y, 0.0, kt, ridge=0.1)
    assert flow.test.shape == (4, 3) and flow.train.shape == (10, 3)
    np.testing.assert_array_equal(np.asarray(flow.test), 0.0)
    np.testing.assert_array_equal(np.asarray(flow.train), 0.0)


# --------------------------------------------------------------------------------------------
# Finite time
# --------------------------------------------------------------------------------------------


def test_one_sample_closed_form():
    k, y, lr = 2.5, -1.3, 0.4
    kstar = np.array([[0.7], [-1.1]])
    t = np.array([0.0, 0.3, 1.0, 5.0, 40.0])
    flow = gradient_flow(np.array([[k]]), np.array([y]), t, kstar, learning_rate=lr)
    decay = 1.0 - np.exp(-lr * k * t / 1)
    np.testing.assert_allclose(flow.train, (y * decay)[:, None], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(flow.test, y * decay[:, None] * kstar[None, :, 0] / k, rtol=1e-12, atol=1e-15)


def test_tiny_eigenvalue_is_stable():
    # (1 - e^{-λ s}) / λ -> s: a naive formula gives 0 (exp(-1e-20) == 1.0 in float64).
    k = 1e-20
    t = np.array([0.5, 2.0])
    flow = gradient_flow(np.array([[k]]), np.array([3.0]), t, np.array([[1.0]]), learning_rate=1.5)
    np.testing.assert_allclose(flow.test[:, 0], 3.0 * 1.5 * t, rtol=1e-12)
    # Exactly singular Gram: finite everywhere, and the null direction never learns.
    mu = np.array([0.0, 0.5, 1.0, 2.0])
    g, q = gram_with_spectrum(mu, RNG)
    y = q[:, 0] + q[:, 2]
    out = gradient_flow(g, y, [1.0, 100.0, np.inf], g)
    assert np.all(np.isfinite(np.asarray(out.test)))
    np.testing.assert_allclose(out.train[-1], q[:, 2], atol=1e-10)  # projection on the range


@pytest.mark.parametrize("ridge", [0.0, 0.05])
def test_agrees_with_expm_and_ode_integration(ridge):
    n, m = 10, 4
    rng = np.random.default_rng(7)
    # Wide spectrum, including a near-zero eigenvalue, for the train Gram; a consistent cross kernel.
    k, kt, _ = joint_gram(n, m, rng, p=n + m + 2)
    y = rng.normal(size=(n, 2))
    lr = 2.0
    t = np.array([0.1, 1.0, 7.0, 30.0])
    flow = gradient_flow(k, y, t, kt, learning_rate=lr, ridge=ridge)
    for i, ti in enumerate(t):
        tr, te = expm_flow(k, kt, y, ti, lr, ridge)
        np.testing.assert_allclose(flow.train[i], tr, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(flow.test[i], te, rtol=1e-8, atol=1e-10)
    if ridge == 0.0:
        # Integrate df/dt = -(η/n) Θ (f - y), df*/dt = -(η/n) Θ* (f - y) from 0.
        def rhs(_, z):
            f = z[: n * 2].reshape(n, 2)
            r = f - y
            return np.concatenate([(-lr / n * k @ r).ravel(), (-lr / n * kt @ r).ravel()])

        sol = scipy.integrate.solve_ivp(rhs, (0, t[-1]), np.zeros(n * 2 + m * 2), t_eval=t,
                                        method="DOP853", rtol=1e-11, atol=1e-12)
        z = sol.y.T
        np.testing.assert_allclose(flow.train, z[:, : n * 2].reshape(-1, n, 2), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(flow.test, z[:, n * 2:].reshape(-1, m, 2), rtol=1e-6, atol=1e-8)


def test_training_loss_decreases_monotonically():
    k, _, _ = joint_gram(10, 1, RNG)
    y = RNG.normal(size=(10, 3))
    t = np.concatenate([[0.0], np.geomspace(1e-3, 1e4, 60), [np.inf]])
    f = np.asarray(gradient_flow(k, y, t, learning_rate=0.5).train)
    loss = 0.5 * np.mean(np.sum((f - y) ** 2, axis=-1), axis=-1)
    assert np.all(np.diff(loss) <= 1e-14)
    assert loss[0] == pytest.approx(0.5 * np.mean(np.sum(y ** 2, -1)))
    assert loss[-1] < 1e-16


def test_multi_output_equals_per_column_and_time_shapes():
    k, kt, _ = joint_gram(10, 4, RNG)
    y = RNG.normal(size=(10, 3))
    t = np.array([[0.5, 2.0, 9.0], [20.0, 100.0, np.inf]])
    flow = gradient_flow(k, y, t, kt, ridge=0.01)
    assert flow.test.shape == (2, 3, 4, 3) and flow.train.shape == (2, 3, 10, 3)
    for c in range(3):
        col = gradient_flow(k, y[:, c], t, kt, ridge=0.01)
        assert col.test.shape == (2, 3, 4)
        np.testing.assert_allclose(flow.test[..., c], col.test, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(flow.train[..., c], col.train, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(kernel_regression(k, y, kt)[:, c],
                                   kernel_regression(k, y[:, c], kt), rtol=1e-12)


def test_float32_stays_float32():
    k, kt, _ = joint_gram(10, 4, RNG)
    y = RNG.normal(size=10)
    f64 = gradient_flow(k, y, [1.0, np.inf], kt, ridge=1e-2)
    f32 = gradient_flow(k.astype(np.float32), y.astype(np.float32), [1.0, np.inf],
                                kt.astype(np.float32), ridge=1e-2)
    assert f32.test.dtype == np.float32 and f64.test.dtype == np.float64
    raw = predict.gradient_flow(k.astype(np.float32), y.astype(np.float32), 1.0, kt.astype(np.float32))
    assert isinstance(raw.test, jax.Array) and raw.test.dtype == np.float32
    np.testing.assert_allclose(f32.test, f64.test, rtol=1e-3, atol=1e-4)
    r32 = kernel_regression(k.astype(np.float32), y.astype(np.float32), kt.astype(np.float32), ridge=1e-2)
    assert r32.dtype == np.float32


# --------------------------------------------------------------------------------------------
# GP inference and covariances
# --------------------------------------------------------------------------------------------


def test_gp_posterior_textbook():
    k, kt, ktt = joint_gram(10, 4, RNG)
    y = RNG.normal(size=(10, 3))
    s2 = 0.2
    a = k + s2 * np.eye(10)
    mean = kt @ np.linalg.solve(a, y)
    cov = ktt - kt @ np.linalg.solve(a, kt.T)
    post = gp_inference(k, y, kt, ktt, ridge=s2)
    np.testing.assert_allclose(post.mean, mean, rtol=1e-10)
    np.testing.assert_allclose(post.covariance, cov, rtol=1e-9, atol=1e-12)
    var = gp_inference(k, y, kt, np.diag(ktt), ridge=s2).covariance
    np.testing.assert_allclose(var, np.diag(cov), rtol=1e-9, atol=1e-12)
    assert gp_inference(k, y, kt, None, ridge=s2).covariance is None
    # The NNGP ensemble at t = inf is the same posterior; at t = 0 it is the prior.
    c = gradient_flow_covariance(k, kt, ktt, [0.0, np.inf], ridge=s2, learning_rate=3.0)
    np.testing.assert_allclose(c[0], ktt, rtol=1e-12)
    np.testing.assert_allclose(c[1], cov, rtol=1e-8, atol=1e-11)


def _augmented_flow_moments(theta, theta_t, nngp, y, t, lr):
    """Mean and covariance of f*(t) for f(0) ~ N(0, nngp) by exponentiating the joint linear ODE.

    z = (f_train, f_test, 1): dz/dt = M z with M = -(η/n)[[Θ, 0, -Θy], [Θ*, 0, -Θ*y], [0, 0, 0]].
    """
    n, m = theta.shape[0], theta_t.shape[0]
    mat = np.zeros((n + m + 1, n + m + 1))
    mat[:n, :n] = theta
    mat[n:n + m, :n] = theta_t
    mat[:n, -1] = -theta @ y
    mat[n:n + m, -1] = -theta_t @ y
    phi = scipy.linalg.expm(-lr / n * t * mat)
    mean = phi[n:n + m, -1]
    lin = phi[n:n + m, : n + m]
    return mean, lin @ nngp @ lin.T


def test_ensemble_covariance_vs_joint_ode():
    n, m = 10, 4
    rng = np.random.default_rng(3)
    knn, kt, ktt = joint_gram(n, m, rng)
    th, tht, _ = joint_gram(n, m, rng)
    th, tht = th + knn, tht + kt  # an "NTK": NNGP plus a PSD kernel
    nngp_joint = np.block([[knn, kt.T], [kt, ktt]])
    y = rng.normal(size=n)
    lr, times = 1.5, np.array([0.2, 3.0, 25.0])
    ntk_cov = gradient_flow_covariance(th, tht, ktt, times, nngp_train_train=knn, nngp_test_train=kt,
                                               learning_rate=lr)
    nngp_cov = gradient_flow_covariance(knn, kt, ktt, times, learning_rate=lr)
    ntk_var = gradient_flow_covariance(th, tht, np.diag(ktt), times, nngp_train_train=knn,
                                               nngp_test_train=kt, learning_rate=lr)
    ntk_mean = gradient_flow(th, y, times, tht, learning_rate=lr).test
    nngp_mean = gradient_flow(knn, y, times, kt, learning_rate=lr).test
    for i, ti in enumerate(times):
        mu, cov = _augmented_flow_moments(th, tht, nngp_joint, y, ti, lr)
        np.testing.assert_allclose(ntk_mean[i], mu, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(ntk_cov[i], cov, rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(ntk_var[i], np.diag(cov), rtol=1e-7, atol=1e-10)
        mu, cov = _augmented_flow_moments(knn, kt, nngp_joint, y, ti, lr)
        np.testing.assert_allclose(nngp_mean[i], mu, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(nngp_cov[i], cov, rtol=1e-7, atol=1e-10)


def test_nngp_covariance_with_ridge_closed_form():
    k, kt, ktt = joint_gram(10, 4, RNG)
    s2, lr, t = 0.15, 0.8, 6.0
    a = k + s2 * np.eye(10)
    ref = ktt - kt @ np.linalg.solve(a, (np.eye(10) - scipy.linalg.expm(-2 * lr * t / 10 * a)) @ kt.T)
    got = gradient_flow_covariance(k, kt, ktt, t, ridge=s2, learning_rate=lr)
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------------------------------------
# Numerical safeguards and validation
# --------------------------------------------------------------------------------------------


def test_jitter_escalation_warns_and_is_sane():
    n = 10
    mu = np.concatenate([[-1e-12], np.linspace(0.5, 3.0, n - 1)])  # round-off-level indefiniteness
    g, q = gram_with_spectrum(mu, RNG)
    y = q[:, 1:4] @ RNG.normal(size=3)  # in the span of well-conditioned eigenvectors
    with pytest.warns(predict.JitterWarning, match="jitter"):
        out = kernel_regression(g, y, g[:4])
    ref = g[:4] @ (q[:, 1:] @ ((q[:, 1:].T @ y) / mu[1:]))
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-8)
    # The eigendecomposition path tolerates (clips) it without any warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        flow = gradient_flow(g, y, [1.0, np.inf], g[:4])
    np.testing.assert_allclose(flow.test[-1], ref, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("ridge", [0.0, 1.0])
def test_non_psd_raises_naming_smallest_eigenvalue(ridge):
    mu = np.array([-0.25, 0.5, 1.0, 2.0, 3.0, 0.1, 0.2, 0.3, 0.4, 0.6])
    g, _ = gram_with_spectrum(mu, RNG)
    y = np.ones(10)
    with pytest.raises(ValueError, match=r"not positive semi-definite.*-2\.5"):
        kernel_regression(g, y, ridge=ridge)
    with pytest.raises(ValueError, match=r"smallest eigenvalue -2\.5"):
        gradient_flow(g, y, 1.0, ridge=ridge)
    with pytest.raises(ValueError, match="positive semi-definite"):
        gp_inference(g, y, g, g, ridge=ridge)
    with pytest.raises(ValueError, match="positive semi-definite"):
        gradient_flow_covariance(g, g, g, 1.0, ridge=ridge)


def test_bad_inputs_raise():
    k, kt, ktt = joint_gram(10, 4, RNG)
    y = np.ones(10)
    cases = [
        (lambda: kernel_regression(k[:, :9], y), "square"),
        (lambda: kernel_regression(np.ones(10), y), "square"),
        (lambda: kernel_regression(k, np.ones(9)), "9 rows"),
        (lambda: gradient_flow(k, np.ones((7, 2)), 1.0), "7 rows"),
        (lambda: kernel_regression(k, y, kt[:, :9]), "k_test_train must have shape"),
        (lambda: gradient_flow(k, y, 1.0, kt.T), "k_test_train must have shape"),
        (lambda: gp_inference(k, y, kt, ktt[:1]), "k_test_test"),
        (lambda: kernel_regression(np.zeros((0, 0)), np.zeros(0)), "empty training set"),
        (lambda: kernel_regression(np.where(np.eye(10) > 0, np.nan, k), y), "NaN or inf"),
        (lambda: gradient_flow(np.where(np.eye(10) > 0, np.inf, k), y, 1.0), "NaN or inf"),
        (lambda: kernel_regression(k, np.r_[np.nan, y[1:]]), "y_train contains NaN"),
        (lambda: kernel_regression(k, y, np.where(kt > 0, np.inf, kt)), "k_test_train contains"),
        (lambda: kernel_regression(k, y, ridge=-1e-3), "ridge"),
        (lambda: gradient_flow(k, y, -1.0), "times must be >= 0"),
        (lambda: gradient_flow(k, y, [1.0, np.nan]), "NaN"),
        (lambda: gradient_flow(k, y, 1.0, learning_rate=0.0), "learning_rate"),
        (lambda: kernel_regression(k + np.triu(np.ones((10, 10)), 1), y), "not symmetric"),
        (lambda: gradient_flow_covariance(k, kt, ktt, 1.0, nngp_train_train=k), "both"),
        (lambda: gradient_flow_covariance(k, kt, ktt[:, :1], 1.0), "nngp_test_test"),
    ]
    for fn, msg in cases:
        with pytest.raises(ValueError, match=msg):
            fn()


def test_roundoff_negative_eigenvalue_tolerated():
    mu = np.concatenate([[-1e-13], np.linspace(0.5, 2.0, 9)])
    g, _ = gram_with_spectrum(mu, RNG)
    out = gradient_flow(g, np.ones(10), [0.0, 1.0, 1e3], g[:4])
    assert np.all(np.isfinite(np.asarray(out.test)))


# --------------------------------------------------------------------------------------------
# Classification helpers
# --------------------------------------------------------------------------------------------


def test_one_hot_and_accuracy():
    labels = np.array([2, 0, 1, 2])
    y = predict.one_hot(labels, 4)
    np.testing.assert_array_equal(y, np.eye(4)[labels])
    assert y.dtype == np.float64
    yc = predict.one_hot(labels, centered=True)
    np.testing.assert_allclose(yc, np.eye(3)[labels] - 1 / 3)
    with pytest.raises(ValueError, match="labels must lie"):
        predict.one_hot(labels, 2)
    with pytest.raises(ValueError, match=r"shape \(n,\)"):
        predict.one_hot(labels[:, None])
    out = np.array([[[0.1, 0.2, 0.9], [1.0, 0.0, 0.0], [0.0, 0.3, 0.1], [0.0, 1.0, 0.0]],
                    np.eye(3)[labels]])
    np.testing.assert_array_equal(predict.predict_class(out[0]), [2, 0, 1, 1])
    np.testing.assert_allclose(predict.accuracy(out, labels), [0.75, 1.0])
    np.testing.assert_allclose(predict.accuracy(out[0], np.eye(3)[labels]), 0.75)
    with pytest.raises(ValueError, match="labels must have shape"):
        predict.accuracy(out[0], labels[:3])


# --------------------------------------------------------------------------------------------
# kernel_fn convenience (neural-tangents style)
# --------------------------------------------------------------------------------------------

Kern = collections.namedtuple("Kern", "nngp ntk")


def toy_kernel_fn(x1, x2=None, get=("nngp", "ntk")):
    """Closed-form NNGP/NTK of a one-hidden-layer erf-free toy model (any PSD pair works here)."""
    x2 = x1 if x2 is None else x2
    lin = x1 @ x2.T / x1.shape[1]
    nngp = np.exp(-0.5 * ((x1[:, None] - x2[None]) ** 2).sum(-1)) + 0.3 * lin
    ntk = nngp + lin + 0.1
    res = Kern(nngp, ntk)
    if isinstance(get, str):
        return getattr(res, get)
    return collections.namedtuple("K", get)(*[getattr(res, g) for g in get])


def test_gradient_descent_mse_ensemble_matches_gram_functions():
    rng = np.random.default_rng(5)
    x, xt = rng.normal(size=(10, 3)), rng.normal(size=(4, 3))
    y = predict.one_hot(rng.integers(0, 3, size=10), 3)
    kd, kt, kk = toy_kernel_fn(x), toy_kernel_fn(xt, x), toy_kernel_fn(xt)
    lr, diag_reg = 0.5, 1e-3
    ridge = {g: diag_reg * np.trace(getattr(kd, g)) / 10 for g in ("nngp", "ntk")}
    predict_fn = _host(predict.gradient_descent_mse_ensemble(toy_kernel_fn, x, y, learning_rate=lr, diag_reg=diag_reg))
    t = np.array([1.0, 50.0])

    both = predict_fn(t, xt)
    assert both._fields == ("nngp", "ntk")
    for g in ("nngp", "ntk"):
        ref = gradient_flow(getattr(kd, g), y, t, getattr(kt, g), learning_rate=lr, ridge=ridge[g])
        np.testing.assert_allclose(getattr(both, g), ref.test, rtol=1e-10)
        ref_inf = np.asarray(getattr(kt, g)) @ np.linalg.solve(getattr(kd, g) + ridge[g] * np.eye(10), y)
        np.testing.assert_allclose(predict_fn(None, xt, g), ref_inf, rtol=1e-9)
        np.testing.assert_allclose(predict_fn(np.inf, xt, g), ref_inf, rtol=1e-8)
    # Train-set predictions (x_test=None) use the train Gram as the cross kernel.
    ref = gradient_flow(kd.ntk, y, t, learning_rate=lr, ridge=ridge["ntk"]).train
    np.testing.assert_allclose(predict_fn(t, None, "ntk"), ref, rtol=1e-10)

    out = predict_fn(t, xt, "ntk", compute_cov=True)
    ref_cov = gradient_flow_covariance(kd.ntk, kt.ntk, kk.nngp, t, nngp_train_train=kd.nngp,
                                               nngp_test_train=kt.nngp, learning_rate=lr, ridge=ridge["ntk"])
    np.testing.assert_allclose(out.covariance, ref_cov, rtol=1e-9, atol=1e-12)
    post = predict_fn(None, xt, "nngp", compute_cov=True)
    a = kd.nngp + ridge["nngp"] * np.eye(10)
    np.testing.assert_allclose(post.covariance, kk.nngp - kt.nngp @ np.linalg.solve(a, kt.nngp.T),
                               rtol=1e-8, atol=1e-11)
    inf_ntk = predict_fn(None, xt, "ntk", compute_cov=True)
    np.testing.assert_allclose(inf_ntk.covariance, predict_fn(np.inf, xt, "ntk", compute_cov=True).covariance,
                               rtol=1e-10, atol=1e-12)

    absolute = _host(predict.gradient_descent_mse_ensemble(toy_kernel_fn, x, y, learning_rate=lr, diag_reg=0.2,
                                                           diag_reg_absolute_scale=True))
    ref = gradient_flow(kd.nngp, y, 3.0, kt.nngp, learning_rate=lr, ridge=0.2).test
    np.testing.assert_allclose(absolute(3.0, xt, "nngp"), ref, rtol=1e-10)
    with pytest.raises(ValueError, match="get must name"):
        predict_fn(1.0, xt, "foo")


def test_module_docstring_example_runs():
    import doctest

    result = doctest.testmod(predict, verbose=False)
    assert result.attempted > 5 and result.failed == 0
