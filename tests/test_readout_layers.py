"""AvgPool, Flatten (and LayerNorm): the readout layers of neural-tangents' image networks (issue 13).

Independent references: the pooling windows from XLA's ``lax.reduce_window`` applied to basis images
(neural-tangents' own implementation of ``AvgPool``), the pre-pooling per-pair kernels of the same
network averaged with numpy, the arc-cosine formula of ``planar_bruteforce``, and ensembles of finite
networks.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import planar_bruteforce as bf
from ensembles import check_ensemble, ensemble_nngp
from eqntk import stax

W, B = 1.3, 0.2


def images(n=3, H=6, W_=6, C=2, seed=0):
    return np.random.default_rng(seed).normal(size=(n, H, W_, C))


def xla_pool(H, W_, window, strides, padding):
    """The pooling operator ``(Ho, Wo, H, W)``: XLA's window sums of the basis images, over the window size."""
    basis = np.eye(H * W_).reshape(H * W_, H, W_)
    win, st = (1,) + tuple(window), (1,) + tuple(strides)
    if padding == "CIRCULAR":
        pads = lax.padtype_to_pads((H, W_), window, strides, "SAME")
        basis = np.pad(basis, [(0, 0)] + list(pads), mode="wrap")
        padding = "VALID"
    out = lax.reduce_window(jnp.asarray(basis), 0.0, lax.add, win, st, padding) / np.prod(window)
    return np.moveaxis(np.asarray(out), 0, -1).reshape(out.shape[1:] + (H, W_))


def pool_kernel(K, P):
    """``K'(p, p') = Σ P(p, a) P(p', b) K(a, b)`` on the last four axes."""
    return np.einsum("ijab,klcd,...abcd->...ijkl", P, P, K)


def cnn_body(pad="SAME"):
    return stax.serial(stax.Conv(4, 3, pad, W_std=W, b_std=B), stax.Relu(), stax.Conv(4, 3, pad, W_std=W, b_std=B))


# ---------------------------------------------------------------------------------------------
# AvgPool: brute force from the pre-pooling kernel


POOLS = [((2, 2), None, "VALID"), ((2, 2), (2, 2), "VALID"), ((3, 2), (2, 1), "SAME"), ((2, 2), (2, 2), "SAME"),
         ((3, 3), (2, 2), "CIRCULAR"), ((4, 1), (1, 3), "CIRCULAR")]


@pytest.mark.parametrize("window,strides,padding", POOLS)
def test_avg_pool_cnn_kernel_is_the_window_mean_of_both_arguments(window, strides, padding):
    x = images(3, 6, 5)
    pre = cnn_body().kernel_fn(x)
    k = stax.serial(cnn_body(), stax.AvgPool(window, strides, padding)).kernel_fn(x)
    P = xla_pool(6, 5, window, strides or (1, 1), padding)
    for got, ref in ((k.nngp, pre.nngp), (k.ntk, pre.ntk)):
        np.testing.assert_allclose(np.asarray(got), pool_kernel(np.asarray(ref), P), rtol=0, atol=1e-10)


@pytest.mark.parametrize("window,strides,padding", POOLS)
def test_avg_pool_apply_fn_is_xla_average_pooling(window, strides, padding):
    x = images(2, 6, 5, 3, seed=1)
    P = xla_pool(6, 5, window, strides or (1, 1), padding)
    layer = stax.AvgPool(window, strides, padding)
    y = np.asarray(layer.apply_fn((), x))
    np.testing.assert_allclose(y, np.einsum("ijab,nabc->nijc", P, x), atol=1e-12)
    assert layer.init_fn(None, x.shape)[0] == y.shape


def test_avg_pool_then_relu_uses_the_pooled_variances():
    """A nonlinearity after pooling: the arc-cosine kernel of the pooled kernel, with the pooled diagonals."""
    x = images(3, 6, 6)
    P = xla_pool(6, 6, (2, 2), (2, 2), "VALID")
    pre = cnn_body().kernel_fn(x)
    K, T = pool_kernel(np.asarray(pre.nngp), P), pool_kernel(np.asarray(pre.ntk), P)
    v = np.einsum("nnijij->nij", K)
    ref, ref_t = bf.relu(K, v[:, None, :, :, None, None], v[None, :, None, None], T)
    k = stax.serial(cnn_body(), stax.AvgPool(2, 2), stax.Relu()).kernel_fn(x)
    np.testing.assert_allclose(np.asarray(k.nngp), ref, atol=1e-10)
    np.testing.assert_allclose(np.asarray(k.ntk), ref_t, atol=1e-10)


