"""Landmark (Nyström) regression against exact kernel ridge regression solved densely."""

import numpy as np
import pytest

import eqntk.data as D
from eqntk.landmarks import landmark_basis, landmark_model, landmark_predict


def _rbf(a, b, ell=1.3):
    d2 = np.sum(a**2, 1)[:, None] + np.sum(b**2, 1)[None, :] - 2 * a @ b.T
    return np.exp(-np.maximum(d2, 0) / (2 * ell**2))


def _krr(k_tr, y, k_te, lam):
    return k_te @ np.linalg.solve(k_tr + lam * np.eye(len(k_tr)), y)


@pytest.fixture
def points():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    return x[:40], np.sin(x[:40, 0]) + x[:40, 1] ** 2, x[40:]


def test_all_training_points_as_landmarks_is_exact_krr(points):
    x, y, xt = points
    k_tr, k_te = _rbf(x, x), _rbf(xt, x)
    model = landmark_model(k_tr, k_tr)
    lam = np.array([1e-6, 1e-3, 1e-1])
    pred = landmark_predict(model, y, k_te, lam, relative=False)
    for p, l_ in zip(pred, lam):
        np.testing.assert_allclose(p, _krr(k_tr, y, k_te, l_), rtol=1e-6, atol=1e-8)


def test_relative_ridge_is_relative_to_the_mean_nystrom_diagonal(points):
    x, y, xt = points
    z = x[::3]
    model = landmark_model(_rbf(x, z), _rbf(z, z))
    k_nys = _rbf(x, z) @ np.linalg.solve(_rbf(z, z), _rbf(z, x))
    np.testing.assert_allclose(model.scale, np.mean(np.diag(k_nys)), rtol=1e-8)
    a = landmark_predict(model, y, _rbf(xt, z), [1e-3])
    b = landmark_predict(model, y, _rbf(xt, z), [1e-3 * model.scale], relative=False)
    np.testing.assert_allclose(a, b, rtol=1e-12)


def test_subset_of_regressors_normal_equations(points):
    """Fewer landmarks: α = (K_mn K_nm + λ K_mm)⁻¹ K_mn y, solved directly (well conditioned here)."""
    x, y, xt = points
    z = x[:8]
    k_nm, k_mm, k_tm = _rbf(x, z, 2.0), _rbf(z, z, 2.0), _rbf(xt, z, 2.0)
    lam = 0.05
    alpha = np.linalg.solve(k_nm.T @ k_nm + lam * k_mm, k_nm.T @ y)
    pred = landmark_predict(landmark_model(k_nm, k_mm), y, k_tm, [lam], relative=False)[0]
    np.testing.assert_allclose(pred, k_tm @ alpha, rtol=1e-7, atol=1e-9)


def test_a_basis_reused_across_training_sets_solves_the_same_normal_equations(points):
    """One landmark_basis for two training sets: each fit is the direct SoR solve on its own rows."""
    x, y, xt = points
    z = x[:8]
    basis = landmark_basis(_rbf(z, z, 2.0))
    for rows in (slice(0, 25), slice(0, 40)):
        k_nm, k_tm = _rbf(x[rows], z, 2.0), _rbf(xt, z, 2.0)
        alpha = np.linalg.solve(k_nm.T @ k_nm + 0.05 * _rbf(z, z, 2.0), k_nm.T @ y[rows])
        pred = landmark_predict(landmark_model(k_nm, basis), y[rows], k_tm, [0.05], relative=False)[0]
        np.testing.assert_allclose(pred, k_tm @ alpha, rtol=1e-7, atol=1e-9)
    with pytest.raises(ValueError, match="belong to landmark_basis"):
        landmark_model(_rbf(x, z, 2.0), basis, rcond=1e-3)


def test_duplicate_landmarks_change_nothing(points):
    x, y, xt = points
    z = x[:10]
    zz = np.concatenate([z, z[:3]])
    p1 = landmark_predict(landmark_model(_rbf(x, z), _rbf(z, z)), y, _rbf(xt, z), [1e-4])
    p2 = landmark_predict(landmark_model(_rbf(x, zz), _rbf(zz, zz)), y, _rbf(xt, zz), [1e-4])
    np.testing.assert_allclose(p1, p2, rtol=1e-6, atol=1e-8)


