"""Empirical kernels of wide finite planar networks converge to kernel_fn's (NTK parameterisation)."""

import jax
import numpy as np
import pytest

from eqntk import stax

LIFT = {"p4": stax.Z2ConvP4, "p4m": stax.Z2ConvP4M, "p2": stax.Z2ConvP2, "cnn": stax.Conv}
CONV = {"p4": stax.P4ConvP4, "p4m": stax.P4MConvP4M, "p2": stax.P2ConvP2, "cnn": stax.Conv}
POOL = {"p4": stax.GroupPool, "p4m": stax.GroupPool, "p2": stax.GroupPool, "cnn": stax.GlobalAvgPool}


def body(group, width, padding="SAME", b=0.2):
    return stax.serial(LIFT[group](width, 3, padding, b_std=b), stax.Relu(),
                       CONV[group](width, 3, padding, b_std=b), stax.Relu(), POOL[group]())


def empirical(group, width, x, seed, padding="SAME", b=0.2):
    """(NNGP, NTK) of one random network body → Dense(1): the NNGP as the kernel of the readout given
    the pooled features, the NTK as ⟨∂f/∂θ, ∂f/∂θ'⟩ over all parameters."""
    net = stax.serial(body(group, width, padding, b), stax.Dense(1, b_std=b))
    _, params = net.init_fn(jax.random.PRNGKey(seed), x.shape)
    feats = body(group, width, padding, b).apply_fn(params[0], x)  # pooled features (N, width)
    nngp = feats @ feats.T / width + b * b

    def f(p):
        return net.apply_fn(p, x)[:, 0]

    J = jax.jacrev(f)(params)
    leaves = [j.reshape(j.shape[0], -1) for j in jax.tree_util.tree_leaves(J)]
    ntk = sum(l @ l.T for l in leaves)
    return np.asarray(nngp), np.asarray(ntk)


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def images(n=3, H=5, W=5, C=2, seed=0):
    return np.random.default_rng(seed).normal(size=(n, H, W, C))


@pytest.mark.parametrize("group,padding", [pytest.param("p4", "SAME", marks=pytest.mark.slow),
                                           pytest.param("p4m", "CIRCULAR", marks=pytest.mark.slow),
                                           pytest.param("p2", "VALID", marks=pytest.mark.slow), ("cnn", "SAME")])
def test_empirical_kernels_close_at_moderate_width(group, padding):
    x = images(H=6 if group == "p2" else 5)
    k = stax.serial(body(group, 1, padding), stax.Dense(1, b_std=0.2)).kernel_fn(x)
    n, t = empirical(group, 128, x, 0, padding)
    errs = (rel(n, k.nngp), rel(t, k.ntk))
    # relative fluctuations ~ 1/√128 ≈ 0.09 times an O(1) constant (measured 0.06–0.08 for p4)
    assert max(errs) < 0.15, errs


def test_per_element_kernels_converge():
    """Before pooling: the empirical covariance of the feature maps at (e, t) and (d, t') is M_d(t, t').

    Single entries are small next to their O(1/√width) fluctuations, so the check is the 1/√width
    decay of the relative error, and that a wrong pairing of group elements does not converge.
    """
    a = images(1, seed=3)
    x = np.concatenate([a, a + 0.3 * images(1, seed=4)])
    M = None
    errs = {}
    for width in (32, 256):
        net = stax.serial(stax.Z2ConvP4(width, 3, "SAME", b_std=0.2), stax.Erf(), stax.P4ConvP4(width, 3, "SAME"))
        if M is None:
            M = np.asarray(net.kernel_fn(x[:1], x[1:], "nngp"))[0, 0]  # (4, H, W, H, W)
        errs[width] = []
        for seed in range(2):
            _, params = net.init_fn(jax.random.PRNGKey(seed), x.shape)
            h = np.asarray(net.apply_fn(params, x))  # (2, 4, H, W, width)
            emp = np.einsum("hwc,dHWc->dhwHW", h[0, 0], h[1]) / width
            errs[width].append(rel(emp, M))
    e_small, e_big = np.mean(errs[32]), np.mean(errs[256])
    assert e_big < 0.6 * e_small, errs  # ≈ √(32/256) = 0.35 expected
    # pairing element e of x with element d+1 of x' (a wrong layout) does not converge to M_d
    emp_wrong = np.einsum("hwc,dHWc->dhwHW", h[0, 0], np.roll(h[1], 1, axis=0)) / 256
    assert rel(emp_wrong, M) > 3 * e_big, (rel(emp_wrong, M), errs)


@pytest.mark.slow
def test_relative_error_falls_with_width_below_5_percent_at_512():
    x = images(3, seed=7)
    k = stax.serial(body("p4", 1), stax.Dense(1, b_std=0.2)).kernel_fn(x)
    errs = {}
    for width in (32, 128, 512):
        e = [empirical("p4", width, x, seed) for seed in range(3)]
        errs[width] = (np.mean([rel(n, k.nngp) for n, _ in e]), np.mean([rel(t, k.ntk) for _, t in e]))
    print(errs)
    for i in range(2):
        assert errs[32][i] > errs[128][i] > errs[512][i], errs
        assert errs[512][i] < 0.05, errs
