"""Residual SO(3) GCNNs: FanInSum of functions on SO(3) (SO3Pairs.add / SumBase, SO3Sum).

Checked against a closed form and the sum of separately computed branch kernels (linear blocks), the
sum of branch kernels on the common grid (nonlinear branches, nested blocks), Monte Carlo ensembles of finite
networks (with the network without its skip failing the same criterion), exact rotation invariance, refusals.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ensembles import check_ensemble, ensemble_nngp
from eqntk import stax
from eqntk.core.kernel import Inputs
from eqntk.core.layers import _op_of
from eqntk.so3.kernel_state import SumBase
from eqntk.so3.wigner import random_rotation, rotate_coeffs

W, B = 1.3, 0.4  # W_std, b_std of every parameterised layer
L, C = 3, 2


def res(*branch):
    """``x + branch(x)``."""
    return stax.serial(stax.FanOut(2), stax.parallel(stax.serial(*branch), stax.Identity()), stax.FanInSum())


def signals(n, seed=0):
    rng = np.random.default_rng(seed)
    d = np.repeat(1.0 / (1.0 + np.arange(L)), 2 * np.arange(L) + 1)
    return rng.normal(size=(n, L * L, C)) * d[None, :, None]


def _rotate_each(x, key):
    a, b, g = random_rotation(key, (x.shape[0],), dtype=jnp.float64)
    return rotate_coeffs(jnp.asarray(x), a, b, g)


# ---------------------------------------------------------------------------------------------
# exact: linear blocks, and sums of nonlinear branches on the common grid


def test_linear_block_matches_closed_form_and_the_sum_of_its_branches():
    """y = ψ + SO3Conv(ψ) after a lift, pooled (on the point rule) and unpooled (Wigner-D blocks).

    Pooled closed form, m = Σ_c x_i,00c x_j,00c / (4π C) (the lift's degree-0 term):
    K = (W² m + b²) + (W² (W² m + b²) + b²),  Θ = (W² m + b²) + (K_conv + W² (W² m + b²)).
    """
    x = signals(4, seed=1)
    lift = stax.S2ConvSO3(3, L, W, B)
    conv = stax.SO3ConvSO3(3, L, W, B)
    k = stax.serial(lift, res(conv), stax.SO3Pool()).kernel_fn(x)
    m = np.einsum("ic,jc->ij", x[:, 0], x[:, 0]) / (4 * np.pi * C)
    k_lift = W**2 * m + B**2
    k_conv = W**2 * k_lift + B**2
    np.testing.assert_allclose(np.asarray(k.nngp), k_lift + k_conv, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(k.ntk), k_lift + k_conv + W**2 * k_lift, rtol=0, atol=1e-12)
    # the non-branching networks, computed independently, then added: pooled on the point rule, on the
    # grid, and unpooled (the Wigner-D blocks of ψ, no integration)
    for tail in ((stax.SO3Pool(),), (stax.SO3Pool(rule=False),), ()):
        total = stax.serial(lift, res(conv), *tail).kernel_fn(x)
        skip = stax.serial(lift, *tail).kernel_fn(x)
        only = stax.serial(lift, conv, *tail).kernel_fn(x)
        np.testing.assert_allclose(np.asarray(total.nngp), np.asarray(skip.nngp) + np.asarray(only.nngp),
                                   rtol=0, atol=1e-10)
        np.testing.assert_allclose(np.asarray(total.ntk), np.asarray(skip.ntk) + np.asarray(only.ntk),
                                   rtol=0, atol=1e-10)
    # the blocks' degree-0 coefficient is the pooled kernel; a convolution after the block
    blocks = stax.serial(lift, res(conv)).kernel_fn(x)
    assert blocks.nngp.shape == (4, 4, 1 + 9 + 25)
    np.testing.assert_allclose(np.asarray(blocks.nngp)[..., 0], np.asarray(k.nngp), atol=1e-12)
    after = stax.serial(lift, res(conv), stax.SO3ConvSO3(3, 2, W, B), stax.SO3Pool()).kernel_fn(x)
    np.testing.assert_allclose(np.asarray(after.nngp), W**2 * (k_lift + k_conv) + B**2, rtol=0, atol=1e-12)


@pytest.mark.slow  # 12 s; the common-grid sum is also checked by test_residual_so3_gcnn_matches_finite_ensembles
def test_nonlinear_branches_add_on_the_common_grid():
    """Relu inside both branches, summed, pooled on the grid: the sum of the two branches' pooled kernels
    (each on the same grid) to rounding; a Relu after the sum sees the summed variances."""
    x = signals(3, seed=2)
    lift = stax.S2ConvSO3(3, L, W, B)
    branch = (stax.SO3ConvSO3(3, L, W, B), stax.Relu(), stax.SO3ConvSO3(3, L, W, B))
    pool = stax.SO3Pool(rule=False)
    total = stax.serial(lift, stax.Relu(), res(*branch), pool).kernel_fn(x)
    skip = stax.serial(lift, stax.Relu(), pool).kernel_fn(x)
    only = stax.serial(lift, stax.Relu(), *branch, pool).kernel_fn(x)
    np.testing.assert_allclose(np.asarray(total.nngp), np.asarray(skip.nngp) + np.asarray(only.nngp), atol=1e-10)
    np.testing.assert_allclose(np.asarray(total.ntk), np.asarray(skip.ntk) + np.asarray(only.ntk), atol=1e-10)
    # the state after the sum: nonlinear (its grid is the nonlinear one), variances added
    state_fn = stax.serial(lift, stax.Relu(), res(*branch)).kernel_fn
    inputs = Inputs(jnp.asarray(x), jnp.asarray(x), True)
    st = _op_of(state_fn)(inputs)
    assert isinstance(st.cross.base, SumBase) and st.cross.nonlinear and not st.cross.maps
    a = _op_of(stax.serial(lift, stax.Relu()).kernel_fn)(inputs)
    b = _op_of(stax.serial(lift, stax.Relu(), *branch).kernel_fn)(inputs)
    np.testing.assert_allclose(np.asarray(st.var1), np.asarray(a.var1) + np.asarray(b.var1), atol=1e-12)
    # point rule (Relu inside the parts, none after the sum) and grid agree to quadrature accuracy
    ruled = stax.serial(lift, stax.Relu(), res(*branch), stax.SO3Pool()).kernel_fn(x)
    np.testing.assert_allclose(np.asarray(ruled.nngp), np.asarray(total.nngp), rtol=2e-3)
    # tiles and the symmetric path agree with one tile
    net = stax.serial(lift, stax.Relu(), res(*branch), stax.Relu(), stax.SO3Pool(), stax.Dense(1, W, B)).kernel_fn
    np.testing.assert_allclose(np.asarray(net(x, get="ntk", tile_size=2)), np.asarray(net(x, get="ntk")), atol=1e-13)


def test_consecutive_blocks_nest_their_sums():
    """Two blocks without a convolution between them: the second block's skip is itself a sum (a SumBase
    inside a SumBase). Pooled on the grid it is the first block's pooled kernel plus that of the first
    block followed by the second block's branch."""
    x = signals(3, seed=7)
    lift = stax.S2ConvSO3(3, L, W, B)
    pool = stax.SO3Pool(rule=False)

    def block():
        return res(stax.Relu(), stax.SO3ConvSO3(3, L, W, B))

    total = stax.serial(lift, block(), block(), pool).kernel_fn(x)
    first = stax.serial(lift, block(), pool).kernel_fn(x)
    second = stax.serial(lift, block(), stax.Relu(), stax.SO3ConvSO3(3, L, W, B), pool).kernel_fn(x)
    for get in ("nngp", "ntk"):
        np.testing.assert_allclose(np.asarray(getattr(total, get)),
                                   np.asarray(getattr(first, get)) + np.asarray(getattr(second, get)), atol=1e-10)


