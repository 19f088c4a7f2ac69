"""The one solver (eqntk.linalg) against NumPy/SciPy, and one PSD decision shared by all its users."""

import collections
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from eqntk import dynamics, linalg, predict, spectral
from eqntk.experiments import common

RNG = np.random.default_rng(7)
EPS64, EPS32 = np.finfo(np.float64).eps, np.finfo(np.float32).eps


def spd(n, rng, cond=10.0):
    """A random SPD matrix with eigenvalues in [1, cond]."""
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return (q * np.linspace(1.0, cond, n)) @ q.T


def gram_with_spectrum(mu, rng):
    """V diag(mu) Vᵀ with a random orthogonal V (exactly symmetric)."""
    q, _ = np.linalg.qr(rng.normal(size=(len(mu), len(mu))))
    g = (q * np.asarray(mu)) @ q.T
    return 0.5 * (g + g.T)


def both(a):
    """The same matrix as a NumPy and as a JAX array."""
    return [np.asarray(a), jnp.asarray(a)]


# --------------------------------------------------------------------------------------------
# The rule
# --------------------------------------------------------------------------------------------


def test_psd_tolerance_rule():
    assert linalg.psd_tolerance(10, np.float64) == pytest.approx(np.sqrt(EPS64))
    assert linalg.psd_tolerance(10, np.float32) == pytest.approx(np.sqrt(EPS32))
    assert linalg.psd_tolerance(10**9, np.float64) == pytest.approx(10**9 * EPS64)  # n·eps beats √eps
    assert linalg.psd_tolerance(10, np.float64, 1e-5) == 1e-5                       # the kernel's accuracy
    assert linalg.psd_tolerance(10, np.float64, 1e-12) == pytest.approx(np.sqrt(EPS64))  # never below round-off
    assert linalg.psd_tolerance(10, (np.float64, np.float32)) == pytest.approx(np.sqrt(EPS32))  # the coarsest
    assert linalg.psd_tolerance(10, (np.int64, np.float64)) == pytest.approx(np.sqrt(EPS64))
    for bad in (-1e-3, np.nan, np.inf):
        with pytest.raises(ValueError, match="psd_rtol"):
            linalg.psd_tolerance(10, np.float64, bad)


def test_check_psd_eigenvalues_or_gram():
    mu = np.array([-1e-3, 0.5, 1.0])
    with pytest.raises(ValueError, match=r"K is not positive semi-definite: smallest eigenvalue -1\.0+e-03"):
        linalg.check_psd(mu, "K", 1e-4)
    linalg.check_psd(mu, "K", 2e-3)
    linalg.check_psd(mu[::-1], "K", 2e-3)  # any order
    g = gram_with_spectrum(mu, RNG)
    for a in both(g):
        with pytest.raises(ValueError, match="positive semi-definite"):
            linalg.check_psd(a, "K", 1e-4)
        linalg.check_psd(a, "K", 2e-3)
    linalg.check_psd(np.zeros(4), "K", 0.0)  # the zero matrix is PSD


def test_gram_validation():
    k = spd(5, RNG)
    out, rtol = linalg.gram(k, "K")
    np.testing.assert_allclose(out, k, rtol=1e-15, atol=1e-15)
    assert rtol == linalg.psd_tolerance(5, np.float64)
    out32, rtol32 = linalg.gram(k.astype(np.float32), "K", dtype=np.float64)  # a float32 Gram, worked in float64
    assert out32.dtype == np.float64 and rtol32 == linalg.psd_tolerance(5, np.float32)
    asym = k + 1e-6 * np.triu(np.ones((5, 5)), 1)
    cases = [(k[:3], "square"), (np.ones(5), "square"), (np.zeros((0, 0)), "empty training set"),
             (np.where(np.eye(5) > 0, np.nan, k), "NaN or inf"), (asym, "not symmetric"),
             (np.eye(3, dtype=np.int64), "floating")]
    for a, msg in cases:
        with pytest.raises(ValueError, match=msg):
            linalg.gram(a, "K")
    out, _ = linalg.gram(asym, "K", kernel_rtol=1e-5)  # within the stated accuracy: symmetrised
    np.testing.assert_allclose(out, 0.5 * (asym + asym.T))


