"""SO(3) GCNN kernels: closed forms, brute force over rotations, exact invariance, bad input."""

import numpy as np
import jax
import jax.numpy as jnp
import pytest
from scipy.spatial.transform import Rotation

from eqntk import stax
from eqntk.so3 import harmonics as H
from eqntk.so3.wigner import euler_from_matrix, random_rotation, rotate_coeffs


def _signals(n, L, C, seed=0, decay=1.0):
    rng = np.random.default_rng(seed)
    d = np.repeat(1.0 / (1.0 + np.arange(L)) ** decay, 2 * np.arange(L) + 1)
    return rng.normal(size=(n, L * L, C)) * d[None, :, None]


def _erf_dual(c, q1, q2):
    """Independent closed form of E[erf(a) erf(b)] and E[erf'(a) erf'(b)]."""
    d = (1 + 2 * q1) * (1 + 2 * q2)
    return (2 / np.pi) * np.arcsin(2 * c / np.sqrt(d)), (4 / np.pi) / np.sqrt(d - 4 * c**2)


# ----------------------------------------------------------------- closed forms


@pytest.mark.parametrize("W_std,b_std", [(1.0, None), (1.7, None), (0.8, 0.5)])
def test_constant_input_lift_pool(W_std, b_std):
    L, C = 3, 2
    x = np.zeros((2, L * L, C))
    x[:, 0, :] = np.sqrt(4 * np.pi)  # f = 1 in every channel
    _, _, kf = stax.serial(stax.S2ConvSO3(4, L, W_std, b_std), stax.SO3Pool())
    k = kf(x)
    expected = W_std**2 + (b_std or 0.0) ** 2
    np.testing.assert_allclose(k.nngp, expected, rtol=1e-13)
    np.testing.assert_allclose(k.ntk, expected, rtol=1e-13)


def test_linear_networks():
    """Depth-d linear networks: NNGP = W^(2d) · (lift l=0 term), NTK = d · NNGP (no bias)."""
    L, C = 4, 3
    x = _signals(5, L, C, seed=1)
    scale = 1.0 / (4 * np.pi * C)
    mean_term = scale * np.einsum("ic,jc->ij", x[:, 0], x[:, 0])  # ∫ψ1 = degree-0 coefficient
    _, _, kf1 = stax.serial(stax.S2ConvSO3(4, L), stax.SO3Pool())
    k1 = kf1(x)
    np.testing.assert_allclose(k1.nngp, mean_term, atol=1e-14)
    np.testing.assert_allclose(k1.ntk, k1.nngp, atol=1e-14)
    W = 1.3
    _, _, kf3 = stax.serial(stax.S2ConvSO3(4, L, W), stax.SO3ConvSO3(4, 3, W), stax.SO3ConvSO3(4, 2, W),
                            stax.SO3Pool())
    k3 = kf3(x)
    np.testing.assert_allclose(k3.nngp, W**6 * mean_term, atol=1e-13)
    np.testing.assert_allclose(k3.ntk, 3 * k3.nngp, atol=1e-13)


def test_pool_rule_direct_and_fourier_routes_agree():
    """The pool's point rule evaluates ψ from the rotated inputs (few channels) or from its Wigner-D
    blocks (many channels); zero channels change neither the kernel nor, here, anything but the route."""
    import eqntk.so3.kernel_state as ks

    L, C = 4, 2
    x = _signals(4, L, C, seed=3) * 3.0
    wide = np.concatenate([x, np.zeros(x.shape[:2] + (8 - C,))], axis=-1)  # C = 8: Fourier route
    _, _, kf = stax.serial(stax.S2ConvSO3(4, L), stax.Rbf(0.5), stax.SO3Pool(oversampling=4), stax.Dense(1))
    _, _, kw = stax.serial(stax.S2ConvSO3(4, L, W_std=np.sqrt(8 / C)), stax.Rbf(0.5), stax.SO3Pool(oversampling=4),
                           stax.Dense(1))
    _, _, kg = stax.serial(stax.S2ConvSO3(4, L), stax.Rbf(0.5), stax.SO3Pool(oversampling=4, rule=False),
                           stax.Dense(1))
    assert ks.pool_rule(L, 4.0, True) is not None
    assert ks.num_block_coeffs(L) > L * L * C and ks.num_block_coeffs(L) < L * L * 8
    a, b, g = kf(x), kw(wide), kg(x)
    np.testing.assert_allclose(a.nngp, b.nngp, rtol=1e-12)
    np.testing.assert_allclose(a.ntk, b.ntk, rtol=1e-12)
    # a different quadrature of the same exact degree: close to the grid, not identical to it
    assert 0 < np.max(np.abs(a.ntk - g.ntk)) < 1e-3 * np.max(np.abs(g.ntk))


