"""Closed-form dual kernels (ABRelu, LeakyRelu, Sin, Rbf) and the Gauss–Hermite Tanh / Sigmoid.

Oracles: Monte Carlo over bivariate Gaussians (the definition E[σ(u)σ(v)], E[σ'(u)σ'(v)]),
closed forms of special cases (ABRelu(0, 1) = ReLU, ABRelu(1, 1) = identity, ABRelu(−1, 1) = |x|),
and Monte Carlo over finite networks of the layers.
"""

import numpy as np
import jax
import jax.numpy as jnp
import pytest

from eqntk import stax
from eqntk.core.empirical import empirical_ntk
from eqntk.core.pointwise import ABReluMap, ElementwiseMap, ReluMap, SinMap

CASES = [(1.0, 1.0, 0.3), (0.5, 2.0, -0.7), (2.0, 0.7, 0.95), (1.3, 1.3, 1.0)]  # var1, var2, rho


def _pairs(var1, var2, rho, n=2_000_000, seed=0):
    z1, z2 = np.random.default_rng(seed).normal(size=(2, n))
    u = np.sqrt(var1) * z1
    v = np.sqrt(var2) * (rho * z1 + np.sqrt(max(1 - rho**2, 0.0)) * z2)
    return u, v


def _mc(f, df, var1, var2, rho):
    u, v = _pairs(var1, var2, rho)
    ff, dd = f(u) * f(v), df(u) * df(v)
    n = len(u)
    return ff.mean(), ff.std() / np.sqrt(n), dd.mean(), dd.std() / np.sqrt(n)