# ---------------------------------------------------------------------------------------------
# Monte Carlo over finite networks


def test_residual_so3_gcnn_matches_finite_ensembles():
    """Mean over 64 networks of width 48 within 4 standard errors plus a finite-width bias allowance
    (1/width of the kernel's scale) of kernel_fn, entrywise; the network without the skip is more than
    1.5 tolerances away somewhere. (Seeds 0-3 measured: |error|/tol ≤ 0.25; without the skip ≥ 2.19.)"""
    x = jnp.asarray(signals(3, seed=3))
    n = 48

    def net(width, skip):
        block = (stax.Relu(), stax.SO3ConvSO3(width, L, W, B))
        return stax.serial(stax.S2ConvSO3(width, L, W, B), res(*block) if skip else stax.serial(*block),
                           stax.Relu(), stax.SO3Pool())

    readout = stax.Dense(1, W, B)
    kernel = np.asarray(stax.serial(net(1, True), readout).kernel_fn(x, get="nngp"))
    wrong = np.asarray(stax.serial(net(1, False), readout).kernel_fn(x, get="nngp"))
    emp = ensemble_nngp(net(n, True), x, 64, W, B)
    check_ensemble(emp, kernel, wrong, n, n_se=4.0, bias=1.0)


# ---------------------------------------------------------------------------------------------
# invariance