@pytest.mark.parametrize("group,window,strides,padding", [
    ("p4", 2, 1, "VALID"), ("p4", 3, 2, "SAME"), ("p4m", 3, 2, "CIRCULAR"), ("p2", (2, 3), (2, 1), "VALID")])
def test_avg_pool_group_maps_per_element(group, window, strides, padding):
    """Group maps: every per-element kernel M_d pooled in both arguments; after a Relu, the arc-cosine
    kernel with the pooled variances (which do not depend on the group element)."""
    lift = {"p4": stax.Z2ConvP4, "p4m": stax.Z2ConvP4M, "p2": stax.Z2ConvP2}[group]
    conv = {"p4": stax.P4ConvP4, "p4m": stax.P4MConvP4M, "p2": stax.P2ConvP2}[group]
    H, W_ = (5, 5) if group != "p2" else (6, 5)
    x = images(2, H, W_)
    body = stax.serial(lift(3, 3, W_std=W, b_std=B), stax.Relu(), conv(3, 3, W_std=W, b_std=B))
    pool = stax.AvgPool(window, strides, padding)
    wnd = (window, window) if np.ndim(window) == 0 else window
    st = (strides, strides) if np.ndim(strides) == 0 else strides
    P = xla_pool(H, W_, wnd, st, padding)
    pre = body.kernel_fn(x)
    K, T = pool_kernel(np.asarray(pre.nngp), P), pool_kernel(np.asarray(pre.ntk), P)  # (n, n, |G|, ...)
    k = stax.serial(body, pool).kernel_fn(x)
    np.testing.assert_allclose(np.asarray(k.nngp), K, atol=1e-10)
    np.testing.assert_allclose(np.asarray(k.ntk), T, atol=1e-10)
    v = np.einsum("nnijij->nij", K[:, :, 0])
    ref, ref_t = bf.relu(K, v[:, None, None, :, :, None, None], v[None, :, None, None, None], T)
    k = stax.serial(body, pool, stax.Relu()).kernel_fn(x)
    np.testing.assert_allclose(np.asarray(k.nngp), ref, atol=1e-10)
    np.testing.assert_allclose(np.asarray(k.ntk), ref_t, atol=1e-10)
    # the finite layer pools the spatial axes of every group element alike
    h = np.random.default_rng(5).normal(size=(2, K.shape[2], H, W_, 3))
    np.testing.assert_allclose(np.asarray(pool.apply_fn((), h)), np.einsum("ijab,ngabc->ngijc", P, h), atol=1e-12)


def test_avg_pool_as_first_layer_pools_the_images():
    x = images(3, 6, 6)
    pooled = np.asarray(stax.AvgPool(3, 2, "SAME").apply_fn((), x))
    a = stax.serial(stax.AvgPool(3, 2, "SAME"), cnn_body()).kernel_fn(x)
    b = cnn_body().kernel_fn(pooled)
    np.testing.assert_allclose(np.asarray(a.nngp), np.asarray(b.nngp), atol=1e-12)
    np.testing.assert_allclose(np.asarray(a.ntk), np.asarray(b.ntk), atol=1e-12)


@pytest.mark.parametrize("group,pool", [("p4", stax.AvgPool(3, 2, "SAME")), ("p4m", stax.AvgPool(2, 1, "VALID")),
                                        ("p4", stax.AvgPool(3, 2, "CIRCULAR"))])
