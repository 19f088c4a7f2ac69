"""O(3): the parity-averaged SO(3) kernel is invariant under reflections (augment 'inversion', 'o3').

Oracle: signals built in real space from point sets (sums of harmonics at directions, by
sphericart), reflected in real space (a mirror plane and the point inversion of the directions);
rotations likewise, by rotating the directions. No use of eqntk's own coefficient transforms.
"""

import numpy as np
import pytest
import sphericart
from scipy.spatial.transform import Rotation

from eqntk import stax
from eqntk.augment import augment

L = 4


def _signals(points):
    """Coefficients ``(N, L², C)``: channel c of sample n is Σ_i w_nic Y(d_ni) (sphericart)."""
    sh = sphericart.SphericalHarmonics(L - 1)
    n, k, _ = points.shape
    Y = sh.compute(np.ascontiguousarray(points.reshape(-1, 3))).reshape(n, k, L * L)
    w = np.random.default_rng(7).uniform(0.5, 1.5, size=(n, k, 2))
    return np.einsum("nkm,nkc->nmc", Y, w)


def _points(n, seed):
    return np.random.default_rng(seed).normal(size=(n, 4, 3))  # 4 directions: a chiral arrangement


def _so3_net():
    return stax.serial(stax.S2ConvSO3(2, L, W_std=2.0, b_std=0.3), stax.Erf(), stax.SO3ConvSO3(2, 3, W_std=2.0, oversampling=10), stax.Erf(),
                       stax.SO3Pool(oversampling=10), stax.Dense(1))[2]


MIRROR = np.diag([1.0, 1.0, -1.0])


def test_parity_average_is_reflection_invariant_and_the_plain_kernel_is_not():
    p1, p2 = _points(3, 0), _points(2, 1)
    x1, x2 = _signals(p1), _signals(p2)
    mirror_rot = MIRROR @ Rotation.random(random_state=3).as_matrix()  # an improper rotation
    x2m = _signals(p2 @ mirror_rot.T)
    x2r = _signals(p2 @ Rotation.random(random_state=4).as_matrix().T)
    k = _so3_net()
    plain, plain_m, plain_r = k(x1, x2), k(x1, x2m), k(x1, x2r)
    scale = np.max(np.abs(plain.ntk))
    # the SO(3) kernel is rotation invariant to its quadrature accuracy, but sees chirality
    assert np.max(np.abs(plain_r.ntk - plain.ntk)) < 1e-7 * scale
    assert np.max(np.abs(plain_m.ntk - plain.ntk)) > 1e-4 * scale
    k_o3 = augment(k, "inversion")
    for kind in ("nngp", "ntk"):
        a, b = getattr(k_o3(x1, x2), kind), getattr(k_o3(x1, x2m), kind)
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-7 * scale)
    # inversion of the directions themselves (x ↦ −x) leaves the parity average unchanged
    np.testing.assert_allclose(k_o3(x1, _signals(-p2)).ntk, k_o3(x1, x2).ntk, rtol=0, atol=1e-7 * scale)


def test_o3_average_of_an_mlp_is_invariant_under_improper_rotations():
    p1, p2 = _points(2, 5), _points(2, 6)
    x1, x2 = _signals(p1), _signals(p2)
    x2m = _signals(p2 @ (MIRROR @ Rotation.random(random_state=8).as_matrix()).T)
    mlp = stax.serial(stax.Dense(4, b_std=0.2), stax.Erf(), stax.Dense(1))[2]

    def k_flat(a, b=None, get=None, **kw):  # an MLP on the flattened coefficients
        flat = lambda x: None if x is None else np.asarray(x).reshape(len(x), -1)
        return mlp(flat(a), flat(b), get, **kw)

    k_o3 = augment(k_flat, "o3", oversampling=8)
    a, b = k_o3(x1, x2, get="ntk"), k_o3(x1, x2m, get="ntk")
    assert np.max(np.abs(k_flat(x1, x2m, get="ntk") - k_flat(x1, x2, get="ntk"))) > 1e-3  # not invariant
    np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-8)


def test_inversion_needs_spherical_signals():
    with pytest.raises(ValueError, match="spherical signals"):
        augment(_so3_net(), "inversion")(np.ones((2, 5)))
