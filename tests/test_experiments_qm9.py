"""The QM9 experiment's networks and settings.

Oracles: the rotation-integrated Gaussian kernel ``∫ exp(−γ c |f − D(g) f'|²) dg`` by Monte
Carlo over Haar-random rotations (rotate_coeffs, no quadrature grid), for the selected network
S2ConvSO3 → Rbf → SO3Pool → Dense; the normalisation's defining property; refused settings.
"""

import numpy as np
import jax
import jax.numpy as jnp
import pytest

import eqntk.data as D
from eqntk import stax
from eqntk.experiments import qm9
from eqntk.so3.wigner import random_rotation, rotate_coeffs


def test_so3_rbf_network_is_the_rotation_integrated_gaussian_kernel():
    L, C, gamma, w = 3, 2, 0.4, 1.3
    x = np.random.default_rng(0).normal(size=(3, L * L, C)) * 0.6
    k = stax.serial(stax.S2ConvSO3(8, L, W_std=w), stax.Rbf(gamma), stax.SO3Pool(oversampling=4),
                    stax.Dense(1))[2](jnp.asarray(x), get=("nngp", "ntk"))
    c = w**2 / (4 * np.pi * C)  # the lift: ψ(g) = c Σ_l f̂_lᵀ D^l(g) f̂'_l
    n = 40_000
    a, b, g = random_rotation(jax.random.PRNGKey(1), (n,), dtype=np.float64)
    for i in range(3):
        for j in range(3):
            rot = np.asarray(rotate_coeffs(jnp.asarray(x[j])[None], a, b, g))  # (n, L², C)
            psi = c * np.einsum("kc,nkc->n", x[i], rot)
            e = np.exp(-gamma * c * np.sum((x[i][None] - rot) ** 2, axis=(1, 2)))
            nngp = e  # Dense(1, W=1) after the pool: K = ∫ Rbf(ψ) dg
            ntk = e + 2 * gamma * psi * e  # + W² ∫ Θ_rbf, Θ_rbf = ψ · 2γ e (first-layer NTK = ψ)
            for got, s in ((k.nngp[i, j], nngp), (k.ntk[i, j], ntk)):
                se = s.std() / np.sqrt(n)
                assert abs(float(got) - s.mean()) < 5 * se + 1e-9, (i, j, float(got), s.mean(), se)


def test_normalize_gives_unit_mean_lift_variance_from_the_pool_only():
    ms = D.load_qm9()
    pool, test = ms.subset(np.arange(30)), ms.subset(np.arange(30, 45))
    raw = qm9.QM9Config(bandlimit=3, normalize=False)
    cfg = qm9.QM9Config(bandlimit=3, normalize=True)
    xp, xt = qm9.environments(cfg, pool, test, np.float64)
    rp, rt = qm9.environments(raw, pool, test, np.float64)
    f = rp.reshape(len(rp), -1)
    var = np.mean(np.sum(f**2, axis=1)) / (4 * np.pi * rp.shape[2])
    np.testing.assert_allclose(qm9.lift_variance(xp), 1.0, rtol=1e-12)
    np.testing.assert_allclose(xp, rp / np.sqrt(var), rtol=1e-12)
    np.testing.assert_allclose(xt, rt / np.sqrt(var), rtol=1e-12)  # the pool's factor, not the test set's own


@pytest.mark.parametrize("field,value,match", [("nonlinearity", "tanh", "nonlinearity"), ("gamma", 0.0, "gamma"),
                                               ("radial", "spline", "radial"), ("n_radial", 0, "n_radial")])
def test_bad_settings_are_refused_before_any_data_is_loaded(field, value, match):
    cfg = qm9.QM9Config(**{field: value})
    with pytest.raises(ValueError, match=match):
        cfg.validate()