def test_avg_pool_keeps_group_networks_invariant(group, pool):
    """With symmetric windows the pooled GCNN's kernel is invariant under rotating (and flipping) an input."""
    lift, conv = {"p4": (stax.Z2ConvP4, stax.P4ConvP4), "p4m": (stax.Z2ConvP4M, stax.P4MConvP4M)}[group]
    net = stax.serial(lift(3, 3, W_std=W, b_std=B), stax.Relu(), pool, conv(3, 3, W_std=W, b_std=B), stax.Relu(),
                      stax.GroupPool(), stax.Dense(1, W, B))
    x = images(2, 5, 5, seed=8)
    k = np.asarray(net.kernel_fn(x, get="ntk"))
    moved = [np.rot90(x, 1, axes=(1, 2))] + ([x[:, :, ::-1]] if group == "p4m" else [])
    for xr in moved:
        # 1e-9: the ReLU NTK's infinite slope at perfectly correlated pixel pairs (the self pairs) turns rounding
        # into ~1e-12 relative differences there (as in test_planar_reference); off the diagonal 1e-12 holds
        got = np.asarray(net.kernel_fn(x, xr, get="ntk"))
        np.testing.assert_allclose(got, k, rtol=1e-9)
        np.testing.assert_allclose(got[0, 1], k[0, 1], rtol=1e-12)
    # the pooling matters: without it the kernel differs
    plain = stax.serial(lift(3, 3, W_std=W, b_std=B), stax.Relu(), conv(3, 3, W_std=W, b_std=B), stax.Relu(),
                        stax.GroupPool(), stax.Dense(1, W, B))
    assert np.abs(np.asarray(plain.kernel_fn(x, get="ntk")) - k).max() > 1e-3 * np.abs(k).max()


def test_refused_windows_would_break_invariance(monkeypatch):
    """Why the refusal: with the check bypassed, an off-centre window (2×2, stride 2, SAME on 5×5 maps) makes the
    pooled p4 network's kernel change when an input is rotated."""
    import eqntk.planar.layers as planar_layers

    check = planar_layers._pool_matrices
    monkeypatch.setattr(planar_layers, "_pool_matrices", lambda *a: check(*a[:-1], 1))
    net = stax.serial(stax.Z2ConvP4(3, 3), stax.Relu(), stax.AvgPool(2, 2, "SAME"), stax.P4ConvP4(3, 3), stax.Relu(),
                      stax.GroupPool(), stax.Dense(1))
    x = images(2, 5, 5, seed=8)
    k = np.asarray(net.kernel_fn(x, get="ntk"))
    kr = np.asarray(net.kernel_fn(x, np.rot90(x, 1, axes=(1, 2)), get="ntk"))
    assert np.abs(k - kr).max() > 1e-3 * np.abs(k).max()


def test_avg_pool_of_a_window_of_one_is_the_identity():
    x = images(2, 5, 5)
    a = cnn_body().kernel_fn(x)
    b = stax.serial(cnn_body(), stax.AvgPool(1)).kernel_fn(x)
    np.testing.assert_allclose(np.asarray(b.nngp), np.asarray(a.nngp), atol=1e-14)


# ---------------------------------------------------------------------------------------------
# Flatten: the diagonal mean


def test_flatten_dense_is_the_mean_of_the_diagonal():
    x = images(3, 5, 4)
    pre = cnn_body().kernel_fn(x)
    k = stax.serial(cnn_body(), stax.Flatten(), stax.Dense(1, W, B)).kernel_fn(x)
    kd = np.einsum("xyijij->xy", np.asarray(pre.nngp)) / 20
    td = np.einsum("xyijij->xy", np.asarray(pre.ntk)) / 20
    nngp = W**2 * kd + B**2
    np.testing.assert_allclose(np.asarray(k.nngp), nngp, atol=1e-12)
    np.testing.assert_allclose(np.asarray(k.ntk), nngp + W**2 * td, atol=1e-12)
    # ... which is not the mean over all pixel pairs (GlobalAvgPool)
    g = stax.serial(cnn_body(), stax.GlobalAvgPool(), stax.Dense(1, W, B)).kernel_fn(x, get="nngp")
    assert np.abs(np.asarray(g) - nngp).max() > 0.05 * np.abs(nngp).max()


