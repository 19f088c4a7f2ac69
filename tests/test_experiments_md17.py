"""``eqntk md17``: forces from the l = 1 matrix kernel, on a molecule whose forces are known exactly."""

import json
import os

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

import eqntk.data as D
from eqntk import cli
from eqntk.experiments import md17

# a methanol-like geometry (Å): C, H, H, H, O
EQ = np.array([[0.0, 0.0, 0.0], [1.09, 0.0, 0.0], [-0.36, 1.03, 0.0], [-0.36, -0.51, 0.89], [-0.47, -0.67, -1.18]])
Z = np.array([6, 1, 1, 1, 8])


def _springs(R, k=50.0):
    """Energy and exact forces of harmonic springs between all atom pairs at their equilibrium lengths."""
    d0 = np.linalg.norm(EQ[:, None] - EQ[None], axis=-1)
    diff = R[:, :, None] - R[:, None, :]  # (B, n, n, 3)
    d = np.linalg.norm(diff, axis=-1)
    np.fill_diagonal(d0, 1.0)
    d = d + np.eye(len(EQ))
    stretch = (d - d0) * (1 - np.eye(len(EQ)))
    F = -np.sum((k * stretch / d)[..., None] * diff, axis=2)
    return 0.25 * k * np.sum(stretch**2, axis=(1, 2)), F


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """Thermal-like displacements of the molecule, each conformation in a random orientation."""
    rng = np.random.default_rng(0)
    B = 70
    R = EQ[None] + 0.06 * rng.normal(size=(B, len(EQ), 3))
    rot = Rotation.random(B, random_state=1).as_matrix()
    R = np.einsum("bij,bnj->bni", rot, R)
    E, F = _springs(R)
    path = str(tmp_path_factory.mktemp("md17") / "springs.npz")
    np.savez(path, z=Z, R=R, F=F, E=E)
    return path


def test_spring_forces_are_exact():
    R = EQ[None] + 0.05 * np.random.default_rng(2).normal(size=(1, len(EQ), 3))
    _, F = _springs(R)
    eps, num = 1e-6, np.zeros_like(F)
    for i in range(len(EQ)):
        for a in range(3):
            Rp, Rm = R.copy(), R.copy()
            Rp[0, i, a] += eps
            Rm[0, i, a] -= eps
            num[0, i, a] = -(_springs(Rp)[0][0] - _springs(Rm)[0][0]) / (2 * eps)
    np.testing.assert_allclose(F, num, atol=1e-6)
    assert np.abs(F.sum(axis=1)).max() < 1e-12  # no net force


def test_learns_forces_in_random_orientations(synthetic):
    cfg = md17.MD17Config(source=synthetic, n_train=(10, 40), n_val=10, n_test=20, progress=False)
    res = md17.run(cfg, log=lambda *a: None)
    zero = res["zero_predictor_force_mae"]
    maes = {(r["kernel"], r["n_train"]): r["force_mae"] for r in res["results"]}
    assert set(maes) == {(k, n) for k in ("l1_ntk", "l1_nngp") for n in (10, 40)}
    # an equivariant model learns forces of randomly oriented conformations; more data helps
    assert all(m < 0.6 * zero for m in maes.values()), (maes, zero)
    assert min(maes[("l1_ntk", 40)], maes[("l1_nngp", 40)]) < min(maes[("l1_ntk", 10)], maes[("l1_nngp", 10)])
    json.dumps(res)  # JSON-ready


