"""Monte Carlo: empirical kernels of finite SO(3) GCNNs converge to kernel_fn's as width grows.

NNGP samples integrate out the final Dense(1, W=1, b=0.1) exactly: ``h hᵀ / n + b²`` with ``h`` the
pooled features of width ``n``. NTK samples are full empirical NTKs of the network with its readout.
"""

import numpy as np
import jax
import jax.numpy as jnp
import pytest

from eqntk import stax
from eqntk.core.empirical import empirical_ntk

L, C, B_OUT = 3, 2, 0.1


def _body(width):
    return [stax.S2ConvSO3(width, L, b_std=0.2), stax.Erf(), stax.SO3ConvSO3(width, 3), stax.Relu(),
            stax.SO3Pool()]


def _inputs():
    return jnp.asarray(np.random.default_rng(0).normal(size=(3, L * L, C)))


def _samples(width, n_seeds, seed0=0):
    """Per-network empirical (nngp, ntk), each (n_seeds, 3, 3), and the analytic kernels."""
    x = _inputs()
    k = stax.serial(*_body(1), stax.Dense(1, b_std=B_OUT))[2](x)
    _, apply_body, _ = stax.serial(*_body(width))
    init, apply, _ = stax.serial(*_body(width), stax.Dense(1, b_std=B_OUT))
    feat = jax.jit(lambda p: apply_body(p, x))
    ntk = jax.jit(lambda p: empirical_ntk(apply, p, x))
    N, T = [], []
    for s in range(seed0, seed0 + n_seeds):
        _, p = init(jax.random.PRNGKey(s), x.shape)
        h = feat(p[:-1])
        N.append(h @ h.T / width + B_OUT**2)
        T.append(ntk(p))
    return np.array(N), np.array(T), np.asarray(k.nngp), np.asarray(k.ntk)


def _rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.slow  # 9 s
def test_fluctuations_shrink_with_width():
    """Per-network relative error falls like 1/√width (16 → 256: about 4×)."""
    out = {}
    for w in (16, 256):
        N, T, kn, kt = _samples(w, 6)
        out[w] = (np.mean([_rel(n, kn) for n in N]), np.mean([_rel(t, kt) for t in T]))
    for i in range(2):
        assert out[256][i] < out[16][i] / 2


def test_mean_is_unbiased_within_standard_error():
    """Mean over seeds at width 48 agrees with kernel_fn within 4.5 standard errors, entrywise."""
    N, T, kn, kt = _samples(48, 60)
    for S, ref in ((N, kn), (T, kt)):
        z = (S.mean(0) - ref) / (S.std(0, ddof=1) / np.sqrt(len(S)))
        assert np.all(np.abs(z) < 4.5), z


@pytest.mark.slow
def test_mean_within_5_percent_at_width_512():
    errs = {}
    for w in (32, 512):
        N, T, kn, kt = _samples(w, 8, seed0=100)
        errs[w] = (_rel(N.mean(0), kn), _rel(T.mean(0), kt))
    assert errs[512][0] < errs[32][0] and errs[512][1] < errs[32][1]
    assert max(errs[512]) < 0.05


def test_finite_network_is_invariant():
    """apply_fn acts on Fourier coefficients: rotating the input leaves the pooled output unchanged."""
    from eqntk.so3.wigner import random_rotation, rotate_coeffs

    x = _inputs()
    sq = stax.Elementwise(lambda t: t + t**2)  # polynomial: the grid integrates it exactly
    init, apply, _ = stax.serial(stax.S2ConvSO3(16, L), sq, stax.SO3ConvSO3(16, 2, oversampling=2), sq,
                                 stax.SO3Pool(oversampling=2), stax.Dense(4))
    _, p = init(jax.random.PRNGKey(0), x.shape)
    a, b, g = random_rotation(jax.random.PRNGKey(1), (3,), dtype=jnp.float64)
    np.testing.assert_allclose(apply(p, rotate_coeffs(x, a, b, g)), apply(p, x), atol=1e-12)