def test_flatten_dense_relu_and_raw_inputs():
    x = images(3, 4, 4)
    # a nonlinearity after Flatten → Dense: the arc-cosine kernel of the flattened Dense kernel
    pre = stax.serial(cnn_body(), stax.Flatten(), stax.Dense(1, W, B)).kernel_fn(x)
    k = stax.serial(cnn_body(), stax.Flatten(), stax.Dense(1, W, B), stax.Relu()).kernel_fn(x)
    K = np.asarray(pre.nngp)
    v = np.diag(K)
    ref, ref_t = bf.relu(K, v[:, None], v[None, :], np.asarray(pre.ntk))
    np.testing.assert_allclose(np.asarray(k.nngp), ref, atol=1e-12)
    np.testing.assert_allclose(np.asarray(k.ntk), ref_t, atol=1e-12)
    # on raw images: the linear kernel of the flattened images
    flat = x.reshape(3, -1)
    k = stax.serial(stax.Flatten(), stax.Dense(1, W, B)).kernel_fn(x, get="nngp")
    np.testing.assert_allclose(np.asarray(k), W**2 * flat @ flat.T / flat.shape[1] + B**2, atol=1e-12)
    y, _ = stax.Flatten().init_fn(None, (3, 4, 4, 2))
    assert y == (3, 32) and stax.Flatten().apply_fn((), x).shape == (3, 32)


def test_flatten_group_maps_is_the_identity_element_diagonal():
    x = images(3, 5, 5)
    body = stax.serial(stax.Z2ConvP4(3, 3, W_std=W, b_std=B), stax.Relu(), stax.P4ConvP4(3, 3, W_std=W, b_std=B))
    pre = body.kernel_fn(x)
    k = stax.serial(body, stax.Flatten(), stax.Dense(1, W, B)).kernel_fn(x)
    nngp = W**2 * np.einsum("xyijij->xy", np.asarray(pre.nngp)[:, :, 0]) / 25 + B**2
    np.testing.assert_allclose(np.asarray(k.nngp), nngp, atol=1e-12)
    np.testing.assert_allclose(np.asarray(k.ntk), nngp + W**2 * np.einsum("xyijij->xy", np.asarray(pre.ntk)[:, :, 0])
                               / 25, atol=1e-12)
    # not invariant: rotating one input changes it (GroupPool's kernel does not change)
    xr = np.rot90(x, 1, axes=(1, 2))
    kr = stax.serial(body, stax.Flatten(), stax.Dense(1, W, B)).kernel_fn(x, xr, get="nngp")
    assert np.abs(np.asarray(kr) - nngp).max() > 1e-3 * np.abs(nngp).max()


# ---------------------------------------------------------------------------------------------
# Monte Carlo over finite networks


def test_cnn_avg_pool_flatten_matches_finite_ensembles():
    x = images(4, 6, 6, seed=3)
    n = 64

    def body(readout):
        return stax.serial(stax.Conv(n, 3, W_std=W, b_std=B), stax.Relu(), stax.AvgPool(2, 2, "SAME"),
                           stax.Conv(n, 3, W_std=W, b_std=B), stax.Relu(), readout)

    kernel = np.asarray(stax.serial(body(stax.Flatten()), stax.Dense(1, W, B)).kernel_fn(x, get="nngp"))
    wrong = np.asarray(stax.serial(body(stax.GlobalAvgPool()), stax.Dense(1, W, B)).kernel_fn(x, get="nngp"))
    emp = ensemble_nngp(body(stax.Flatten()), x, 96, W, B)
    check_ensemble(emp, kernel, wrong, n)


def _p4_body(pool, readout, n=48):
    return stax.serial(stax.Z2ConvP4(n, 3, W_std=W, b_std=B), stax.Relu(), *pool,
                       stax.P4ConvP4(n, 3, W_std=W, b_std=B), stax.Relu(), readout)


def _nngp(*layers, x):
    return np.asarray(stax.serial(*layers, stax.Dense(1, W, B)).kernel_fn(x, get="nngp"))


def test_p4_flatten_matches_finite_ensembles():
    """Flattened p4 maps (group axis included) after AvgPool; GroupPool's kernel is outside the tolerance."""
    x = images(3, 5, 5, seed=4)
    pool = [stax.AvgPool(3, 2, "SAME")]
    kernel, wrong = _nngp(_p4_body(pool, stax.Flatten()), x=x), _nngp(_p4_body(pool, stax.GroupPool()), x=x)
    check_ensemble(ensemble_nngp(_p4_body(pool, stax.Flatten()), x, 96, W, B), kernel, wrong, 48)