def test_multi_output_and_shapes(points):
    x, y, xt = points
    z = x[:12]
    model = landmark_model(_rbf(x, z), _rbf(z, z))
    yy = np.stack([y, 2 * y], 1)
    p = landmark_predict(model, yy, _rbf(xt, z), [1e-4, 1e-2])
    assert p.shape == (2, len(xt), 2)
    np.testing.assert_allclose(p[..., 1], 2 * p[..., 0], rtol=1e-12)


def test_bad_inputs_raise(points):
    x, y, xt = points
    z = x[:5]
    k_mm = _rbf(z, z)
    with pytest.raises(ValueError, match="shape"):
        landmark_model(_rbf(x, z)[:, :4], k_mm)
    with pytest.raises(ValueError, match="NaN"):
        landmark_model(np.full((3, 5), np.nan), k_mm)
    bad = k_mm.copy()
    bad[0, 0] = -1.0
    with pytest.raises(ValueError, match="positive semi-definite"):
        landmark_model(_rbf(x, z), bad)
    model = landmark_model(_rbf(x, z), k_mm)
    with pytest.raises(ValueError, match="y_train"):
        landmark_predict(model, y[:-1], _rbf(xt, z), [1e-3])
    with pytest.raises(ValueError, match="ridges"):
        landmark_predict(model, y, _rbf(xt, z), [-1.0])


def _molecules(rng, n_mol):
    counts = rng.integers(3, 8, size=n_mol)
    Z = rng.choice([1, 1, 1, 6, 6, 7, 8, 9], size=counts.sum())
    return D.MoleculeSet.from_counts(counts, Z, rng.normal(size=(counts.sum(), 3)) * 1.5)


def test_molecular_landmarks_all_training_atoms_is_exact_krr():
    """Landmarks = every training atom: the molecular Nyström model is exact molecular KRR."""
    rng = np.random.default_rng(1)
    tr, te = _molecules(rng, 25), _molecules(rng, 7)
    f_tr, f_te = rng.normal(size=(tr.n_atoms_total, 4)), rng.normal(size=(te.n_atoms_total, 4))
    y = rng.normal(size=len(tr))
    k_tr = D.molecular_kernel(_rbf(f_tr, f_tr), tr, same_element=True)
    k_te = D.molecular_kernel(_rbf(f_te, f_tr), te, tr, same_element=True)
    atoms = np.arange(tr.n_atoms_total)
    lm = D.atoms_as_molecules(tr, atoms)
    k_nm = D.molecular_kernel(_rbf(f_tr, f_tr), tr, lm, same_element=True)
    k_mm = D.molecular_kernel(_rbf(f_tr, f_tr), lm, lm, same_element=True)
    k_tm = D.molecular_kernel(_rbf(f_te, f_tr), te, lm, same_element=True)
    lam = 1e-3 * np.mean(np.diag(k_tr))
    pred = landmark_predict(landmark_model(k_nm, k_mm), y, k_tm, [lam], relative=False)[0]
    np.testing.assert_allclose(pred, _krr(k_tr, y, k_te, lam), rtol=1e-6, atol=1e-8)


def test_landmark_atoms_stratified_and_seeded():
    rng = np.random.default_rng(2)
    ms = _molecules(rng, 60)
    a = D.landmark_atoms(ms, 40, seed=3)
    assert a.shape == (40,) and len(set(a.tolist())) == 40 and np.all(np.diff(a) > 0)
    np.testing.assert_array_equal(a, D.landmark_atoms(ms, 40, seed=3))
    assert not np.array_equal(a, D.landmark_atoms(ms, 40, seed=4))
    elements, counts = np.unique(ms.Z, return_counts=True)
    got = {int(e): int(np.sum(ms.Z[a] == e)) for e in elements}
    assert set(got) == set(elements.tolist())  # every element, even a rare one, has landmarks
    floor = int(np.ceil(40 / (4 * len(elements))))
    assert all(got[int(e)] >= min(c, floor) for e, c in zip(elements, counts))
    every = D.landmark_atoms(ms, ms.n_atoms_total)
    np.testing.assert_array_equal(every, np.arange(ms.n_atoms_total))
    for m in (1, 2, 3):
        assert D.landmark_atoms(ms, m).shape == (m,)
    with pytest.raises(ValueError, match="m must be"):
        D.landmark_atoms(ms, ms.n_atoms_total + 1)
    one = D.atoms_as_molecules(ms, a)
    assert len(one) == 40 and np.array_equal(one.Z, ms.Z[a]) and np.array_equal(one.ids, a)