# --------------------------------------------------------------------------------------------
# Solvers against NumPy/SciPy
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ridge", [0.0, 0.3])
def test_cholesky_solves_like_numpy(ridge):
    n = 12
    k = spd(n, RNG)
    b = RNG.normal(size=(n, 3))
    expected = np.linalg.solve(k + ridge * np.eye(n), b)
    for a in both(k):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no jitter on an SPD matrix
            chol, r = linalg.cholesky(a, ridge, linalg.psd_tolerance(n))
        assert r == ridge
        assert isinstance(chol, jax.Array) == isinstance(a, jax.Array)  # stays in its library
        np.testing.assert_allclose(np.tril(np.asarray(chol)), np.asarray(chol))
        np.testing.assert_allclose(np.asarray(chol) @ np.asarray(chol).T, k + ridge * np.eye(n), atol=1e-12)
        np.testing.assert_allclose(np.asarray(linalg.cho_solve(chol, b)), expected, rtol=1e-10, atol=1e-12)


def test_spectrum_and_shift_match_numpy():
    n = 9
    k = spd(n, RNG)
    mu_ref = np.linalg.eigvalsh(k)
    for a in both(k):
        spec = linalg.spectrum(a, 0.25)
        np.testing.assert_allclose(np.asarray(spec.mu), mu_ref, rtol=1e-12)
        np.testing.assert_allclose(np.asarray(spec.lam), mu_ref + 0.25, rtol=1e-12)
        v = np.asarray(spec.vecs)
        np.testing.assert_allclose(v @ np.diag(mu_ref) @ v.T, k, atol=1e-12)
        assert spec.cutoff == pytest.approx(n * EPS64 * (mu_ref[-1] + 0.25))
        s2 = linalg.shift(spec, 2.0)
        np.testing.assert_allclose(np.asarray(s2.lam), mu_ref + 2.0, rtol=1e-12)
        assert s2.vecs is spec.vecs


def test_flow_weights_match_expm_and_inverse():
    n = 8
    k = spd(n, RNG, cond=5.0)
    mu, v = np.linalg.eigh(k)
    s = np.array([0.0, 0.1, 3.0, np.inf])
    for lam in both(mu):
        g = np.asarray(linalg.flow_weights(lam, jnp.asarray(s) if isinstance(lam, jax.Array) else s, 0.0))
        assert g.shape == (4, n)
        for i, si in enumerate(s[:-1]):  # (1 − e^{−K s}) K⁻¹
            ref = np.linalg.solve(k, np.eye(n) - scipy.linalg.expm(-si * k))
            np.testing.assert_allclose((v * g[i]) @ v.T, ref, atol=1e-12)
        np.testing.assert_allclose((v * g[-1]) @ v.T, np.linalg.inv(k), atol=1e-12)
    # λ = 0: g = s at finite times (no 0/0) and 0 at s = ∞ (pseudo-inverse below the cutoff)
    g0 = linalg.flow_weights(np.array([0.0, 1e-20, 1.0]), s, 1e-16)
    np.testing.assert_allclose(g0[:, 0], [0.0, 0.1, 3.0, 0.0])
    np.testing.assert_allclose(g0[:, 1], [0.0, 0.1, 3.0, 0.0])
    assert g0[-1, 2] == 1.0


def test_jitter_only_when_needed_and_reported():
    n = 10
    mu = np.concatenate([[-1e-12], np.linspace(0.5, 3.0, n - 1)])  # PSD up to round-off, not factorisable
    k = gram_with_spectrum(mu, RNG)
    rtol = linalg.psd_tolerance(n)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, r = linalg.cholesky(k, 1e-3, rtol)  # a ridge makes it SPD: no jitter
    assert r == 1e-3
    for a in both(k):
        with pytest.warns(linalg.JitterWarning, match="jitter"):
            chol, r = linalg.cholesky(a, 0.0, rtol)
        assert 0 < r <= 100 * rtol * 3.0
        c = np.asarray(chol)
        np.testing.assert_allclose(c @ c.T, k + r * np.eye(n), atol=1e-12)
        with pytest.raises(ValueError, match="even with jitter"):
            linalg.cholesky(a, 0.0, rtol, max_jitter=1e-30)
    with pytest.raises(ValueError, match="identically zero"):
        linalg.cholesky(np.zeros((3, 3)), 0.0, rtol)
    assert predict.JitterWarning is linalg.JitterWarning


# --------------------------------------------------------------------------------------------
# One decision for every user
# --------------------------------------------------------------------------------------------


def _score(pred, y):
    return float(np.mean((pred - y) ** 2))


Kernels = collections.namedtuple("Kernels", "nngp ntk")