def test_landmark_run_with_every_training_atom_equals_the_exact_run():
    """Landmarks = all training atoms: k(test, train), k(val, train), k(train, train) are exact
    Nyström entries, so every row of the curve must equal the exact kernel regression's — to
    round-off for the MLP (an exactly PSD closed form), to the SO3Pool quadrature's effect for the
    SO(3) net (its atom Gram is PSD only to the quadrature's accuracy, and the clipped eigenvalues
    perturb K_mm⁺; oversampling 8 makes that small)."""
    ms = D.load_qm9()
    kw = dict(n_train=(6, 12), n_val=6, n_test=6, bandlimit=2, kernels=("so3", "mlp"), dtype="float64",
              oversampling=8.0, progress=False)
    quiet = lambda *a: None  # noqa: E731
    exact = qm9.run(qm9.QM9Config(**kw), log=quiet)
    pool_ids = exact["split"]["pool_ids"]
    where = {g: i for i, g in enumerate(ms.ids.tolist())}
    n_atoms = int(ms.subset(np.array([where[g] for g in pool_ids[6:]])).n_atoms_total)
    lm = qm9.run(qm9.QM9Config(**kw, landmarks=n_atoms), log=quiet)
    assert lm["split"] == exact["split"]
    rows = {(r["kernel"], r["n_train"]): r for r in exact["results"]}
    for r in lm["results"]:
        e = rows[(r["kernel"], r["n_train"])]
        if r["kernel"] == "element_baseline":
            continue
        assert r["landmarks"] == n_atoms
        tol = 1e-6 if r["kernel"].startswith("mlp") else 1e-4
        np.testing.assert_allclose([v for _, v in r["ridge_trials"]], [v for _, v in e["ridge_trials"]], rtol=tol)


def test_learning_curve_predicts_with_the_validated_model():
    """A Gram indefinite within its tolerance (one eigenvalue −1e-6) and a ridge (1e-9 relative) too small
    for its Cholesky factorisation: the test predictions must still be those of the model the validation
    split scored, the clipped eigendecomposition (brute force with numpy.linalg.eigh), not of a refit with
    jitter added (what the curve used to report)."""
    def gram_with_spectrum(mu, rng):  # V diag(mu) Vᵀ with a random orthogonal V
        q, _ = np.linalg.qr(rng.normal(size=(len(mu), len(mu))))
        g = (q * np.asarray(mu)) @ q.T
        return 0.5 * (g + g.T)

    rng = np.random.default_rng(7)
    n_pool, n_test, n_tr = 30, 6, 20
    val_idx, train_idx = np.arange(n_tr, n_pool), np.arange(n_tr)
    k_pool = np.zeros((n_pool, n_pool))  # only its training block and validation rows are read
    k_pool[:n_tr, :n_tr] = gram_with_spectrum(np.concatenate([[-1e-6], np.geomspace(1e-3, 1.0, n_tr - 1)]), rng)
    k_pool[n_tr:, :n_tr] = 0.1 * rng.normal(size=(n_pool - n_tr, n_tr))
    k_test = 0.1 * rng.normal(size=(n_test, n_pool))
    y = rng.normal(size=n_pool + n_test)
    # training targets orthogonal to the ones vector (the baseline) and to the negative direction, whose
    # weight 1/ridge would swamp the comparison: centred, so the residuals are these targets themselves
    q, _ = np.linalg.qr(np.stack([np.ones(n_tr), np.linalg.eigh(k_pool[:n_tr, :n_tr])[1][:, 0],
                                  y[:n_tr]], axis=1))
    y[:n_tr] = q[:, 2]
    pool, test = np.arange(n_pool), n_pool + np.arange(n_test)
    c = np.ones((n_pool + n_test, 1))  # one element: the baseline is the training mean
    rows = qm9.evaluate_curve({"ntk": k_pool, "nngp": k_pool}, {"ntk": k_test, "nngp": k_test}, y[pool], y[test],
                              c[pool], c[test], val_idx, train_idx, [n_tr], [1e-9], "so3", psd_rtol=1e-4)
    k_tr = k_pool[np.ix_(train_idx, train_idx)]
    assert np.linalg.eigvalsh(k_tr)[0] < -1e-9 * np.mean(np.diag(k_tr))  # so a Cholesky at the ridge fails
    base = np.mean(y[train_idx])
    mu, v = np.linalg.eigh(k_tr)
    coef = v @ ((v.T @ (y[train_idx] - base)) / (np.maximum(mu, 0.0) + 1e-9 * np.mean(np.diag(k_tr))))
    want = 1e3 * np.mean(np.abs(k_test[:, train_idx] @ coef - (y[test] - base)))
    for row in rows:
        assert row["ridge_rel"] == 1e-9
        np.testing.assert_allclose(row["mae_meV"], want, rtol=1e-6)