def test_pool_keeps_the_grid_where_the_last_map_cannot_take_the_weights():
    x = _signals(3, 4, 2, seed=4) * 3.0
    for nl in (stax.Erf(), stax.Relu()):
        k = [stax.serial(stax.S2ConvSO3(4, 4), nl, stax.SO3Pool(oversampling=4, rule=r), stax.Dense(1))[2](x)
             for r in (True, False)]
        np.testing.assert_array_equal(k[0].ntk, k[1].ntk)


def test_lift_sigma_pool_equals_rotation_average_dense_and_monte_carlo():
    """∫ κ(ψ(R)) dR with ψ(R) = ⟨f(R ·), f'⟩ / (4πC) computed in real space on S²."""
    sphericart = pytest.importorskip("sphericart")
    L, C = 4, 2
    x = _signals(3, L, C, seed=3, decay=0.5)
    _, _, kf = stax.serial(stax.S2ConvSO3(1, L), stax.Erf(), stax.SO3Pool(oversampling=10))
    k = kf(x)

    sh = sphericart.SphericalHarmonics(L - 1)
    g = H.gauss_legendre_s2_grid(L)
    y = g.points().reshape(-1, 3)
    w = np.repeat(g.weights, g.phi.size)
    Y = sh.compute(y)
    f = np.einsum("pk,nkc->npc", Y, x)  # (n, points, C) samples of the signals
    scale = 1.0 / (4 * np.pi * C)
    q = scale * np.einsum("p,npc,npc->n", w, f, f)

    def psi(Rs):  # (r, 3, 3) -> (r, n, n): scale Σ_c ∫ f_c(R y) f'_c(y) dy
        fR = np.einsum("rpk,nkc->rnpc", sh.compute(np.einsum("rij,pj->rpi", Rs, y).reshape(-1, 3)).reshape(
            len(Rs), len(y), -1), x)
        return scale * np.einsum("p,rnpc,mpc->rnm", w, fR, f)

    def kappa(p):
        nngp, dot = _erf_dual(p, q[:, None], q[None, :])
        return nngp, dot * p

    # dense quadrature over Euler angles (GL in cos β), independent of eqntk's SO(3) code
    B = 18
    xb, wb = np.polynomial.legendre.leggauss(B)
    ang = 2 * np.pi * np.arange(2 * B - 1) / (2 * B - 1)
    A, Bt, G = np.meshgrid(ang, np.arccos(xb), ang, indexing="ij")
    Rs = Rotation.from_euler("ZYZ", np.stack([A.ravel(), Bt.ravel(), G.ravel()], 1)).as_matrix()
    wts = np.broadcast_to(wb[None, :, None] / 2, A.shape).ravel() / (2 * B - 1) ** 2
    acc_n = acc_t = 0.0
    for s in range(0, len(Rs), 4000):
        kn, kt = kappa(psi(Rs[s : s + 4000]))
        acc_n = acc_n + np.einsum("r,rnm->nm", wts[s : s + 4000], kn)
        acc_t = acc_t + np.einsum("r,rnm->nm", wts[s : s + 4000], kt)
    np.testing.assert_allclose(k.nngp, acc_n, atol=1e-10)
    np.testing.assert_allclose(k.ntk, acc_t, atol=1e-10)

    # Monte Carlo over Haar-random rotations: agreement within 4 standard errors
    Rs = Rotation.random(6000, random_state=0).as_matrix()
    kn, kt = kappa(psi(Rs))
    for est, ref in ((kn, k.nngp), (kt, k.ntk)):
        mean, se = est.mean(0), est.std(0) / np.sqrt(len(Rs))
        assert np.all(np.abs(mean - np.asarray(ref)) < 4 * se + 1e-12)


# -------------------------------------------------------------------- invariance


def _rotate_each(x, key):
    a, b, g = random_rotation(key, (x.shape[0],), dtype=jnp.float64)
    return rotate_coeffs(jnp.asarray(x), a, b, g)


