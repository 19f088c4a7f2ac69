"""Spectra: eigensystems, target spectra, learning-curve theory, SO(3) degree-resolved spectra."""

import numpy as np
import jax.numpy as jnp
import pytest

from eqntk import spectral, stax


def _rbf_circle(M, seed=0, width=0.5):
    t = np.random.default_rng(seed).uniform(0, 2 * np.pi, M)
    x = np.stack([np.cos(t), np.sin(t)], 1)
    K = np.exp(-np.sum((x[:, None] - x[None]) ** 2, -1) / (2 * width**2))
    return K, t


def test_eigensystem_and_target_spectrum():
    K, t = _rbf_circle(60)
    es = spectral.eigensystem(K)
    np.testing.assert_allclose(es.eigenvalues.sum(), np.trace(K) / 60, rtol=1e-12)
    np.testing.assert_allclose(es.vectors @ np.diag(es.eigenvalues * 60) @ es.vectors.T, K, atol=1e-10)
    assert np.all(np.diff(es.eigenvalues) <= 1e-15)
    y = np.stack([np.sin(t), np.cos(3 * t)], 1)
    w2 = spectral.target_spectrum(es, y)
    np.testing.assert_allclose(w2.sum(), np.sum(y**2) / 60, rtol=1e-12)
    with pytest.raises(ValueError, match="positive semi-definite"):
        spectral.eigensystem(-K)
    with pytest.raises(ValueError, match="square"):
        spectral.eigensystem(K[:3])
    # a small negative eigenvalue (quadrature or float32 error) is tolerated only when asked for
    v = es.vectors[:, -1]
    K_neg = K - (es.eigenvalues[-1] * 60 + 1e-5 * np.abs(K).max()) * np.outer(v, v)
    with pytest.raises(ValueError, match="positive semi-definite"):
        spectral.eigensystem(K_neg)
    es_neg = spectral.eigensystem(K_neg, psd_rtol=1e-4)
    assert es_neg.eigenvalues.min() == 0.0


def test_theory_single_mode_closed_form():
    """One mode η, target power w²: κ solves κ = λ + κη/(Pη + κ), i.e. κ² + (Pη − η − λ)κ − λPη = 0."""
    eta, w2, P, lam = 0.7, 2.0, 3.0, 0.05
    b = P * eta - eta - lam
    kappa = (-b + np.sqrt(b * b + 4 * lam * P * eta)) / 2
    gamma = P * eta**2 / (P * eta + kappa) ** 2
    expected = kappa**2 * w2 / (P * eta + kappa) ** 2 / (1 - gamma)
    got = spectral.learning_curve_theory([eta], [w2], [P], ridge=lam)
    np.testing.assert_allclose(got, [expected], rtol=1e-10)


def test_theory_predicts_measured_learning_curve():
    """High-dimensional data (where the theory is accurate; on a 1-D circle with a smooth kernel
    random designs leave gaps and the mean error is heavy-tailed): within 10%."""
    rng = np.random.default_rng(0)
    M, d = 1000, 20
    x = rng.normal(size=(M, d)) / np.sqrt(d)
    K = np.exp(x @ x.T)
    y = x @ rng.normal(size=d) + 2 * np.sqrt(d) * x[:, 0] * x[:, 1]
    es = spectral.eigensystem(K)
    Ps = [10, 30, 100]
    for lam in (1e-2, 1e-1):
        theory = spectral.learning_curve_theory(es.eigenvalues, spectral.target_spectrum(es, y), Ps, ridge=lam)
        measured, se = spectral.empirical_learning_curve(K, y, Ps, n_repeats=20, ridge=lam, seed=1)
        assert np.all(np.diff(theory) < 0)
        np.testing.assert_allclose(measured, theory, rtol=0.1)


def test_so3_degree_spectrum_matches_nystrom_on_exact_grid():
    """Eigenvalues of the unpooled kernel operator on inputs × SO(3) (Nyström with an exact grid)."""
    from eqntk.so3.quadrature import so3_grid
    from eqntk.so3.wigner import wigner_D_padded

    L, C, M = 2, 2, 3
    x = np.random.default_rng(3).normal(size=(M, L * L, C))
    blocks = np.asarray(stax.serial(stax.S2ConvSO3(1, L))[2](x).nngp)  # (M, M, 1 + 9)
    spec = spectral.so3_degree_spectrum(blocks)
    g = so3_grid(L)  # products of bandlimit-L functions integrate exactly
    a, b, c = (v.ravel() for v in g.euler_angles())
    D = np.asarray(wigner_D_padded(L, a, b, c))  # (J, L, P, P)
    w = g.weights().ravel()
    J = len(w)
    # ψ_ij(g_a g_b⁻¹) = Σ_l Σ_mn ψ̂^l_mn(i,j) (D(g_a) D(g_b)ᵀ)_mn
    from eqntk.so3.wigner import pad_blocks

    Bp = np.asarray(pad_blocks(jnp.asarray(blocks)))  # (M, M, L, P, P)
    K = np.einsum("ijlmn,almk,blnk->iajb", Bp, D, D).reshape(M * J, M * J)
    sw = np.sqrt(np.tile(w, M) / M)
    ev = np.sort(np.linalg.eigvalsh(sw[:, None] * K * sw[None, :]))[::-1]
    expected = np.sort(np.concatenate([np.repeat(spec[l], 2 * l + 1) for l in spec]))[::-1]
    np.testing.assert_allclose(ev[: len(expected)], expected, atol=1e-12)
    assert np.abs(ev[len(expected):]).max() < 1e-12


@pytest.mark.parametrize("name", ["p4", "p4m"])
def test_planar_irrep_spectrum_matches_full_operator(name):
    """Union over irreps (with multiplicity dim ρ) = spectrum of the full |G|·HW·M kernel matrix."""
    from eqntk.planar import P4, P4M

    G = {"p4": P4, "p4m": P4M}[name]
    lift = {"p4": stax.Z2ConvP4, "p4m": stax.Z2ConvP4M}[name]
    x = np.random.default_rng(5).normal(size=(2, 4, 4, 2))
    K = np.asarray(stax.serial(lift(1, (3, 3)), stax.Relu())[2](x, get="nngp"))  # (2, 2, |G|, 4, 4, 4, 4)
    n, g, npx = 2, G.order, 16
    Mt = K.reshape(n, n, g, npx, npx)
    full = np.zeros((n, g, npx, n, g, npx))
    for r in range(g):
        for r2 in range(g):  # K((r, t), (r', t')) = M_{r' r⁻¹}(t, t')
            full[:, r, :, :, r2, :] = np.transpose(Mt[:, :, G.table[r2, G.inverse[r]]], (0, 2, 1, 3))
    full = full.reshape(n * g * npx, -1) / (n * g * npx)
    expected = np.sort(np.linalg.eigvalsh(0.5 * (full + full.T)))[::-1]
    spec = spectral.planar_irrep_spectrum(K, name)
    dims = {k: v.shape[1] for k, v in __import__("eqntk.planar.irreps", fromlist=["irreps"]).irreps(G).items()}
    got = np.sort(np.concatenate([np.repeat(v, dims[k]) for k, v in spec.items()]))[::-1]
    np.testing.assert_allclose(got, expected, atol=1e-12 * np.abs(expected).max())