def test_cli_writes_json_and_png_and_refuses_bad_data(synthetic, tmp_path, capsys):
    out, store = str(tmp_path / "out"), str(tmp_path / "tiles")
    args = ["md17", "--data", synthetic, "--n-train", "10", "--n-val", "5", "--n-test", "5", "--no-progress",
            "--store", store]
    rc = cli.main(args + ["--out", out])
    assert rc == 0
    assert os.path.exists(os.path.join(out, "md17.json")) and os.path.exists(os.path.join(out, "md17_learning_curve.png"))
    assert "l = 1 NTK" in capsys.readouterr().out
    assert sorted(os.listdir(store)) == [f"Z{e}_{part}" for e in sorted(set(Z.tolist())) for part in ("pool", "test")]
    assert cli.main(args + ["--out", out + "2"]) == 0  # the same command again: every tile read from the store
    capsys.readouterr()
    with open(os.path.join(out, "md17.json")) as f, open(os.path.join(out + "2", "md17.json")) as g:
        assert json.load(f)["results"] == json.load(g)["results"]
    bad = str(tmp_path / "bad.npz")
    np.savez(bad, z=Z, R=np.zeros((3, 5, 3)))
    assert cli.main(["md17", "--data", bad, "--out", out, "--no-progress"]) == 2
    assert "lacks ['F']" in capsys.readouterr().err
    assert cli.main(["md17", "--data", synthetic, "--n-train", "100", "--out", out, "--no-progress"]) == 2
    assert "fewer than" in capsys.readouterr().err
    assert cli.main(["md17", "--n-train", "400", "--out", out, "--no-progress"]) == 2  # the embedded 500 do not fit
    assert "500 conformations" in capsys.readouterr().err


def test_embedded_md17_subset():
    """The shipped ethanol subset: its shapes, the ethanol formula, and forces that are the negative energy
    gradient: for close conformation pairs, E(R') − E(R) ≈ −½ (F + F')·(R' − R) (trapezoid rule)."""
    d = D.load_md17()
    assert sorted(d["z"].tolist()) == [1] * 6 + [6, 6, 8]
    assert d["R"].shape == (500, 9, 3) and d["F"].shape == (500, 9, 3) and d["E"].shape == (500,)
    R, E, F = d["R"], d["E"], d["F"]
    dR = R[:, None] - R[None]
    dist = np.sqrt((dR ** 2).sum(axis=(2, 3)))
    i, j = np.unravel_index(np.argsort(dist + np.eye(len(R)) * 1e9, axis=None)[:20], dist.shape)
    pred = -0.5 * np.einsum("pax,pax->p", F[i] + F[j], R[j] - R[i])
    # conformations from a 500 K trajectory differ by ~0.1–0.3 Å; the trapezoid rule's error is small but not 0
    assert np.corrcoef(pred, E[j] - E[i])[0, 1] > 0.9
    with pytest.raises(FileNotFoundError):
        D.load_md17("no-such-file.npz")