def _kernel_fn(k):
    """A kernel_fn whose inputs are indices into the Gram ``k``."""
    def kernel_fn(x1, x2=None, get=("nngp", "ntk")):
        i = np.asarray(x1, dtype=int)
        j = i if x2 is None else np.asarray(x2, dtype=int)
        g = k[np.ix_(i, j)]
        return Kernels(g, g)

    return kernel_fn


USERS = {
    "predict.kernel_regression": lambda k, y, rtol: predict.kernel_regression(k, y, k[:3], psd_rtol=rtol),
    "predict.kernel_regression(ridge)": lambda k, y, rtol: predict.kernel_regression(k, y, k[:3], ridge=1.0,
                                                                                      psd_rtol=rtol),
    "predict.gp_inference": lambda k, y, rtol: predict.gp_inference(k, y, k[:3], k[:3, :3], psd_rtol=rtol),
    "predict.gradient_flow": lambda k, y, rtol: predict.gradient_flow(k, y, [1.0, np.inf], k[:3], psd_rtol=rtol),
    "predict.gradient_flow_covariance": lambda k, y, rtol: predict.gradient_flow_covariance(
        k, k[:3], k[:3, :3], 1.0, psd_rtol=rtol),
    "predict.gradient_descent_mse_ensemble": lambda k, y, rtol: predict.gradient_descent_mse_ensemble(
        _kernel_fn(k), np.arange(k.shape[0]), y, psd_rtol=rtol)(t=None, x_test=np.arange(3), get="ntk"),
    "spectral.eigensystem": lambda k, y, rtol: spectral.eigensystem(k, psd_rtol=rtol),
    "spectral.empirical_learning_curve": lambda k, y, rtol: spectral.empirical_learning_curve(
        k, y, [k.shape[0]], n_repeats=1, psd_rtol=rtol)[0],  # the mean (one repeat: no standard error)
    "spectral.empirical_learning_curve(ridge)": lambda k, y, rtol: spectral.empirical_learning_curve(
        k, y, [k.shape[0]], n_repeats=1, ridge=1.0, psd_rtol=rtol)[0],
    "experiments.common.select_ridge": lambda k, y, rtol: common.select_ridge(k, y, k[:3], y[:3], _score,
                                                                              psd_rtol=rtol),
    "experiments.common.fit_predict": lambda k, y, rtol: common.fit_predict(k, y, k[:3], 1e-3, psd_rtol=rtol),
    "dynamics.kernel_gradient_descent": lambda k, y, rtol: dynamics.kernel_gradient_descent(
        k, y, [0, 5], k[:3], learning_rate=0.5, psd_rtol=rtol),
}

N = 20
TAU = float(np.sqrt(EPS64))  # psd_tolerance(20, float64)


@pytest.mark.parametrize("user", sorted(USERS))
@pytest.mark.parametrize("relative_min, psd_rtol, accepted", [
    (-0.5 * TAU, None, True), (-2 * TAU, None, False),   # round-off rule of float64
    (-0.5e-5, 1e-5, True), (-2e-5, 1e-5, False),         # a kernel stating accuracy 1e-5
])
def test_every_user_takes_the_same_psd_decision(user, relative_min, psd_rtol, accepted):
    """V diag(μ) Vᵀ with μ_min = relative_min · max|μ|: accepted iff −μ_min/max|μ| ≤ τ, by every user."""
    assert linalg.psd_tolerance(N, np.float64, psd_rtol) == (TAU if psd_rtol is None else psd_rtol)
    mu = np.concatenate([[relative_min * 2.0], np.linspace(0.5, 2.0, N - 1)])
    k = gram_with_spectrum(mu, np.random.default_rng(3))
    y = np.random.default_rng(4).normal(size=N)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.JitterWarning)  # ridge-free Cholesky of an accepted Gram
        if accepted:
            out = USERS[user](k, y, psd_rtol)
            assert all(np.all(np.isfinite(np.asarray(a))) for a in jax.tree_util.tree_leaves(out)
                       if a is not None and np.asarray(a).dtype.kind == "f")
        else:
            with pytest.raises(ValueError, match="not positive semi-definite"):
                USERS[user](k, y, psd_rtol)


@pytest.mark.parametrize("user", ["predict.kernel_regression", "predict.gradient_flow", "spectral.eigensystem",
                                  "experiments.common.select_ridge", "dynamics.kernel_gradient_descent"])