def test_p4_avg_pool_matches_finite_ensembles():
    """p4 maps pooled (3×3 windows, stride 2) between the layers; the network without the pooling is outside."""
    x = images(3, 5, 5, seed=4)
    pool = [stax.AvgPool(3, 2, "SAME")]
    kernel, wrong = _nngp(_p4_body(pool, stax.GroupPool()), x=x), _nngp(_p4_body([], stax.GroupPool()), x=x)
    check_ensemble(ensemble_nngp(_p4_body(pool, stax.GroupPool()), x, 32, W, B, seed=1), kernel, wrong, 48)


def _empirical_ntk(f, x, seeds):
    """Mean over ``seeds`` of ⟨∂f/∂θ, ∂f/∂θ'⟩ over all parameters of ``f`` (one output)."""
    out = []
    for seed in seeds:
        _, params = f.init_fn(jax.random.PRNGKey(seed), x.shape)
        J = jax.jacrev(lambda p: f.apply_fn(p, x)[:, 0])(params)
        leaves = [j.reshape(j.shape[0], -1) for j in jax.tree_util.tree_leaves(J)]
        out.append(np.asarray(sum(l @ l.T for l in leaves)))
    return np.mean(out, axis=0)


@pytest.mark.slow  # 8-12 s each; the finite-ensemble NNGP tests above stay in the fast suite
@pytest.mark.parametrize("group", ["cnn", "p4"])
def test_avg_pool_flatten_empirical_ntk(group):
    """The NTK over all parameters (Jacobians of wide finite networks) against kernel_fn's, and not GlobalAvgPool's
    (GroupPool's) readout."""
    x = images(3, 5, 5, seed=6)
    if group == "cnn":
        n, lift, conv, pool, other = 256, stax.Conv, stax.Conv, stax.AvgPool(2, 1, "VALID"), stax.GlobalAvgPool()
    else:
        n, lift, conv, pool, other = 64, stax.Z2ConvP4, stax.P4ConvP4, stax.AvgPool(3, 2, "SAME"), stax.GroupPool()

    def net(readout):
        return stax.serial(lift(n, 3, W_std=W, b_std=B), stax.Relu(), pool, conv(n, 3, W_std=W, b_std=B),
                           stax.Relu(), readout, stax.Dense(1, W, B))

    k = np.asarray(net(stax.Flatten()).kernel_fn(x, get="ntk"))
    wrong = np.asarray(net(other).kernel_fn(x, get="ntk"))
    emp = _empirical_ntk(net(stax.Flatten()), x, range(2))
    rel = np.linalg.norm(emp - k) / np.linalg.norm(k)
    assert rel < 0.1, rel  # fluctuations ~ 1/√width per seed (0.06 for the CNN, 0.03-0.06 for p4), O(1) constant
    assert np.linalg.norm(emp - wrong) / np.linalg.norm(wrong) > 2 * rel


# ---------------------------------------------------------------------------------------------
# Refusals, specs, cost


@pytest.mark.parametrize("kwargs,match", [
    (dict(window_shape=0), "window_shape"), (dict(window_shape=(2, 2, 2)), "window_shape"),
    (dict(window_shape=2.5), "window_shape"), (dict(window_shape=True), "window_shape"),
    (dict(window_shape=2, strides=(0, 1)), "strides"), (dict(window_shape=2, padding="REFLECT"), "padding")])
def test_avg_pool_refuses_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        stax.AvgPool(**kwargs)