def test_energy_force_model_learns_energies_and_forces_through_the_cli(synthetic, tmp_path, capsys):
    """--model energy-forces: the SO(3) energy model trained on energies and forces of randomly oriented
    spring-model conformations beats the zero/mean predictors and improves with data; JSON, PNG, table."""
    out = str(tmp_path / "ef")
    rc = cli.main(["md17", "--model", "energy-forces", "--data", synthetic, "--n-train", "4", "16", "--n-val", "10",
                   "--n-test", "8", "--oversampling", "6", "--energy-ratios", "0.01", "1", "--force-rtol", "0.05",
                   "--out", out, "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "SO(3) NTK, energy + force trained" in printed and "test energy MAE" in printed
    assert os.path.exists(os.path.join(out, "md17_learning_curve.png"))
    with open(os.path.join(out, "md17.json")) as f:
        res = json.load(f)
    assert res["config"]["model"] == "energy-forces"
    f_mae = {(r["kernel"], r["n_train"]): r["force_mae"] for r in res["results"]}
    e_mae = {(r["kernel"], r["n_train"]): r["energy_mae"] for r in res["results"]}
    assert set(f_mae) == {(k, n) for k in ("so3_ntk", "so3_nngp") for n in (4, 16)}
    assert res["config"]["energy_ratios"] == [0.01, 1.0] and res["config"]["force_rtol"] == 0.05
    for r in res["results"]:  # both ratios tried; the chosen one is guarded and reported with its test MAEs
        (f_one,) = [t[2] for t in r["ratio_trials"] if t[0] == 1.0]
        assert [t[0] for t in r["ratio_trials"]] == [0.01, 1.0] and r["val_force_mae"] <= 1.05 * f_one
        assert [t[0] for t in r["ratio_test"]] == [0.01, 1.0]
        (chosen,) = [t for t in r["ratio_test"] if t[0] == r["energy_ratio"]]
        np.testing.assert_allclose(chosen[1:], [r["energy_mae"], r["force_mae"]], rtol=1e-12)
    for k in ("so3_ntk", "so3_nngp"):
        assert f_mae[(k, 16)] < 0.5 * res["zero_predictor_force_mae"], (f_mae, res["zero_predictor_force_mae"])
        assert f_mae[(k, 16)] < f_mae[(k, 4)], f_mae
        assert e_mae[(k, 16)] < 0.5 * res["mean_predictor_energy_mae"], (e_mae, res["mean_predictor_energy_mae"])


def test_energy_force_model_refuses_data_without_energies(tmp_path):
    path = str(tmp_path / "noE.npz")
    R = EQ[None] + 0.05 * np.random.default_rng(3).normal(size=(30, len(EQ), 3))
    np.savez(path, z=Z, R=R, F=_springs(R)[1])
    with pytest.raises(ValueError, match="needs energies"):
        md17.run(md17.MD17Config(source=path, model="energy-forces", n_train=(4,), n_val=2, n_test=2,
                                 progress=False), log=lambda *a: None)
    with pytest.raises(ValueError, match="model must be one of"):
        md17.MD17Config(model="energies")
    with pytest.raises(ValueError, match="energy_ratios"):
        md17.MD17Config(model="energy-forces", energy_ratios=(0.0, 1.0))
    with pytest.raises(ValueError, match="force_rtol"):
        md17.MD17Config(model="energy-forces", force_rtol=-1.0)
    with pytest.raises(ValueError, match="belong to model 'energy-forces'"):
        md17.MD17Config(model="vector", energy_ratios=(0.1, 1.0))


@pytest.mark.parametrize("cholesky_rows", [10_000, 12])
def test_fit_forces_predicts_with_the_validated_model(monkeypatch, cholesky_rows):
    """fit_forces's predictions (the validated model's coefficients, by eigendecomposition or, from
    CHOLESKY_ROWS rows, by Cholesky per ridge) against an independent kernel ridge regression with the
    ridge it chose (eqntk.predict through fit_predict), on random PSD matrix kernels of two elements."""
    from eqntk.experiments import common
    from eqntk.so3.vector import as_block_matrix

    monkeypatch.setattr(common, "CHOLESKY_ROWS", cholesky_rows)
    rng = np.random.default_rng(3)
    z = np.array([1, 6, 1])
    n_val, n_max, n_test = 3, 5, 2
    pool_conf = n_val + n_max
    kernels = {}
    for e in (1, 6):
        ia = np.nonzero(z == e)[0]
        m = pool_conf + n_test  # atoms of e: conformation-major (conformation, atom of e)
        feats = rng.normal(size=(m * len(ia) * 3, 40))
        full = (feats @ feats.T).reshape(m * len(ia), 3, m * len(ia), 3).transpose(0, 2, 1, 3)
        npool = pool_conf * len(ia)
        kp, kt = full[:npool, :npool], full[npool:, :npool]
        kernels[e] = (ia, {"ntk": kp}, {"ntk": kt})
    F_pool = rng.normal(size=(pool_conf, 3, 3))
    pred, chosen, _ = md17.fit_forces(kernels, F_pool, (n_test, 3, 3), n_val, 4, "ntk", [1e-6, 1e-3, 1e-1], 1e-8)
    for e, (ia, kp, kt) in kernels.items():
        k_e = len(ia)
        tr = ((n_val + np.arange(4))[:, None] * k_e + np.arange(k_e)).ravel()
        y_tr = F_pool[n_val:n_val + 4][:, ia].reshape(-1)
        ref = common.fit_predict(as_block_matrix(kp["ntk"][np.ix_(tr, tr)]), y_tr,
                                 as_block_matrix(kt["ntk"][:, tr]), chosen[e], psd_rtol=1e-8)
        np.testing.assert_allclose(pred[:, ia].reshape(-1), ref, rtol=1e-7, atol=1e-9 * np.abs(ref).max())


def _dense_energy_force_fit(g, gv, E, F, Ev, Fv, ridges, ratios, force_rtol=None):
    """fit_energy_forces by brute force: a dense solve per (ridge, energy ratio) of the block-normalised Gram."""
    n, nv = len(E), len(Ev)
    mean = np.mean(E)
    y = np.concatenate([E - mean, F.ravel()])
    yv = np.concatenate([Ev - mean, Fv.ravel()])
    d = np.diag(g)
    s = np.concatenate([np.full(n, d[:n].mean()), np.full(y.size - n, d[n:].mean())]) ** -0.5
    kt = s[:, None] * g * s[None, :]

    def solve(r, rho):
        shift = np.full(y.size, r)
        shift[:n] *= rho
        return s * np.linalg.solve(kt + np.diag(shift), s * y)

    f_mae = {r: np.mean(np.abs((gv @ solve(r, 1.0))[nv:] - yv[nv:])) for r in ridges}
    r = min(f_mae, key=f_mae.get)
    e_mae = {rho: np.mean(np.abs((gv @ solve(r, rho))[:nv] - yv[:nv])) for rho in ratios}
    f_rho = {rho: np.mean(np.abs((gv @ solve(r, rho))[nv:] - yv[nv:])) for rho in ratios}
    eligible = [q for q in ratios if force_rtol is None or q == 1.0 or f_rho[q] <= (1 + force_rtol) * f_mae[r]]
    rho = min(eligible, key=e_mae.get)
    return r, rho, solve(r, rho), e_mae, f_rho, {q: solve(r, q) for q in ratios}


def _joint_instance(seed):
    """A strictly positive definite joint Gram of 6 training and 3 validation conformations of 2 atoms, with
    energy and force blocks of different scales (so nothing is clipped), and random targets."""
    rng = np.random.default_rng(seed)
    n, nv, n_at = 6, 3, 2
    rows = lambda m: m * (1 + 3 * n_at)  # noqa: E731
    a = rng.normal(size=(rows(n + nv), rows(n + nv) + 5))
    joint = a @ a.T
    order = np.concatenate([md17.gram_rows(np.arange(n), n + nv, 3 * n_at),
                            md17.gram_rows(np.arange(n, n + nv), n + nv, 3 * n_at)])
    joint = joint[np.ix_(order, order)]
    w = np.ones(rows(n + nv))
    w[np.r_[:n, rows(n):rows(n) + nv]] = 30.0  # energy rows on another scale than force rows
    joint = w[:, None] * joint * w[None, :]
    g, gv = joint[:rows(n), :rows(n)], joint[rows(n):, :rows(n)]
    E, Ev = rng.normal(size=n) * 30, rng.normal(size=nv) * 30
    F, Fv = rng.normal(size=(n, n_at, 3)), rng.normal(size=(nv, n_at, 3))
    return g, gv, E, F, Ev, Fv


@pytest.mark.parametrize("method", ["eigh", "cholesky"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_fit_energy_forces_energy_ridge_against_a_dense_solve(method, overwrite):
    """The ridge chosen on validation forces, then the energy rows' ridge ratio on validation energies, against
    dense solves of the block-diagonally regularised system for every pair (a strictly positive definite Gram
    with energy and force blocks of different scales, so nothing is clipped)."""
    g, gv, E, F, Ev, Fv = _joint_instance(3)
    ridges, ratios = [1e-4, 1e-2, 1e-1], [1e-3, 1e-1, 1.0, 10.0]
    r, rho, coef, e_mae, f_rho, coefs = _dense_energy_force_fit(g, gv, E, F, Ev, Fv, ridges, ratios)
    assert len(set(np.round(list(e_mae.values()), 12))) == len(ratios)  # the ratios do make different models
    fit = md17.fit_energy_forces(g.copy() if overwrite else g, gv, E, F, Ev, Fv, ridges, psd_rtol=1e-10,
                                 overwrite=overwrite, method=method, energy_ratios=ratios)
    assert (fit["ridge_rel"], fit["energy_ratio"]) == (r, rho)
    np.testing.assert_allclose(fit["coef"], coef, rtol=1e-7, atol=1e-9 * np.abs(coef).max())
    np.testing.assert_allclose(fit["val_energy_mae"], e_mae[rho], rtol=1e-8)
    np.testing.assert_allclose([t[1] for t in fit["ratio_trials"]], [e_mae[q] for q in sorted(ratios)], rtol=1e-7)
    np.testing.assert_allclose([t[2] for t in fit["ratio_trials"]], [f_rho[q] for q in sorted(ratios)], rtol=1e-7)
    for q, c in zip(sorted(ratios), fit["trial_coefs"]):  # every trial's model, for reporting
        np.testing.assert_allclose(c, coefs[q], rtol=1e-7, atol=1e-9 * np.abs(coefs[q]).max())
    # without ratios: the force-chosen model, energy rows regularised like the force rows
    plain = md17.fit_energy_forces(g.copy(), gv, E, F, Ev, Fv, ridges, psd_rtol=1e-10, method=method)
    assert plain["energy_ratio"] == 1.0
    np.testing.assert_allclose(plain["coef"], _dense_energy_force_fit(g, gv, E, F, Ev, Fv, ridges, [1.0])[2],
                               rtol=1e-7, atol=1e-9 * np.abs(coef).max())
@pytest.mark.parametrize("method", ["eigh", "cholesky"])
def test_fit_energy_forces_force_guard_against_a_dense_solve(method):
    """force_rtol: a ratio whose validation forces are worse than ratio 1's by more than the tolerance is not
    chosen, however good its energies (an instance where the energy choice does cost forces)."""
    g, gv, E, F, Ev, Fv = _joint_instance(2)
    ridges, ratios = [1e-4, 1e-2, 1e-1], [1e-3, 1e-1, 1.0, 10.0]
    _, rho, _, _, f_rho, _ = _dense_energy_force_fit(g, gv, E, F, Ev, Fv, ridges, ratios)
    assert f_rho[rho] > f_rho[1.0], "this instance must let the energy choice cost forces, or the guard is untested"
    for tol in (0.0, 0.5 * (f_rho[rho] / f_rho[1.0] - 1), 1.0):
        r_g, rho_g, coef_g, *_ = _dense_energy_force_fit(g, gv, E, F, Ev, Fv, ridges, ratios, force_rtol=tol)
        assert (rho_g != rho) == (tol < 1.0)
        fit = md17.fit_energy_forces(g.copy(), gv, E, F, Ev, Fv, ridges, psd_rtol=1e-10, method=method,
                                     energy_ratios=ratios, force_rtol=tol)
        assert (fit["ridge_rel"], fit["energy_ratio"]) == (r_g, rho_g)
        np.testing.assert_allclose(fit["coef"], coef_g, rtol=1e-7, atol=1e-9 * np.abs(coef_g).max())
        assert fit["val_force_mae"] <= (1 + tol) * f_rho[1.0] * (1 + 1e-12)


def test_fit_energy_forces_refuses_bad_energy_ratios():
    g = np.eye(7)
    with pytest.raises(ValueError, match="energy_ratios"):
        md17.fit_energy_forces(g, g[:7], np.zeros(1), np.zeros((1, 2, 3)), np.zeros(1), np.zeros((1, 2, 3)), [1e-3],
                               psd_rtol=1e-8, energy_ratios=[0.0])
    for bad in (-0.1, float("nan")):
        with pytest.raises(ValueError, match="force_rtol"):
            md17.fit_energy_forces(g, g[:7], np.zeros(1), np.zeros((1, 2, 3)), np.zeros(1), np.zeros((1, 2, 3)),
                                   [1e-3], psd_rtol=1e-8, energy_ratios=[0.1, 1.0], force_rtol=bad)