def _poly_net(pool_oversampling, after_sum=True):
    cube = stax.Elementwise(lambda t: t + 0.5 * t**2 + 0.2 * t**3)
    block = res(stax.SO3ConvSO3(2, L, oversampling=3), cube, stax.SO3ConvSO3(2, L, oversampling=3))
    return stax.serial(stax.S2ConvSO3(2, L, b_std=0.3), cube, block, *((cube,) if after_sum else ()),
                       stax.SO3Pool(oversampling=pool_oversampling), stax.Dense(1, b_std=0.1))


def test_exact_rotation_invariance():
    """Cubic σ, so the quadrature can be exact and the kernel invariant to rounding.

    * Pooled straight after the sum: the integrand σ(ψ_lift) + ψ_conv has degree 3(L-1), exact at
      oversampling 3 only because the sum reports its skip branch's pending σ as nonlinear (a sum taken
      for linear is pooled on a grid of exact degree 2(L-1): not invariant, checked by mutation).
    * σ after the sum: σ(σ(ψ_lift) + ψ_conv) has degree 9(L-1): exact at oversampling 9 (the
      oversampling counts one σ, as for two pointwise layers in a row without a block).
    """
    x1, x2 = signals(3, seed=4), signals(2, seed=5)
    r1, r2 = _rotate_each(x1, jax.random.PRNGKey(0)), _rotate_each(x2, jax.random.PRNGKey(1))
    for net in (_poly_net(3, after_sum=False), _poly_net(9)):
        k, kr = net.kernel_fn(x1, x2), net.kernel_fn(r1, r2)
        np.testing.assert_allclose(kr.nngp, k.nngp, rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(kr.ntk, k.ntk, rtol=1e-11, atol=1e-13)
        # the finite network (SO3Sum, on the same grids): rotating the inputs leaves its output unchanged
        _, p = net.init_fn(jax.random.PRNGKey(2), x1.shape)
        np.testing.assert_allclose(net.apply_fn(p, r1), net.apply_fn(p, x1), atol=1e-12)


# ---------------------------------------------------------------------------------------------
# refusals


def test_refusals():
    x = signals(2)
    lift = stax.S2ConvSO3(4, L)
    other_bandlimit = stax.serial(lift, res(stax.Relu(), stax.SO3ConvSO3(4, 2)))
    with pytest.raises(ValueError, match="bandlimits differ \\(2 and 3\\)"):
        other_bandlimit.kernel_fn(x)
    with pytest.raises(ValueError, match="shapes differ"):
        other_bandlimit.init_fn(jax.random.PRNGKey(0), x.shape)
    other_channels = stax.serial(lift, res(stax.Relu(), stax.SO3ConvSO3(5, L)))
    with pytest.raises(ValueError, match="shapes differ"):
        other_channels.init_fn(jax.random.PRNGKey(0), x.shape)
    _, params = stax.serial(lift, stax.FanOut(2), stax.parallel(stax.SO3ConvSO3(5, L), stax.Identity())).init_fn(
        jax.random.PRNGKey(0), x.shape)
    ys = stax.serial(lift, stax.FanOut(2), stax.parallel(stax.SO3ConvSO3(5, L), stax.Identity())).apply_fn(params, x)
    with pytest.raises(ValueError, match="shapes differ"):
        stax.FanInSum().apply_fn((), ys)
    with pytest.raises(ValueError, match="plain array"):
        stax.FanInSum().apply_fn((), [ys[1], np.zeros(ys[1].shape)])
    pooled = stax.serial(lift, stax.FanOut(2), stax.parallel(stax.SO3Pool(), stax.SO3ConvSO3(4, L)), stax.FanInSum())
    with pytest.raises(ValueError, match="cannot add"):
        pooled.kernel_fn(x)
    correlated = stax.serial(lift, stax.FanOut(2), stax.parallel(stax.Relu(), stax.Identity()), stax.FanInSum())
    with pytest.raises(ValueError, match="correlated"):
        correlated.kernel_fn(x)
    ends_in_relu = stax.serial(lift, res(stax.SO3ConvSO3(4, L)), stax.Relu())
    with pytest.raises(ValueError, match="not bandlimited"):
        ends_in_relu.kernel_fn(x)
    pending_in_part = stax.serial(lift, stax.Relu(), res(stax.SO3ConvSO3(4, L)))
    with pytest.raises(ValueError, match="not bandlimited"):
        pending_in_part.kernel_fn(x)