def test_a_float32_gram_gets_the_float32_tolerance(user):
    """τ = √eps(float32) ≈ 3.5e-4 whether the user computes in float32 (predict) or float64 (the others)."""
    mu = np.concatenate([[-1e-5 * 2.0], np.linspace(0.5, 2.0, N - 1)])  # 1e-5: refused in float64 (τ = 1.5e-8)
    k = gram_with_spectrum(mu, np.random.default_rng(5))
    y = np.random.default_rng(6).normal(size=N)
    with pytest.raises(ValueError, match="not positive semi-definite"):
        USERS[user](k, y, None)
    k32, y32 = k.astype(np.float32), y.astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.JitterWarning)
        USERS[user](k32, y32, None)
        mu_bad = np.concatenate([[-2e-3 * 2.0], np.linspace(0.5, 2.0, N - 1)])
        k_bad = gram_with_spectrum(mu_bad, np.random.default_rng(5)).astype(np.float32)
        with pytest.raises(ValueError, match="not positive semi-definite"):
            USERS[user](k_bad, y32, None)


def test_select_ridge_coefficients_are_the_validated_model():
    """``with_coef``: the dual coefficients of the chosen ridge solve (K + r·mean(diag K)·I) c = y (dense solve),
    and the validation predictions K_val c reproduce the score that chose it."""
    rng = np.random.default_rng(11)
    k = gram_with_spectrum(np.geomspace(1e-6, 3.0, 30), rng)
    y = rng.normal(size=(30, 2))
    kv, yv = k[:7] + 0.01, rng.normal(size=(7, 2))
    mae = lambda p, t: float(np.mean(np.abs(p - t)))  # noqa: E731
    r, score, trials, coef = common.select_ridge(k, y, kv, yv, mae, [1e-6, 1e-3, 1e-1], with_coef=True)
    assert coef.shape == y.shape
    want = np.linalg.solve(k + r * np.mean(np.diag(k)) * np.eye(30), y)
    np.testing.assert_allclose(coef, want, rtol=1e-8, atol=1e-10 * np.abs(want).max())
    assert mae(kv @ coef, yv) == pytest.approx(score, rel=1e-10)
    assert common.select_ridge(k, y, kv, yv, mae, [1e-6, 1e-3, 1e-1])[:2] == (r, score)