def test_avg_pool_refuses_misplaced_or_non_equivariant_pooling():
    x = images(2, 5, 5)
    with pytest.raises(ValueError, match="does not fit"):
        stax.serial(cnn_body(), stax.AvgPool(6)).kernel_fn(x)
    with pytest.raises(ValueError, match="spatial feature maps"):
        stax.serial(stax.Dense(3), stax.AvgPool(2)).kernel_fn(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="spatial feature maps"):
        stax.serial(cnn_body(), stax.GlobalAvgPool(), stax.AvgPool(2)).kernel_fn(x)
    p4 = stax.Z2ConvP4(3, 3)
    for pool, why in ((stax.AvgPool((2, 3)), "square window"), (stax.AvgPool(2, 2), "symmetrically"),
                      (stax.AvgPool(2, 1, "SAME"), "symmetrically")):
        with pytest.raises(ValueError, match=why):
            stax.serial(p4, pool).kernel_fn(x)
        with pytest.raises(ValueError, match=why):
            pool.apply_fn((), np.zeros((1, 4, 5, 5, 2)))
    # the same windows are fine for the plain CNN and (symmetric ones) for p2 on rectangular maps
    stax.serial(cnn_body(), stax.AvgPool((2, 3), 2, "SAME")).kernel_fn(x)
    stax.serial(stax.Z2ConvP2(3, 3), stax.AvgPool((2, 3), (3, 2), "VALID")).kernel_fn(images(1, 5, 7))
    with pytest.raises(ValueError, match="expected CNN maps"):
        stax.AvgPool(2).apply_fn((), np.zeros((2, 5, 5)))


def test_flatten_refuses_a_nonlinearity_next():
    x = images(2, 4, 4)
    for act in (stax.Relu(), stax.Erf(), stax.Gelu()):
        with pytest.raises(ValueError, match="Dense layer after Flatten"):
            stax.serial(cnn_body(), stax.Flatten(), act).kernel_fn(x)


def test_specs_identify_the_layers():
    def fp(*layers):
        return stax.serial(cnn_body(), *layers, stax.Dense(1)).kernel_fn.fingerprint()

    prints = [fp(stax.AvgPool(2)), fp(stax.AvgPool(2, 2)), fp(stax.AvgPool(2, padding="SAME")),
              fp(stax.AvgPool((2, 1))), fp(stax.Flatten()), fp(stax.GlobalAvgPool())]
    assert len(set(prints)) == len(prints)
    assert fp(stax.AvgPool(2)) == fp(stax.AvgPool((2, 2), (1, 1), "valid"))
    assert fp(stax.LayerNorm(), stax.Flatten()) != fp(stax.LayerNorm(eps=1e-6), stax.Flatten())


def test_tile_program_with_avg_pool_fits_cost():
    from test_planar_cost import _bytes

    for layers in ([stax.Conv(4, 3), stax.Relu(), stax.AvgPool(2, 1, "SAME"), stax.Conv(4, 3), stax.Relu(),
                    stax.Flatten()],
                   [stax.Z2ConvP4(4, 3), stax.Relu(), stax.AvgPool(3, 1, "SAME"), stax.P4ConvP4(4, 3), stax.Relu(),
                    stax.GroupPool()],
                   [stax.Conv(4, 3), stax.LayerNorm(), stax.Relu(), stax.Conv(4, 3), stax.LayerNorm(), stax.Relu(),
                    stax.GlobalAvgPool()]):
        kfn = stax.serial(*layers, stax.Dense(1)).kernel_fn
        measured, budgeted = _bytes(kfn, 8, "float32", True)
        assert measured <= budgeted, (measured, budgeted)


# ---------------------------------------------------------------------------------------------
# LayerNorm


def vectors(n=4, d=3, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)) * np.array([0.5, 1.0, 2.0])[:d]


def test_layer_norm_invariant_closed_form():
    x = vectors()
    pre = stax.serial(stax.Dense(8, W, B), stax.Relu(), stax.Dense(8, W, B)).kernel_fn(x)
    K, T = np.asarray(pre.nngp), np.asarray(pre.ntk)
    v = np.diag(K)
    s = 1.0 / np.sqrt(np.outer(v, v))
    k = stax.serial(stax.Dense(8, W, B), stax.Relu(), stax.Dense(8, W, B), stax.LayerNorm()).kernel_fn(x)
    np.testing.assert_allclose(np.asarray(k.nngp), K * s, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(k.ntk), T * s, rtol=1e-10)
    np.testing.assert_allclose(np.diag(np.asarray(k.nngp)), 1.0, atol=1e-10)  # the output variances are 1
    # a nonlinearity after it sees variance 1
    k = stax.serial(stax.Dense(8, W, B), stax.Relu(), stax.Dense(8, W, B), stax.LayerNorm(), stax.Relu()).kernel_fn(x)
    ref, ref_t = bf.relu(K * s, 1.0, 1.0, T * s)
    np.testing.assert_allclose(np.asarray(k.nngp), ref, atol=1e-10)
    np.testing.assert_allclose(np.asarray(k.ntk), ref_t, atol=1e-10)