MAPS = [
    ("abrelu", ABReluMap(-0.3, 1.7), lambda x: np.where(x < 0, -0.3 * x, 1.7 * x), lambda x: np.where(x < 0, -0.3, 1.7)),
    ("leaky", ABReluMap(0.1, 1.0), lambda x: np.where(x < 0, 0.1 * x, x), lambda x: np.where(x < 0, 0.1, 1.0)),
    ("sin", SinMap(1.5, 0.8, 0.4), lambda x: 1.5 * np.sin(0.8 * x + 0.4), lambda x: 1.2 * np.cos(0.8 * x + 0.4)),
    ("tanh", ElementwiseMap(jnp.tanh, n=48), np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    ("sigmoid", ElementwiseMap(jax.nn.sigmoid, n=48), lambda x: 1 / (1 + np.exp(-x)),
     lambda x: np.exp(-x) / (1 + np.exp(-x)) ** 2),
]


@pytest.mark.parametrize("name,m,f,df", MAPS, ids=[c[0] for c in MAPS])
@pytest.mark.parametrize("var1,var2,rho", CASES)
def test_dual_kernel_matches_monte_carlo(name, m, f, df, var1, var2, rho):
    cov = rho * np.sqrt(var1 * var2)
    k, dot = m.kernel(jnp.asarray(cov), jnp.asarray(1.0), jnp.asarray(var1), jnp.asarray(var2))
    mk, sk, md, sd = _mc(f, df, var1, var2, rho)
    assert abs(float(k) - mk) <= 6 * sk + 1e-12, (float(k), mk, sk)
    assert abs(float(dot) - md) <= 6 * sd + 1e-12, (float(dot), md, sd)
    if rho == 1.0 and var1 == var2:  # the variance map is the diagonal of the kernel
        np.testing.assert_allclose(float(m.var(jnp.asarray(var1))), float(k), rtol=1e-12)


def test_abrelu_special_cases_have_known_closed_forms():
    rng = np.random.default_rng(1)
    v1, v2 = rng.uniform(0.2, 3.0, size=(2, 50))
    rho = rng.uniform(-1, 1, size=50)
    c = rho * np.sqrt(v1 * v2)
    args = tuple(jnp.asarray(a) for a in (c, np.ones(50), v1, v2))
    relu = ReluMap().kernel(*args)
    for got, want in zip(ABReluMap(0.0, 1.0).kernel(*args), relu):
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)
    ident = ABReluMap(1.0, 1.0).kernel(*args)
    np.testing.assert_allclose(ident[0], c, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(ident[1], 1.0, rtol=1e-13)
    # |x|: E|u||v| = (2/π)(√(v1 v2 − c²) + c·arcsin ρ); E[sgn u sgn v] = (2/π) arcsin ρ
    absk = ABReluMap(-1.0, 1.0).kernel(*args)
    np.testing.assert_allclose(absk[0], 2 / np.pi * (np.sqrt(np.maximum(v1 * v2 - c**2, 0)) + c * np.arcsin(rho)),
                               rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(absk[1], 2 / np.pi * np.arcsin(rho), rtol=1e-12, atol=1e-14)


def test_sin_matches_gauss_hermite():
    rng = np.random.default_rng(2)
    v1, v2 = rng.uniform(0.2, 2.0, size=(2, 30))
    c = rng.uniform(-1, 1, size=30) * np.sqrt(v1 * v2)
    args = tuple(jnp.asarray(a) for a in (c, np.ones(30), v1, v2))
    closed = SinMap(0.9, 1.1, -0.6).kernel(*args)
    gh = ElementwiseMap(lambda x: 0.9 * jnp.sin(1.1 * x - 0.6), n=64).kernel(*args)
    for a, b in zip(closed, gh):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11)


def test_rbf_is_the_gaussian_kernel_of_the_preactivations():
    """Rbf(γ): NNGP exp(−γ E(u − v)²) (the squared-exponential kernel), NTK factor 2γ times it."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(6, 4))
    gamma, w = 0.35, 1.3
    k = stax.serial(stax.Dense(64, W_std=w), stax.Rbf(gamma))[2](jnp.asarray(x), get=("nngp", "ntk"))
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1) * w**2 / x.shape[1]  # E(u − v)²
    gauss = np.exp(-gamma * d2)
    np.testing.assert_allclose(np.asarray(k.nngp), gauss, rtol=1e-12, atol=1e-14)
    lin = w**2 * x @ x.T / x.shape[1]  # the Dense NTK (= its NNGP, no bias)
    np.testing.assert_allclose(np.asarray(k.ntk), lin * 2 * gamma * gauss, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="Rbf.*gamma"):
        stax.Rbf(0.0)


@pytest.mark.parametrize("layer", [stax.LeakyRelu(0.2), stax.ABRelu(-0.5, 1.2), stax.Sin(1.0, 1.3, 0.2),
                                   stax.Rbf(0.4), stax.Tanh(), stax.Sigmoid()],
                         ids=["leaky", "abrelu", "sin", "rbf", "tanh", "sigmoid"])
def test_finite_mlps_converge_to_the_kernel(layer):
    """NNGP: the readout Dense(1, b=0.1) integrated out exactly, ``h hᵀ/n + b²`` from the width-n
    features; NTK: full empirical NTKs. Both averaged over seeds; errors shrink as 1/√(n·seeds)."""
    x = jnp.asarray(np.random.default_rng(3).normal(size=(3, 5)))
    width, n_seeds, b_out = 1024, 8, 0.1
    body = [stax.Dense(width, b_std=0.3), layer, stax.Dense(width, W_std=1.5), layer]
    k = stax.serial(*body, stax.Dense(1, b_std=b_out))[2](x)
    _, apply_body, _ = stax.serial(*body)
    init, apply, _ = stax.serial(*body, stax.Dense(1, b_std=b_out))
    ntk = jax.jit(lambda p: empirical_ntk(apply, p, x))
    nn, tt = [], []
    for s in range(n_seeds):
        _, p = init(jax.random.PRNGKey(s), x.shape)
        h = apply_body(p[:-1], x)
        nn.append(h @ h.T / width + b_out**2)
        tt.append(ntk(p))
    for samples, exact in ((np.array(nn), np.asarray(k.nngp)), (np.array(tt), np.asarray(k.ntk))):
        se = samples.std(0, ddof=1) / np.sqrt(n_seeds)  # seed-to-seed spread (finite width)
        # within 5 standard errors, plus 1% for the O(1/width) bias of finite networks
        assert np.all(np.abs(samples.mean(0) - exact) <= 5 * se + 0.01 * np.abs(exact).max())


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="LeakyRelu.*alpha"):
        stax.LeakyRelu(float("nan"))
    with pytest.raises(ValueError, match="Sin.*b"):
        stax.Sin(b=float("inf"))


def test_relu_dual_matches_extended_precision_arctan2():
    # the arc-cosine kernels from NumPy's extended-precision arctan2 (an independent formula), over the
    # whole range of the correlation, near and at |ρ| = 1, and with a zero variance
    jax.config.update("jax_enable_x64", True)
    rng = np.random.default_rng(3)
    rho = np.concatenate([rng.uniform(-1, 1, 4000), [1.0, -1.0, 1 - 1e-12, -1 + 1e-12, 0.0, 2**-0.5, -(2**-0.5)],
                          1 - rng.uniform(0, 1e-6, 200), -1 + rng.uniform(0, 1e-6, 200)])
    v1 = rng.uniform(0.1, 10, rho.size)
    v2 = rng.uniform(0.1, 10, rho.size)
    v1[:3], v2[3:5] = 0.0, 0.0
    cov = rho * np.sqrt(v1 * v2)
    out, dot = ReluMap().kernel(jnp.asarray(cov), jnp.ones_like(jnp.asarray(cov)), jnp.asarray(v1), jnp.asarray(v2))
    L = np.longdouble
    c, p = cov.astype(L), v1.astype(L) * v2.astype(L)
    s = np.sqrt(np.maximum(p - c * c, 0))
    theta = np.arctan2(s, c)
    pi = L(np.pi)
    want_out = (s + (pi - theta) * c) / (2 * pi)
    want_dot = (pi - theta) / (2 * pi)
    scale = np.sqrt(v1 * v2)
    assert np.max(np.abs(np.asarray(out) - want_out.astype(float)) / np.where(scale > 0, scale, 1.0)) < 2e-15
    zero = (v1 == 0) | (v2 == 0)
    # θ(ρ) is ill-conditioned at |ρ| = 1 (dθ/dρ = −1/√(1 − ρ²)): one rounding of cov12 or of
    # var1·var2 − cov12² moves it by ~ε/√(1 − ρ²)
    tol = 2e-15 + 4e-16 / np.sqrt(np.maximum(1 - rho**2, 1e-300))
    assert np.all((np.abs(np.asarray(dot) - want_dot.astype(float)) <= tol)[~zero])
    assert np.allclose(np.asarray(dot)[zero], 0.25)  # θ = π/2 where a variance vanishes (cov = 0)


def test_relu_self_pairs_are_exact():
    # K(x, x) = var / 2 and E[σ'σ'] = 1/2 exactly: the cancellation in s + (π − θ) cov12 must be exact
    jax.config.update("jax_enable_x64", True)
    v = jnp.asarray(np.random.default_rng(4).uniform(1e-3, 1e3, 1000))
    out, dot = ReluMap().kernel(v, jnp.ones_like(v), v, v)
    assert np.max(np.abs(np.asarray(out) - np.asarray(v) / 2) / np.asarray(v)) < 4e-16
    assert np.all(np.asarray(dot) == 0.5)