def test_overwrite_paths_equal_the_copying_ones(monkeypatch):
    """``overwrite=True`` (in-place symmetrisation, MRRR eigendecomposition in the Gram's own memory, blockwise
    statistics) gives what the copying path gives (numpy.linalg.eigh on a symmetrised copy), and the asymmetry
    check still refuses; blocks smaller than the matrix exercise the block loops."""
    monkeypatch.setattr(linalg, "_BLOCK", 7)
    rng = np.random.default_rng(12)
    k = gram_with_spectrum(np.geomspace(1e-6, 3.0, 30), rng)
    noise = 1e-14 * rng.normal(size=k.shape)
    k_asym = k + noise  # within the symmetry tolerance
    want_k = 0.5 * (k_asym + k_asym.T)
    given = k_asym.copy()
    got_k, _ = linalg.gram(given, overwrite=True)
    assert got_k is given  # symmetrised in place
    np.testing.assert_array_equal(got_k, want_k)
    np.testing.assert_array_equal(linalg.gram(k_asym)[0], want_k)
    bad = k.copy()
    bad[3, 20] += 1e-3
    with pytest.raises(ValueError, match="not symmetric"):
        linalg.gram(bad, overwrite=True)
    nan = k.copy()
    nan[29, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        linalg.gram(nan, overwrite=True)
    given = want_k.copy()
    spec = linalg.spectrum(given, overwrite=True)
    assert not np.array_equal(given, want_k)  # LAPACK worked in it
    ref = np.linalg.eigh(want_k)
    np.testing.assert_allclose(spec.mu, np.maximum(ref[0], 0), rtol=0, atol=1e-12)
    np.testing.assert_allclose((spec.vecs * spec.mu) @ spec.vecs.T, want_k, rtol=0, atol=1e-12)
    y = rng.normal(size=(30, 2))
    kv, yv = k[:7] + 0.01, rng.normal(size=(7, 2))
    mae = lambda p, t: float(np.mean(np.abs(p - t)))  # noqa: E731
    r, s, _, coef = common.select_ridge(k, y, kv, yv, mae, [1e-6, 1e-3, 1e-1], with_coef=True)
    work = k.copy()
    r2, s2, _, coef2 = common.select_ridge(work, y, kv, yv, mae, [1e-6, 1e-3, 1e-1], with_coef=True, overwrite=True)
    assert r2 == r and s2 == pytest.approx(s, rel=1e-9)
    np.testing.assert_allclose(coef2, coef, rtol=1e-7, atol=1e-9 * np.abs(coef).max())


def test_select_ridge_by_cholesky_equals_the_eigendecomposition():
    """method='cholesky' (one factorisation per ridge) chooses the ridge and coefficients of method='eigh';
    a ridge at which K + r·I does not factorise is skipped when within the PSD tolerance, and an indefinite K
    beyond it is refused."""
    rng = np.random.default_rng(13)
    k = gram_with_spectrum(np.geomspace(1e-4, 3.0, 40), rng)
    y = rng.normal(size=(40, 2))
    kv, yv = k[:9] + 0.01, rng.normal(size=(9, 2))
    mae = lambda p, t: float(np.mean(np.abs(p - t)))  # noqa: E731
    ridges = [1e-6, 1e-4, 1e-2, 1e-1]
    r, s, trials, coef = common.select_ridge(k, y, kv, yv, mae, ridges, with_coef=True, method="eigh")
    r2, s2, trials2, coef2 = common.select_ridge(k, y, kv, yv, mae, ridges, with_coef=True, method="cholesky")
    assert r2 == r and s2 == pytest.approx(s, rel=1e-9)
    np.testing.assert_allclose([t[1] for t in trials2], [t[1] for t in trials], rtol=1e-8)
    np.testing.assert_allclose(coef2, coef, rtol=1e-8, atol=1e-10 * np.abs(coef).max())
    # slightly indefinite (within psd_rtol): the smallest ridge does not factorise and is skipped
    lam, vecs = np.linalg.eigh(k)
    lam[0] = -1e-7 * lam[-1]
    k_in = (vecs * lam) @ vecs.T
    k_in = 0.5 * (k_in + k_in.T)
    tiny = 1e-12 * np.mean(np.diag(k_in)) ** -1 * lam[-1]
    got = common.select_ridge(k_in, y, kv, yv, mae, [tiny, 1e-2], psd_rtol=1e-4, method="cholesky")
    assert [t[0] for t in got[2]] == [1e-2]
    # indefinite beyond the tolerance: refused, as the eigendecomposition refuses it, also where every ridge
    # of the grid is large enough to factorise
    lam[0] = -1e-2 * lam[-1]
    k_bad = (vecs * lam) @ vecs.T
    k_bad = 0.5 * (k_bad + k_bad.T)
    big = 10 * lam[-1] / np.mean(np.diag(k_bad))
    for method in ("eigh", "cholesky"):
        for grid in ([1e-6, 1e-3], [big, 2 * big]):
            with pytest.raises(ValueError, match="not positive semi-definite"):
                common.select_ridge(k_bad, y, kv, yv, mae, grid, psd_rtol=1e-4, method=method)
    with pytest.raises(ValueError, match="method must be"):
        common.select_ridge(k, y, kv, yv, mae, ridges, method="lu")


def test_auto_method_factorises_per_ridge_from_cholesky_rows(monkeypatch):
    rng = np.random.default_rng(14)
    k = gram_with_spectrum(np.geomspace(1e-4, 3.0, 20), rng)
    y, kv, yv = rng.normal(size=20), k[:5], rng.normal(size=5)
    mae = lambda p, t: float(np.mean(np.abs(p - t)))  # noqa: E731
    calls = []
    real = linalg.shifted_solve
    monkeypatch.setattr(linalg, "shifted_solve", lambda *a: calls.append(1) or real(*a))
    common.select_ridge(k, y, kv, yv, mae, [1e-3, 1e-1], method="auto")
    assert not calls  # 20 rows: below CHOLESKY_ROWS
    monkeypatch.setattr(common, "CHOLESKY_ROWS", 20)
    common.select_ridge(k, y, kv, yv, mae, [1e-3, 1e-1], method="auto")
    assert len(calls) == 3  # a factorisation per ridge, and one at τ·μ_max certifying the PSD rule
    with pytest.raises(ValueError, match="method must be"):
        common.select_ridge(k, y, kv, yv, mae, [1e-3], method="lu")


def test_shifted_solve_and_largest_eigenvalue_against_dense_numpy():
    rng = np.random.default_rng(15)
    lam = np.geomspace(1e-3, 5.0, 25)
    k = gram_with_spectrum(lam, rng)
    work = np.empty_like(k)
    for rhs in (rng.normal(size=25), rng.normal(size=(25, 3))):
        got = linalg.shifted_solve(k, 0.1, rhs, work)
        np.testing.assert_allclose(got, np.linalg.solve(k + 0.1 * np.eye(25), rhs), rtol=1e-10)
        assert got.shape == rhs.shape
    assert linalg.shifted_solve(k, -1.0, rng.normal(size=25), work) is None  # K - I is indefinite
    with pytest.raises(ValueError, match="C-ordered"):
        linalg.shifted_solve(k, 0.1, rng.normal(size=25), np.asfortranarray(work))
    mu = linalg.largest_eigenvalue(k)
    assert mu <= np.linalg.eigvalsh(k)[-1] * (1 + 1e-12) and mu == pytest.approx(np.linalg.eigvalsh(k)[-1], rel=1e-6)


@pytest.mark.parametrize("n, block", [(7, 2048), (64, 64), (65, 16), (130, 32), (97, 40)])
def test_cholesky_inplace_blockwise_equals_lapack(monkeypatch, n, block):
    """The blocked factorisation (used above CHOLESKY_BLOCK rows, where OpenBLAS's threaded potrf crashes) is
    numpy's Cholesky factor, at block sizes that divide n and that do not, in float64 and float32."""
    monkeypatch.setattr(linalg, "CHOLESKY_BLOCK", block)
    monkeypatch.setattr(linalg, "_BLOCK", max(block // 2, 3))  # the row blocks that clean linalg.cholesky's factor
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, n + 2))
    k = x @ x.T
    ref = np.linalg.cholesky(k)
    a = k.copy()
    assert linalg.cholesky_inplace(a)
    np.testing.assert_allclose(np.tril(a), ref, rtol=0, atol=1e-12 * np.abs(ref).max())
    a32 = k.astype(np.float32)
    assert linalg.cholesky_inplace(a32) and a32.dtype == np.float32
    np.testing.assert_allclose(np.tril(a32), ref, rtol=0, atol=1e-3 * np.abs(ref).max())
    # linalg.cholesky (the NumPy backend) returns the clean lower factor, as numpy.linalg.cholesky
    chol, r = linalg.cholesky(k, 0.0, linalg.psd_tolerance(n, k.dtype))
    np.testing.assert_allclose(chol, ref, rtol=0, atol=1e-12 * np.abs(ref).max())
    # a negative pivot in the last block, or in the first, is reported, not factorised
    for i in (0, n - 1):
        bad = k.copy()
        bad[i, i] = -1.0
        assert not linalg.cholesky_inplace(bad)
    with pytest.raises(ValueError, match="C-ordered"):
        linalg.cholesky_inplace(np.asfortranarray(k))
    with pytest.raises(ValueError, match="float32 or float64"):
        linalg.cholesky_inplace(np.eye(3, dtype=np.int64))
    # linalg.cholesky factorises an integer Gram in float64, as numpy.linalg.cholesky does
    k_int = np.array([[4, 2], [2, 3]])
    chol, _ = linalg.cholesky(k_int, 0.0, 1e-8)
    assert chol.dtype == np.float64
    np.testing.assert_allclose(chol, np.linalg.cholesky(k_int), rtol=1e-15)


def test_fit_predict_says_when_it_does_not_predict_with_the_validated_ridge():
    """A Gram indefinite within its tolerance: the factorisation at a tiny ridge needs jitter, so the
    predictions are not the validated model's; fit_predict warns (it used to stay silent), and without
    jitter it does not."""
    rng = np.random.default_rng(4)
    lam = np.concatenate([[-1e-6], np.geomspace(1e-3, 1.0, 19)])
    k = gram_with_spectrum(lam, rng)
    y, kt = rng.normal(size=20), rng.normal(size=(3, 20))
    with pytest.warns(linalg.JitterWarning, match="not those of the validated relative ridge"):
        common.fit_predict(k, y, kt, 1e-12, psd_rtol=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pred = common.fit_predict(k, y, kt, 1e-2, psd_rtol=1e-4)
    # no jitter: the validated model's predictions (select_ridge's coefficients at the same ridge), up to the
    # clipped eigenvalue (1e-6 against a ridge of ~1e-3)
    _, _, _, coef = common.select_ridge(k, y, kt, kt @ y, lambda a, b: 0.0, [1e-2], psd_rtol=1e-4, with_coef=True)
    np.testing.assert_allclose(pred, kt @ coef, rtol=2e-3)