def test_layer_norm_per_pixel_on_cnn_and_p4_maps():
    x = images(2, 5, 5)
    for body in (cnn_body(), stax.serial(stax.Z2ConvP4(3, 3, W_std=W, b_std=B), stax.Relu(),
                                         stax.P4ConvP4(3, 3, W_std=W, b_std=B))):
        pre = body.kernel_fn(x)
        K, T = np.asarray(pre.nngp), np.asarray(pre.ntk)
        if K.ndim == 6:  # the CNN: a group axis of one element
            K, T = K[:, :, None], T[:, :, None]
        v = np.einsum("nnijij->nij", K[:, :, 0])  # per-pixel variances, the same for every group element
        s = 1.0 / np.sqrt(v[:, None, None, :, :, None, None] * v[None, :, None, None, None])
        k = stax.serial(body, stax.LayerNorm()).kernel_fn(x)
        np.testing.assert_allclose(np.asarray(k.nngp).reshape(K.shape), K * s, rtol=1e-10)
        np.testing.assert_allclose(np.asarray(k.ntk).reshape(K.shape), T * s, rtol=1e-10)
    h = np.random.default_rng(0).normal(size=(2, 4, 3, 3, 5)) + 1.0
    y = np.asarray(stax.LayerNorm().apply_fn((), h))
    np.testing.assert_allclose(y.mean(-1), 0.0, atol=1e-12)
    np.testing.assert_allclose(y.var(-1), 1.0, atol=1e-9)


def test_layer_norm_matches_finite_ensembles():
    x = vectors(4, 3, seed=1)
    n = 256

    def body(*norm):
        return stax.serial(stax.Dense(n, W, B), stax.Relu(), stax.Dense(n, W, B), *norm, stax.Relu())

    kernel = np.asarray(stax.serial(body(stax.LayerNorm()), stax.Dense(1, W, B)).kernel_fn(x, get="nngp"))
    wrong = np.asarray(stax.serial(body(), stax.Dense(1, W, B)).kernel_fn(x, get="nngp"))
    check_ensemble(ensemble_nngp(body(stax.LayerNorm()), x, 64, W, B), kernel, wrong, n)


def test_layer_norm_refusals():
    x = vectors()
    with pytest.raises(ValueError, match="axis=-1"):
        stax.LayerNorm(axis=1)
    with pytest.raises(ValueError, match="eps"):
        stax.LayerNorm(eps=0.0)
    with pytest.raises(ValueError, match="raw inputs"):
        stax.serial(stax.LayerNorm(), stax.Dense(1)).kernel_fn(x)
    with pytest.raises(ValueError, match="needs centred inputs"):
        stax.serial(stax.Dense(4), stax.Relu(), stax.LayerNorm())
    with pytest.raises(ValueError, match="needs centred inputs"):  # through a nested serial
        stax.serial(stax.Dense(4), stax.Relu(), stax.serial(stax.LayerNorm(), stax.Dense(1)))
    # centred inputs: after Dense, after a convolution and AvgPool or Flatten; LayerNorm keeps the status
    stax.serial(stax.Dense(4), stax.Relu(), stax.Dense(4), stax.LayerNorm(), stax.LayerNorm())
    stax.serial(stax.Conv(4, 3), stax.AvgPool(2), stax.Flatten(), stax.LayerNorm(), stax.Dense(1)).kernel_fn(
        images(2, 4, 4))
    sig = np.random.default_rng(0).normal(size=(2, 4, 2))  # SO(3) signals: bandlimit 2, 2 channels
    with pytest.raises(ValueError, match="not for a"):
        stax.serial(stax.S2ConvSO3(4, 2), stax.LayerNorm()).kernel_fn(sig)
