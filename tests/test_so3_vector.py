"""Degree-1 (vector) matrix kernels of unpooled SO(3) networks: closed form, exact equivariance."""

import numpy as np
import jax.numpy as jnp
import pytest

from eqntk import stax
from eqntk.so3.vector import as_block_matrix, vector_kernel
from eqntk.so3.quadrature import grid_bandlimit_for, so3_grid
from eqntk.so3.wigner import matrix_from_euler, rotate_coeffs


def _signals(n, L, C, seed=0, scale=1.0):
    return scale * np.random.default_rng(seed).normal(size=(n, L * L, C))


def _rotations(n, seed):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 2 * np.pi, n), np.arccos(rng.uniform(-1, 1, n)), rng.uniform(0, 2 * np.pi, n)


def _rotate(x, angles):
    a, b, c = angles
    R = np.asarray(matrix_from_euler(jnp.asarray(a), jnp.asarray(b), jnp.asarray(c)))  # (n, 3, 3)
    xr = np.stack([np.asarray(rotate_coeffs(x[i], a[i], b[i], c[i])) for i in range(len(x))])
    return xr, R


def test_linear_network_closed_form():
    """lift → conv, no nonlinearity: ψ̂¹ = W² (1/(4πC)) Σ_c f̂¹_a f̂¹_bᵀ; NTK = 2 NNGP (two layers)."""
    L, C, W = 3, 2, 1.3
    x = _signals(4, L, C, seed=1)
    _, _, kf = stax.serial(stax.S2ConvSO3(8, L), stax.SO3ConvSO3(8, 2, W_std=W))
    v = x[:, 1:4, :]  # l = 1 coefficients, order (y, z, x)
    cart = v[:, [2, 0, 1], :]  # (x, y, z)
    ref = W**2 / (4 * np.pi * C) * np.einsum("iac,jbc->ijab", cart, cart)
    np.testing.assert_allclose(vector_kernel(kf, x, get="nngp"), ref, atol=1e-13)
    np.testing.assert_allclose(vector_kernel(kf, x, get="ntk"), 2 * ref, atol=1e-13)


@pytest.mark.parametrize("nonlinear", [False, True])
def test_rotating_the_inputs_rotates_the_matrix_kernel(nonlinear):
    """K(R_i x_i, R'_j x'_j) = R_i K(x_i, x'_j) R'_jᵀ: exact for a polynomial network (x ↦ x² is
    integrated exactly by the grid), to the quadrature's accuracy for Rbf at high oversampling."""
    L, C = 3, 2
    x1, x2 = _signals(3, L, C, seed=2), _signals(2, L, C, seed=3)
    square = stax.Elementwise(lambda v: v**2, nngp_fn=lambda c, v1, v2: v1 * v2 + 2 * c**2,
                              d_nngp_fn=lambda c, v1, v2: 4 * c, name="square")
    nl = stax.Rbf(0.5) if nonlinear else square
    _, _, kf = stax.serial(stax.S2ConvSO3(8, L), nl, stax.SO3ConvSO3(8, 2, oversampling=10 if nonlinear else 2))
    K = vector_kernel(kf, x1, x2)
    (y1, R1), (y2, R2) = _rotate(x1, _rotations(3, 4)), _rotate(x2, _rotations(2, 5))
    Kr = vector_kernel(kf, y1, y2)
    ref = np.einsum("iab,ijbc,jdc->ijad", R1, K, R2)
    tol = 1e-9 if nonlinear else 1e-12
    np.testing.assert_allclose(Kr, ref, atol=tol * np.abs(K).max())
    # the kernel is not trivially invariant: the rotation changed it
    assert np.abs(Kr - K).max() > 1e-2 * np.abs(K).max()


def test_grid_symmetry_rotations_are_exact_for_any_nonlinearity():
    """A turn about z by a multiple of 2π/n_α maps the quadrature grid onto itself: exact for Erf too."""
    L, C, osf = 3, 2, 3.0
    x = _signals(3, L, C, seed=6, scale=2.0)
    _, _, kf = stax.serial(stax.S2ConvSO3(8, L), stax.Erf(), stax.SO3ConvSO3(8, 2, oversampling=osf))
    n_alpha = so3_grid(grid_bandlimit_for(L, 2, osf, True)).alpha.size
    angles = (np.full(3, 2 * np.pi * 2 / n_alpha), np.zeros(3), np.zeros(3))
    y, R = _rotate(x, angles)
    K, Kr = vector_kernel(kf, x), vector_kernel(kf, y)
    np.testing.assert_allclose(Kr, np.einsum("iab,ijbc,jdc->ijad", R, K, R), atol=1e-12 * np.abs(K).max())


def test_symmetry_block_matrix_and_refusals():
    L, C = 3, 2
    x = _signals(4, L, C, seed=7)
    _, _, kf = stax.serial(stax.S2ConvSO3(8, L), stax.Rbf(0.5), stax.SO3ConvSO3(8, 2, oversampling=10))
    K = vector_kernel(kf, x)
    # K(b, a) = K(a, b)ᵀ: ψ_ba(u) = ψ_ab(u⁻¹), a symmetry of the integral but not of the grid
    np.testing.assert_allclose(K, np.swapaxes(np.swapaxes(K, 0, 1), 2, 3), atol=1e-9 * np.abs(K).max())
    B = as_block_matrix(K)
    assert B.shape == (12, 12)
    np.testing.assert_array_equal(B[3 * 1 + 2, 3 * 3 + 0], K[1, 3, 2, 0])
    assert np.linalg.eigvalsh(0.5 * (B + B.T)).min() > -1e-8 * np.abs(B).max()
    _, _, pooled = stax.serial(stax.S2ConvSO3(8, L), stax.Rbf(0.5), stax.SO3Pool())
    with pytest.raises(ValueError, match="SO3ConvSO3 with bandlimit"):
        vector_kernel(pooled, x)
    _, _, scalar = stax.serial(stax.S2ConvSO3(8, L), stax.Rbf(0.5), stax.SO3ConvSO3(8, 1))
    with pytest.raises(ValueError, match="SO3ConvSO3 with bandlimit"):
        vector_kernel(scalar, x)
    with pytest.raises(ValueError, match="get must be"):
        vector_kernel(kf, x, get="both")