def test_exact_invariance_polynomial_network():
    """With σ a quadratic polynomial the quadrature is exact: invariance to machine precision."""
    L, C = 4, 2
    x1, x2 = _signals(3, L, C, seed=4), _signals(2, L, C, seed=5)
    sq = stax.Elementwise(lambda t: t + 0.5 * t**2)
    _, _, kf = stax.serial(stax.S2ConvSO3(1, L, b_std=0.3), sq, stax.SO3ConvSO3(1, 3, oversampling=2),
                           sq, stax.SO3Pool(oversampling=2), stax.Dense(1, b_std=0.1))
    k = kf(x1, x2)
    kr = kf(_rotate_each(x1, jax.random.PRNGKey(0)), _rotate_each(x2, jax.random.PRNGKey(1)))
    np.testing.assert_allclose(kr.nngp, k.nngp, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(kr.ntk, k.ntk, rtol=1e-12, atol=1e-14)


def test_invariance_erf_network():
    L, C = 4, 2
    x1, x2 = _signals(3, L, C, seed=6), _signals(2, L, C, seed=7)
    _, _, kf = stax.serial(stax.S2ConvSO3(1, L), stax.Erf(), stax.SO3ConvSO3(1, 3, oversampling=10),
                           stax.Erf(), stax.SO3Pool(oversampling=10), stax.Dense(1))
    k = kf(x1, x2)
    kr = kf(_rotate_each(x1, jax.random.PRNGKey(2)), _rotate_each(x2, jax.random.PRNGKey(3)))
    np.testing.assert_allclose(kr.nngp, k.nngp, atol=1e-10)
    np.testing.assert_allclose(kr.ntk, k.ntk, atol=1e-10)


# ------------------------------------------------------------------ API contract


def test_get_tiling_and_symmetry():
    L, C = 3, 2
    x = _signals(7, L, C, seed=8)
    _, _, kf = stax.serial(stax.S2ConvSO3(1, L), stax.Relu(), stax.SO3ConvSO3(1, 2), stax.Relu(), stax.SO3Pool())
    full = kf(x, x)
    sym = kf(x)
    tiled = kf(x, tile_size=3)
    # the symmetric path evaluates K(x_a, x_b), a ≤ b, and mirrors it (K(x_b, x_a) agrees only to
    # quadrature accuracy): identical upper triangles, exactly symmetric, independent of tiling
    iu = np.triu_indices(7)
    np.testing.assert_allclose(np.asarray(sym.ntk)[iu], np.asarray(full.ntk)[iu], atol=1e-14)
    np.testing.assert_array_equal(sym.nngp, sym.nngp.T)
    np.testing.assert_allclose(tiled.nngp, sym.nngp, atol=1e-14)
    np.testing.assert_allclose(full.nngp, full.nngp.T, rtol=1e-6)
    np.testing.assert_allclose(kf(x, get="nngp"), sym.nngp, atol=1e-14)
    both = kf(x[:2], x[2:5], get=("ntk", "nngp"))
    assert both._fields == ("ntk", "nngp") and both.ntk.shape == (2, 3)
    np.testing.assert_allclose(both.ntk, full.ntk[:2, 2:5], atol=1e-14)


def test_float32_close_to_float64():
    L, C = 3, 2
    x = _signals(4, L, C, seed=9)
    _, _, kf = stax.serial(stax.S2ConvSO3(1, L), stax.Erf(), stax.SO3Pool())
    k64 = kf(x)
    k32 = kf(jnp.asarray(x, jnp.float32))
    assert k32.ntk.dtype == jnp.float32
    np.testing.assert_allclose(k32.ntk, k64.ntk, rtol=1e-4)


def test_unpooled_output_is_wigner_blocks():
    """Without pooling (no pending nonlinearity) kernel_fn returns the Wigner-D blocks of ψ."""
    L, C = 3, 2
    x = _signals(2, L, C, seed=10)
    _, _, kf = stax.serial(stax.S2ConvSO3(1, L))
    k = kf(x)
    assert k.nngp.shape == (2, 2, 1 + 9 + 25)
    # degree-0 block is the pooled kernel
    _, _, kp = stax.serial(stax.S2ConvSO3(1, L), stax.SO3Pool())
    np.testing.assert_allclose(k.nngp[..., 0], kp(x).nngp, atol=1e-14)


# ---------------------------------------------------------------------- bad input


def test_bad_input():
    _, _, kf = stax.serial(stax.S2ConvSO3(1, 3), stax.Erf(), stax.SO3Pool())
    good = _signals(2, 3, 2)
    with pytest.raises(ValueError, match="L_in²"):
        kf(good[:, :, 0])  # wrong rank
    with pytest.raises(ValueError, match="L²"):
        kf(np.zeros((2, 10, 2)))  # not a square number of coefficients
    with pytest.raises(ValueError, match="above the input's bandlimit"):
        kf(_signals(2, 2, 2))
    bad = good.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        kf(bad)
    bad[0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        kf(good, bad)
    with pytest.raises(ValueError, match="empty"):
        kf(good[:0])
    with pytest.raises(ValueError, match="same shape"):
        kf(good, _signals(2, 3, 3))
    with pytest.raises(ValueError, match="get"):
        kf(good, get="cov")
    with pytest.raises(ValueError, match="Erf cannot act on raw inputs"):
        stax.serial(stax.Erf(), stax.S2ConvSO3(1, 3))[2](good)
    with pytest.raises(ValueError, match="first layer"):
        stax.serial(stax.Dense(1), stax.S2ConvSO3(1, 3))[2](np.zeros((2, 3)))
    with pytest.raises(ValueError, match="SO3Pool"):
        stax.serial(stax.S2ConvSO3(1, 3), stax.Erf())[2](good)
    with pytest.raises(ValueError, match="S2ConvSO3 first"):
        stax.serial(stax.Dense(1), stax.SO3Pool())[2](np.zeros((2, 3)))
    with pytest.raises(ValueError, match="oversampling"):
        stax.SO3Pool(oversampling=0.5)
    with pytest.raises(ValueError, match="bandlimit"):
        stax.S2ConvSO3(1, 0)


def _ulps(result, exact, dtype):
    """|result − exact| in units in the last place of ``exact`` in ``dtype`` (np.spacing; 0 where both are 0)."""
    exact = np.asarray(exact, np.float64)
    err = np.abs(np.asarray(result, np.float64) - exact)
    return err / np.spacing(np.abs(exact).astype(dtype)).astype(np.float64)


def test_vectorised_arcsin_arccos_match_numpy():
    from eqntk.core.pointwise import arccos, arcsin

    # Tolerance in ulps of the result, not an absolute one (arccos reaches π, where one ulp is 4.4e-16).
    # The vectorised functions evaluate an odd series (≤ 1 ulp) and then at most two rounded operations
    # (π/2 − r or π − 2r, with π/2, π themselves rounded: ≤ ½ ulp each), and NumPy's libm reference is
    # within 1 ulp: k = 4 ulps bounds the sum. Observed: 3 (arcsin), 2 (arccos) in float64; 3.3 in float32
    # against the float64 value of the float32 input (its rounding of the result counts here).
    k = 4
    x = np.concatenate([np.linspace(-1, 1, 200001), [0.5, -0.5, 1 - 1e-15, -1 + 1e-15, 1e-300],
                        1 - np.arange(1, 200) * 2.0**-53, np.random.default_rng(0).uniform(-1, 1, 100000)])
    assert _ulps(arcsin(jnp.asarray(x)), np.arcsin(x), np.float64).max() <= k
    assert _ulps(arccos(jnp.asarray(x)), np.arccos(x), np.float64).max() <= k
    assert np.asarray(arccos(jnp.asarray(1.0))) == 0.0 and np.asarray(arcsin(jnp.asarray(0.0))) == 0.0
    # the bound can fail: arccos as π/2 − arcsin cancels near x = 1 (4e7 ulps there)
    assert _ulps(np.pi / 2 - np.arcsin(x), np.arccos(x), np.float64).max() > 1e6
    x32 = jnp.asarray(x, jnp.float32)
    x64 = np.asarray(x32, np.float64)
    assert _ulps(arcsin(x32), np.arcsin(x64), np.float32).max() <= k
    assert _ulps(arccos(x32), np.arccos(x64), np.float32).max() <= k


def test_pool_rule_flag_must_be_a_bool():
    for bad in ("yes", 1, None):
        with pytest.raises(ValueError, match="rule must be True or False"):
            stax.SO3Pool(rule=bad)
