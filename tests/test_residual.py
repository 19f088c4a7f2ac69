"""Residual networks: Identity, FanOut, parallel, FanInSum (eqntk.core.branching).

Checked against a closed form written out here (MLP ResNet on vectors), against Monte Carlo
ensembles of finite networks (residual MLP, residual p4 GCNN), and for the refusals. Residual SO(3)
GCNNs: tests/test_so3_residual.py.
"""

import jax
import numpy as np
import pytest

from ensembles import check_ensemble, ensemble_nngp
from eqntk import stax

W, B = 1.3, 0.4  # W_std, b_std of every parameterised layer


def res(*branch):
    """``x + branch(x)``."""
    return stax.serial(stax.FanOut(2), stax.parallel(stax.serial(*branch), stax.Identity()), stax.FanInSum())


def vectors(n=5, d=3, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


# ---------------------------------------------------------------------------------------------
# closed form


def _relu_dual(k, q1, q2):
    """Arc-cosine kernel of degree 1 (Cho & Saul): E[relu(u) relu(v)] and E[relu'(u) relu'(v)]
    for centred Gaussians with Var u = q1, Var v = q2, Cov(u, v) = k."""
    s = np.sqrt(q1 * q2)
    theta = np.arctan2(np.sqrt(np.maximum(q1 * q2 - k * k, 0.0)), k)  # angle between u and v (0 on the diagonal)
    return s / (2 * np.pi) * (np.sin(theta) + (np.pi - theta) * np.cos(theta)), (np.pi - theta) / (2 * np.pi)


def test_mlp_resnet_matches_the_closed_form():
    """y = x + Dense(Relu(Dense(x))) on raw vectors (K0 = x·x'/d, Θ0 = 0):

    K1 = W² K0 + b²,        Θ1 = K1                     (first Dense)
    K2 = κ1(K1),            Θ2 = Θ1 κ0(K1)              (Relu; κ1, κ0: arc-cosine kernels)
    K3 = W² K2 + b²,        Θ3 = K3 + W² Θ2             (second Dense)
    K  = K0 + K3,           Θ  = Θ0 + Θ3                (sum of independent branches)
    """
    x = vectors()
    d = x.shape[1]
    K0 = x @ x.T / d
    K1 = W**2 * K0 + B**2
    q = np.diag(K1)
    k1, k0 = _relu_dual(K1, q[:, None], q[None, :])
    K3 = W**2 * k1 + B**2
    T3 = K3 + W**2 * K1 * k0
    net = res(stax.Dense(8, W, B), stax.Relu(), stax.Dense(d, W, B))
    k = net.kernel_fn(x)
    np.testing.assert_allclose(np.asarray(k.nngp), K0 + K3, rtol=0, atol=1e-10)
    # NTK: off the diagonal to 1e-10; on it the library's κ0 of a self pair is (π − θ)/2π with θ ~ √ulp
    # (the raw inputs' variances and x·xᵀ differ by an ulp), ~1e-9 relative, in plain MLPs as well
    off = ~np.eye(len(x), dtype=bool)
    np.testing.assert_allclose(np.asarray(k.ntk)[off], T3[off], rtol=0, atol=1e-10)
    np.testing.assert_allclose(np.diag(np.asarray(k.ntk)), np.diag(T3), rtol=5e-8, atol=0)
    # the block's output variances feed the next nonlinearity: one more Relu after the block
    K = K0 + K3
    v = np.diag(K)
    k_after, _ = _relu_dual(K, v[:, None], v[None, :])
    after = stax.serial(net, stax.Relu()).kernel_fn(x, get="nngp")
    np.testing.assert_allclose(np.asarray(after), k_after, rtol=0, atol=1e-10)
    # the branches' order does not matter (raw inputs first or second in the sum)
    swapped = stax.serial(stax.FanOut(2), stax.parallel(stax.Identity(), stax.serial(
        stax.Dense(8, W, B), stax.Relu(), stax.Dense(d, W, B))), stax.FanInSum())
    np.testing.assert_allclose(np.asarray(swapped.kernel_fn(x, get="nngp")), K0 + K3, rtol=0, atol=1e-10)


def test_tiling_x2_and_get_agree():
    x, y = vectors(7), vectors(4, seed=1)
    net = stax.serial(stax.Dense(8, W, B), res(stax.Relu(), stax.Dense(8, W, B)), stax.Relu(), stax.Dense(1))
    full = net.kernel_fn(x, y)
    tiled = net.kernel_fn(x, y, tile_size=2)
    np.testing.assert_allclose(np.asarray(tiled.nngp), np.asarray(full.nngp), atol=1e-12)
    np.testing.assert_allclose(np.asarray(tiled.ntk), np.asarray(full.ntk), atol=1e-12)
    np.testing.assert_allclose(np.asarray(net.kernel_fn(x, get="ntk", tile_size=3)),
                               np.asarray(net.kernel_fn(x, x, get="ntk")), atol=1e-12)
    # residual and plain networks are different computations for a tile store
    plain = stax.serial(stax.Dense(8, W, B), stax.Relu(), stax.Dense(8, W, B), stax.Relu(), stax.Dense(1))
    assert net.kernel_fn.fingerprint() != plain.kernel_fn.fingerprint()


# ---------------------------------------------------------------------------------------------
# Monte Carlo over finite networks


def test_residual_mlp_matches_finite_ensembles():
    x = vectors(4, 3)
    n = 256
    body = stax.serial(stax.Dense(n, W, B), res(stax.Relu(), stax.Dense(n, W, B)), stax.Relu())
    plain = stax.serial(stax.Dense(n, W, B), stax.Relu(), stax.Dense(n, W, B), stax.Relu())
    readout = stax.Dense(1, W, B)
    kernel = np.asarray(stax.serial(body, readout).kernel_fn(x, get="nngp"))
    emp = ensemble_nngp(body, x, 128, W, B)
    check_ensemble(emp, kernel, np.asarray(stax.serial(plain, readout).kernel_fn(x, get="nngp")), n)


def test_residual_p4_gcnn_matches_finite_ensembles():
    img = np.random.default_rng(2).normal(size=(3, 5, 5, 2))
    n = 48
    body = stax.serial(stax.Z2ConvP4(n, 3, W_std=W, b_std=B), res(stax.Relu(), stax.P4ConvP4(n, 3, W_std=W, b_std=B)),
                       stax.Relu(), stax.GroupPool())
    plain = stax.serial(stax.Z2ConvP4(n, 3, W_std=W, b_std=B), stax.Relu(), stax.P4ConvP4(n, 3, W_std=W, b_std=B),
                        stax.Relu(), stax.GroupPool())
    readout = stax.Dense(1, W, B)
    kernel = np.asarray(stax.serial(body, readout).kernel_fn(img, get="nngp"))
    emp = ensemble_nngp(body, img, 64, W, B)
    check_ensemble(emp, kernel, np.asarray(stax.serial(plain, readout).kernel_fn(img, get="nngp")), n)


def test_residual_cnn_before_pooling_is_the_sum_of_the_branches():
    """Per-element kernels (N1, N2, H, W, H, W) of a residual CNN block: the skip's plus the branch's."""
    img = np.random.default_rng(3).normal(size=(2, 5, 5, 2))
    stem = stax.Conv(4, 3, W_std=W, b_std=B)
    branch = stax.serial(stax.Relu(), stax.Conv(4, 3, "CIRCULAR", W_std=W, b_std=B))
    total = stax.serial(stem, res(branch)).kernel_fn(img)
    skip = stem.kernel_fn(img)
    only = stax.serial(stem, branch).kernel_fn(img)
    np.testing.assert_allclose(np.asarray(total.nngp), np.asarray(skip.nngp) + np.asarray(only.nngp), atol=1e-12)
    np.testing.assert_allclose(np.asarray(total.ntk), np.asarray(skip.ntk) + np.asarray(only.ntk), atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Identity and finite-width plumbing


def test_identity_is_transparent():
    x = vectors()
    a = stax.serial(stax.Dense(6, W, B), stax.Identity(), stax.Relu())
    b = stax.serial(stax.Dense(6, W, B), stax.Relu())
    ka, kb = a.kernel_fn(x), b.kernel_fn(x)
    np.testing.assert_array_equal(np.asarray(ka.nngp), np.asarray(kb.nngp))
    np.testing.assert_array_equal(np.asarray(ka.ntk), np.asarray(kb.ntk))
    shape, pa = a.init_fn(jax.random.PRNGKey(0), x.shape)
    assert shape == (5, 6)
    _, pb = b.init_fn(jax.random.PRNGKey(0), x.shape)
    np.testing.assert_array_equal(np.asarray(a.apply_fn(pa, x)), np.asarray(b.apply_fn((pa[0], pa[2]), x)))


def test_finite_width_branches_are_lists():
    x = vectors(3, 4)
    fan = stax.FanOut(3)
    shapes, _ = fan.init_fn(jax.random.PRNGKey(0), x.shape)
    assert shapes == [x.shape] * 3
    par = stax.parallel(stax.Dense(5), stax.Identity(), stax.Dense(4))
    out_shapes, params = par.init_fn(jax.random.PRNGKey(0), shapes)
    assert out_shapes == [(3, 5), (3, 4), (3, 4)]
    ys = par.apply_fn(params, fan.apply_fn((), x))
    assert [y.shape for y in ys] == out_shapes
    np.testing.assert_array_equal(np.asarray(ys[1]), x)
    summed = stax.FanInSum().apply_fn((), [ys[1], ys[2]])
    np.testing.assert_allclose(np.asarray(summed), x + np.asarray(ys[2]))


# ---------------------------------------------------------------------------------------------
# refusals


def test_fan_in_sum_refuses_mismatched_shapes():
    x = vectors(3, 4)
    net = stax.serial(stax.FanOut(2), stax.parallel(stax.Dense(3), stax.Dense(5)), stax.FanInSum())
    with pytest.raises(ValueError, match="shapes differ"):
        net.init_fn(jax.random.PRNGKey(0), x.shape)
    with pytest.raises(ValueError, match="shapes differ"):
        stax.FanInSum().apply_fn((), [np.zeros((2, 3)), np.zeros((2, 4))])
    # kernels: a VALID convolution in one branch shrinks its grid
    img = np.zeros((2, 6, 6, 1)) + 1.0
    conv = stax.serial(stax.Conv(2, 3), res(stax.Relu(), stax.Conv(2, 3, "VALID")))
    with pytest.raises(ValueError, match="4×4 and 6×6"):
        conv.kernel_fn(img)
    pooled_vs_maps = stax.serial(stax.Conv(2, 3), stax.FanOut(2), stax.parallel(stax.GlobalAvgPool(), stax.Conv(2, 3)),
                                 stax.FanInSum())
    with pytest.raises(ValueError, match="cannot add"):
        pooled_vs_maps.kernel_fn(img)


def test_parallel_refuses_the_wrong_number_of_branches():
    x = vectors(3, 4)
    net = stax.serial(stax.FanOut(3), stax.parallel(stax.Dense(4), stax.Identity()), stax.FanInSum())
    with pytest.raises(ValueError, match="2 layers but its input has 3 branches"):
        net.kernel_fn(x)
    with pytest.raises(ValueError, match="shapes of 2 branches, got 3"):
        net.init_fn(jax.random.PRNGKey(0), x.shape)
    with pytest.raises(ValueError, match="list of 2 branch outputs"):
        stax.parallel(stax.Dense(4), stax.Identity()).apply_fn(((None, None), ()), x)
    with pytest.raises(ValueError, match="needs branches"):
        stax.serial(stax.Dense(4), stax.parallel(stax.Dense(4))).kernel_fn(x)


def test_correlated_branches_are_refused():
    x = vectors(3, 4)
    for branches in ((stax.Identity(), stax.Identity()), (stax.Relu(), stax.Identity()),
                     (stax.serial(stax.Dense(4), stax.Relu()), stax.Identity())):
        net = stax.serial(stax.Dense(4), stax.FanOut(2), stax.parallel(*branches), stax.FanInSum())
        with pytest.raises(ValueError, match="correlated"):
            net.kernel_fn(x)
    # a branch ending in Dense (Identity after it allowed) next to any other branch is exact
    ok = stax.serial(stax.Dense(4), stax.FanOut(2),
                     stax.parallel(stax.serial(stax.Dense(4), stax.Identity()), stax.Relu()), stax.FanInSum())
    ok.kernel_fn(x)


def test_misplaced_branching_layers_are_refused():
    x = vectors(3, 4)
    with pytest.raises(ValueError, match="wrap the branches' layers"):
        stax.serial(stax.FanOut(2), stax.Relu()).kernel_fn(x)
    with pytest.raises(ValueError, match="close them with FanInSum"):
        stax.serial(stax.FanOut(2), stax.parallel(stax.Dense(4), stax.Identity())).kernel_fn(x)
    with pytest.raises(ValueError, match="put FanOut"):
        stax.FanInSum().kernel_fn(x)


# ---------------------------------------------------------------------------------------------
# tiling cost and regrid


def test_cost_counts_the_held_branch():
    """While the convolution branch runs, the skip's kernel blocks stay alive: the tile cost grows."""
    img = np.zeros((1, 6, 6, 1)) + 1.0
    stem = stax.Z2ConvP4(2, 3)
    branch = stax.serial(stax.Relu(), stax.P4ConvP4(2, 3))
    tail = (stax.Relu(), stax.GroupPool())
    resid = stax.serial(stem, res(branch), *tail).kernel_fn
    plain = stax.serial(stem, branch, *tail).kernel_fn
    c_res, _ = resid._structure(img, img, True)
    c_plain, _ = plain._structure(img, img, True)
    block = 4 * 36.0**2  # |G| (HW)² elements
    assert c_res.pair >= c_plain.pair + 2 * block  # the skip's NNGP and NTK blocks
    # and tiles computed under a small budget agree with one big tile
    x = np.random.default_rng(5).normal(size=(3, 6, 6, 1))
    a = resid(x, get="nngp", memory_budget=c_res.pair * 8 * 2)
    np.testing.assert_allclose(np.asarray(a), np.asarray(resid(x, get="nngp")), atol=1e-12)


def test_parallel_regrids_its_quadrature_layers():
    par = stax.parallel(stax.SO3Pool(oversampling=2.0), stax.Identity())
    assert par.kernel_fn.regrid is not None
    expected = stax.parallel(stax.SO3Pool(oversampling=4.0), stax.Identity()).kernel_fn.spec
    assert par.kernel_fn.regrid(4.0).spec == expected
    assert stax.parallel(stax.Dense(2), stax.Identity()).kernel_fn.regrid is None
