"""Finite-width training (eqntk.dynamics) against closed forms and eqntk.predict.gradient_flow."""

import numpy as np
import jax
import jax.numpy as jnp
import pytest

pytest.importorskip("optax")

from eqntk import predict, stax
from eqntk.dynamics import (kernel_gradient_descent, negate_readout, steps_for_times, train_ensemble)

D, B = 5, 0.5


def _data(n=8, m=4, k=2, seed=0):
    r = np.random.default_rng(seed)
    return r.normal(size=(n, D)), r.normal(size=(n, k)), r.normal(size=(m, D))


def _linear(k=2):
    return stax.serial(stax.Dense(k, W_std=1.0, b_std=B))


def _ntk_by_hand(a, b):
    """NTK of Dense(W_std=1, b_std=B) in NTK parameterisation: x·x'/d + B² (per output)."""
    return a @ b.T / D + B * B


def test_linear_model_members_follow_the_closed_form():
    """A linear model's NTK is constant: every member's trajectory is discrete kernel GD from its
    own initial outputs, and the antithetic ensemble mean is the f0 = 0 solution."""
    x, y, xt = _data()
    init, apply, _ = _linear()
    lr, steps = 0.7, [0, 1, 5, 40, 200]
    tr = train_ensemble(init, apply, x, y, xt, learning_rate=lr, steps=steps, n_members=4,
                        key=jax.random.PRNGKey(1), antithetic=True)
    K, Kt = _ntk_by_hand(x, x), _ntk_by_hand(xt, x)
    for i in range(4):
        ftr, fte = kernel_gradient_descent(K, y, steps, Kt, learning_rate=lr, f0_train=tr.train[i, 0],
                                           f0_test=tr.test[i, 0])
        np.testing.assert_allclose(tr.train[i], ftr, rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(tr.test[i], fte, rtol=1e-9, atol=1e-10)
    mtr, mte = kernel_gradient_descent(K, y, steps, Kt, learning_rate=lr)
    np.testing.assert_allclose(tr.train_mean, mtr, atol=1e-10)
    np.testing.assert_allclose(tr.test_mean, mte, atol=1e-10)
    assert np.abs(tr.test[0, 0]).max() > 0.1  # the initial functions themselves are not small
    assert np.all(np.diff(tr.loss, axis=1) <= 1e-12)  # the loss decreases


def test_small_steps_reproduce_gradient_flow():
    """Small η: the ensemble mean after k steps is predict.gradient_flow(Θ, y, t=k, learning_rate=η)
    = gradient_flow(Θ, y, t=kη), up to the O(η λ_max/n) discretisation error."""
    x, y, xt = _data(seed=2)
    init, apply, _ = _linear()
    K, Kt = _ntk_by_hand(x, x), _ntk_by_hand(xt, x)
    lam_max = np.linalg.eigvalsh(K)[-1]
    lr = 0.01 * x.shape[0] / lam_max
    steps = np.array([10, 100, 1000])
    tr = train_ensemble(init, apply, x, y, xt, learning_rate=lr, steps=steps, n_members=2,
                        key=jax.random.PRNGKey(3), antithetic=True)
    flow = predict.gradient_flow(K, y, steps, Kt, learning_rate=lr)
    flow1 = predict.gradient_flow(K, y, steps * lr, Kt)  # learning rate 1, flow time kη
    np.testing.assert_allclose(flow.test, flow1.test, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(tr.times, steps * lr)
    scale = np.abs(flow.test).max()
    err = np.abs(tr.test_mean - np.asarray(flow.test)).max() / scale
    assert err < 0.02, err
    # and it is the discretisation, not something else: the exact discrete solution is closer
    _, disc = kernel_gradient_descent(K, y, steps, Kt, learning_rate=lr)
    assert np.abs(tr.test_mean - disc).max() / scale < 1e-9


def test_wide_network_lazy_regime_matches_analytic_ntk():
    """Dense(1024) → Erf → Dense(1): the ensemble mean follows gradient_flow with the analytic NTK
    (relative gap of order 1/√width)."""
    x, y, xt = _data(n=6, m=3, k=1, seed=4)
    net = stax.serial(stax.Dense(1024, W_std=1.5, b_std=0.1), stax.Erf(), stax.Dense(1, b_std=0.1))
    k = net.kernel_fn(x, get="ntk"), net.kernel_fn(xt, x, get="ntk")
    lr = 0.5 * x.shape[0] / np.linalg.eigvalsh(np.asarray(k[0]))[-1]
    steps = [20, 100, 400]
    tr = train_ensemble(net.init_fn, net.apply_fn, x, y, xt, learning_rate=lr, steps=steps, n_members=4,
                        key=jax.random.PRNGKey(5), antithetic=True)
    _, disc = kernel_gradient_descent(k[0], y, steps, k[1], learning_rate=lr)
    gap = np.abs(tr.test_mean - disc).max() / np.abs(disc).max()
    assert gap < 0.08, gap
    # a narrow network is measurably further away (the comparison can fail)
    narrow = stax.serial(stax.Dense(4, W_std=1.5, b_std=0.1), stax.Erf(), stax.Dense(1, b_std=0.1))
    tn = train_ensemble(narrow.init_fn, narrow.apply_fn, x, y, xt, learning_rate=lr, steps=steps, n_members=4,
                        key=jax.random.PRNGKey(5), antithetic=True)
    assert np.abs(tn.test_mean - disc).max() / np.abs(disc).max() > 2 * gap


def test_time_mapping_doubling_the_learning_rate_halves_the_steps():
    x, y, xt = _data(seed=6)
    init, apply, _ = _linear()
    K, Kt = _ntk_by_hand(x, x), _ntk_by_hand(xt, x)
    lr = 0.02 * x.shape[0] / np.linalg.eigvalsh(K)[-1]
    tau = np.array([40, 200, 800]) * lr
    s1, s2 = steps_for_times(tau, lr), steps_for_times(tau, 2 * lr)
    np.testing.assert_array_equal(s1, 2 * s2)
    a = train_ensemble(init, apply, x, y, xt, learning_rate=lr, steps=s1, n_members=2, key=jax.random.PRNGKey(7),
                       antithetic=True)
    b = train_ensemble(init, apply, x, y, xt, learning_rate=2 * lr, steps=s2, n_members=2,
                       key=jax.random.PRNGKey(7), antithetic=True)
    np.testing.assert_allclose(a.times, b.times)
    flow = np.asarray(predict.gradient_flow(K, y, tau, Kt).test)  # learning rate 1: t = τ
    scale = np.abs(flow).max()
    assert np.abs(a.test_mean - flow).max() / scale < 0.02
    assert np.abs(b.test_mean - flow).max() / scale < 0.04
    # same number of steps at 2η is a different (later) time: clearly different predictions
    c = train_ensemble(init, apply, x, y, xt, learning_rate=2 * lr, steps=s1, n_members=2,
                       key=jax.random.PRNGKey(7), antithetic=True)
    assert np.abs(c.test_mean[0] - flow[0]).max() / scale > 0.1


def test_members_are_independent():
    x, y, xt = _data()
    net = stax.serial(stax.Dense(16, b_std=0.1), stax.Relu(), stax.Dense(2, b_std=0.1))
    tr = train_ensemble(net.init_fn, net.apply_fn, x, y, xt, learning_rate=0.1, steps=[0, 3], n_members=3,
                        key=jax.random.PRNGKey(0))
    f0 = tr.test[:, 0]
    for i in range(3):
        for j in range(i):
            assert np.abs(f0[i] - f0[j]).max() > 1e-2
    # antithetic partners start at exactly opposite outputs; distinct pairs differ
    ta = train_ensemble(net.init_fn, net.apply_fn, x, y, xt, learning_rate=0.1, steps=[0], n_members=4,
                        key=jax.random.PRNGKey(0), antithetic=True)
    np.testing.assert_allclose(ta.test[0, 0], -ta.test[1, 0], atol=1e-12)
    assert np.abs(ta.test[0, 0] - ta.test[2, 0]).max() > 1e-2
    # chunked vmap gives the same members as one vmap
    tc = train_ensemble(net.init_fn, net.apply_fn, x, y, xt, learning_rate=0.1, steps=[0, 3], n_members=3,
                        key=jax.random.PRNGKey(0), member_chunk=2)
    np.testing.assert_allclose(tc.test, tr.test, rtol=1e-10, atol=1e-12)


def test_bad_input_raises():
    x, y, xt = _data()
    init, apply, _ = _linear()
    kw = dict(steps=[0, 1], n_members=2, key=jax.random.PRNGKey(0))
    for lr in (-0.1, 0.0, np.nan, np.inf):
        with pytest.raises(ValueError, match="learning_rate"):
            train_ensemble(init, apply, x, y, xt, learning_rate=lr, **kw)
    with pytest.raises(ValueError, match="non-empty"):
        train_ensemble(init, apply, x[:0], y[:0], xt, learning_rate=0.1, **kw)
    with pytest.raises(ValueError, match="y_train"):
        train_ensemble(init, apply, x, y[:5], xt, learning_rate=0.1, **kw)
    with pytest.raises(ValueError, match="outputs"):
        train_ensemble(init, apply, x, y[:, :1], xt, learning_rate=0.1, **kw)  # 2 outputs, 1 target
    with pytest.raises(ValueError, match="x_test"):
        train_ensemble(init, apply, x, y, xt[:, :3], learning_rate=0.1, **kw)
    with pytest.raises(ValueError, match="steps"):
        train_ensemble(init, apply, x, y, xt, learning_rate=0.1, steps=[-1, 2], n_members=2,
                       key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="n_members"):
        train_ensemble(init, apply, x, y, xt, learning_rate=0.1, steps=[1], n_members=0, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="even"):
        train_ensemble(init, apply, x, y, xt, learning_rate=0.1, steps=[1], n_members=3, key=jax.random.PRNGKey(0),
                       antithetic=True)
    with pytest.raises(ValueError, match="multiples"):
        steps_for_times([0.25], 0.1)
    with pytest.raises(ValueError, match="learning_rate"):
        steps_for_times([1.0], -1.0)
    with pytest.raises(ValueError, match="k_test_train"):
        kernel_gradient_descent(np.eye(3), np.ones(3), [1], np.ones((2, 4)), learning_rate=0.1)
    with pytest.raises(ValueError, match="serial"):
        negate_readout({"w": jnp.ones(2)})
    with pytest.raises(ValueError, match="negate"):  # a bare Dense: its params (W, b) are not a layer list
        d = stax.Dense(2, b_std=B)
        train_ensemble(d.init_fn, d.apply_fn, x, y, xt, learning_rate=0.1, antithetic=True, **kw)
