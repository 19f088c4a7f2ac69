"""Real spherical harmonics, S² grids and converters, against independent implementations."""

import numpy as np
import pytest

from eqntk.so3 import harmonics as H


def _random_points(n, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, 3))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_matches_sphericart():
    sphericart = pytest.importorskip("sphericart")
    L = 16
    x = _random_points(200)
    ours = H.real_sph_harm(L, x)
    ref = sphericart.SphericalHarmonics(L - 1).compute(x)
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_l1_axes_convention():
    x = _random_points(10)
    Y = H.real_sph_harm(2, x)
    c = np.sqrt(3 / (4 * np.pi))
    np.testing.assert_allclose(Y[:, 1], c * x[:, 1], atol=1e-14)  # m=-1 ∝ y
    np.testing.assert_allclose(Y[:, 2], c * x[:, 2], atol=1e-14)  # m=0 ∝ z
    np.testing.assert_allclose(Y[:, 3], c * x[:, 0], atol=1e-14)  # m=1 ∝ x


def test_sphericart_and_e3nn_agree_after_relabelling():
    """e3nn-jax ('integral' normalisation, y pole) equals sphericart after relabelling the axes.

    An optional oracle: e3nn-jax is in no extra (docs/architecture.md, "Optional dependencies").
    """
    sphericart = pytest.importorskip("sphericart")
    e3nn = pytest.importorskip("e3nn_jax")

    L = 8
    x = _random_points(100)
    ref = sphericart.SphericalHarmonics(L - 1).compute(x)
    # e3nn's l=1 harmonics are ∝ (x, y, z) with m = -1, 0, 1 (y the pole); sphericart's are
    # ∝ (y, z, x): feed e3nn the relabelled points xyz[..., [1, 2, 0]]. (DESIGN.md's
    # "[2, 0, 1]" is the inverse permutation: a typo, shown wrong below.)
    irreps = "+".join(f"{l}{'e' if l % 2 == 0 else 'o'}" for l in range(L))

    def e3(perm):
        return np.asarray(e3nn.spherical_harmonics(irreps, x[:, perm], normalize=True,
                                                   normalization="integral").array)

    e = e3([1, 2, 0])
    assert np.abs(e3([2, 0, 1]) - ref).max() > 0.1
    np.testing.assert_allclose(e, ref, atol=1e-6 if e.dtype == np.float32 else 1e-12)


def test_orthonormal_on_gl_grid():
    L = 10
    g = H.gauss_legendre_s2_grid(L)
    Y = H.real_sph_harm_angles(L, g.theta[:, None], g.phi[None, :])
    G = np.einsum("tpi,tpj,t->ij", Y, Y, g.weights)
    np.testing.assert_allclose(G, np.eye(L * L), atol=1e-12)


@pytest.mark.parametrize("kind", ["gl", "dh"])
def test_round_trip_and_exactness(kind):
    L = 7
    rng = np.random.default_rng(1)
    c = rng.normal(size=(3, L * L, 2))
    samples = H.s2_samples_from_coeffs(c, kind=kind)
    back = H.coeffs_from_s2_samples(samples, L, kind=kind)
    np.testing.assert_allclose(back, c, atol=1e-12)
    # the same function sampled directly from its definition
    g = H.s2_grid(L, kind)
    Y = H.real_sph_harm(L, g.points())
    np.testing.assert_allclose(samples, np.einsum("nkc,tpk->ntpc", c, Y), atol=1e-12)


def test_dh_weights_integrate_legendre():
    L = 6
    g = H.driscoll_healy_s2_grid(L)
    w = g.weights * g.phi.size / (2 * np.pi)  # weights of the polar integral ∫ f(cos θ) sin θ dθ
    for l in range(2 * L):
        P = np.polynomial.legendre.Legendre.basis(l)(np.cos(g.theta))
        assert abs(np.sum(w * P) - (2.0 if l == 0 else 0.0)) < 1e-12


def test_converter_errors():
    with pytest.raises(ValueError, match="shape"):
        H.coeffs_from_s2_samples(np.zeros((2, 5, 5, 1)), 4, kind="gl")
    with pytest.raises(ValueError, match="NaN"):
        H.coeffs_from_s2_samples(np.full((4, 7, 1), np.nan), 4, kind="gl")
    with pytest.raises(ValueError, match="kind"):
        H.s2_grid(4, "healpix")
    with pytest.raises(ValueError, match="L²"):
        H.bandlimit_of(10)
