"""Real Wigner-D matrices: definition, homomorphism, orthogonality, Euler angles."""

import numpy as np
import jax
import jax.numpy as jnp
import pytest
from scipy.spatial.transform import Rotation

from eqntk.so3 import harmonics as H
from eqntk.so3 import wigner as W


def _block(Dp, l):
    L = Dp.shape[-3]
    return Dp[..., l, L - 1 - l : L + l, L - 1 - l : L + l]


def _euler(R):
    a, b, g = W.euler_from_matrix(jnp.asarray(R))
    return np.asarray(a), np.asarray(b), np.asarray(g)


@pytest.mark.parametrize("L", [4, 13, 21])
def test_definition_Y_of_rotated_points(L):
    """Y_l(R x) = D^l(R) Y_l(x), with harmonics from scipy (independent of the Wigner code)."""
    rng = np.random.default_rng(L)
    x = rng.normal(size=(40, 3))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    R = Rotation.random(random_state=L).as_matrix()
    D = np.asarray(W.wigner_D_padded(L, *_euler(R)))
    Y, YR = H.real_sph_harm(L, x), H.real_sph_harm(L, x @ R.T)
    for l in range(L):
        s = slice(l * l, (l + 1) ** 2)
        np.testing.assert_allclose(YR[:, s], Y[:, s] @ _block(D, l).T, atol=1e-11)


def test_homomorphism_and_orthogonality_high_degree():
    L = 31
    R1, R2 = Rotation.random(2, random_state=3).as_matrix()
    D1 = np.asarray(W.wigner_D_padded(L, *_euler(R1)))
    D2 = np.asarray(W.wigner_D_padded(L, *_euler(R2)))
    D12 = np.asarray(W.wigner_D_padded(L, *_euler(R1 @ R2)))
    for l in range(L):
        a, b, ab = _block(D1, l), _block(D2, l), _block(D12, l)
        np.testing.assert_allclose(a @ b, ab, atol=1e-12)
        np.testing.assert_allclose(a @ a.T, np.eye(2 * l + 1), atol=1e-12)


def test_euler_round_trip_and_matrix():
    R = Rotation.random(50, random_state=0).as_matrix()
    a, b, g = _euler(R)
    np.testing.assert_allclose(np.asarray(W.matrix_from_euler(a, b, g)), R, atol=1e-12)
    # gimbal lock
    for R0 in [np.diag([1.0, 1, 1]), Rotation.from_euler("z", 0.7).as_matrix(),
               Rotation.from_euler("zyz", [0.3, np.pi, 0.2]).as_matrix()]:
        np.testing.assert_allclose(np.asarray(W.matrix_from_euler(*_euler(R0))), R0, atol=1e-12)


def test_rotate_coeffs_rotates_the_function():
    """Coefficients D(R) f̂ describe f(R⁻¹ x)."""
    L = 6
    rng = np.random.default_rng(2)
    c = rng.normal(size=(L * L, 1))
    R = Rotation.random(random_state=5).as_matrix()
    rc = np.asarray(W.rotate_coeffs(jnp.asarray(c), *_euler(R)))
    x = rng.normal(size=(30, 3))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    f_rot = H.real_sph_harm(L, x) @ rc
    f_ref = H.real_sph_harm(L, x @ R) @ c  # f(R⁻¹ x), R⁻¹ = Rᵀ
    np.testing.assert_allclose(f_rot, f_ref, atol=1e-12)


def test_random_rotation_is_haar():
    a, b, g = W.random_rotation(jax.random.PRNGKey(0), (20000,))
    R = np.asarray(W.matrix_from_euler(a, b, g))
    # E[R] = 0 and E[R_ij²] = 1/3 under the Haar measure
    assert np.abs(R.mean(0)).max() < 0.03
    np.testing.assert_allclose((R**2).mean(0), np.full((3, 3), 1 / 3), atol=0.02)


def test_pad_unpad_round_trip():
    x = jnp.arange(2 * 25 * 3.0).reshape(2, 25, 3)
    np.testing.assert_array_equal(W.unpad(W.pad(x)), x)
    b = jnp.arange(W.num_block_coeffs(4) * 1.0)
    np.testing.assert_array_equal(W.unpad_blocks(W.pad_blocks(b)), b)
