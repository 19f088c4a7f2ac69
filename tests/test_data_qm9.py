"""QM9 loading, units, atomization energies, the MoleculeSet container and splits."""

import os
from pathlib import Path

import numpy as np
import pytest

import eqntk.data as D
from eqntk.data import MoleculeSet

# The developers' data folder (not shipped), for the slow developer-only checks: EQNTK_SHARED_DATA=/path/to/data
SHARED = os.environ.get("EQNTK_SHARED_DATA")

# The first rows of qm9pack 1.0.3's qm9_part1.csv (methane and water), verbatim.
QM9PACK_CSV = '''XYZ_file,Index,SMILES,InChi,N_atoms,Stoichiometry,Elements,XYZ_Ang,Mulliken_pop,Harmonic_Freq_cmi,RotA_GHz,RotB_GHz,RotC_GHz,Dipole_debye,Polarizability_bohr3,HOMO_au,LUMO_au,HOMO_LUMO_gap_au,R2_bohr2,ZPVE_au,InternalEnergy_0K_au,InternalEnergy_298K_au,Enthalphy_298K_au,GibbsFreeEnergy_298K_au,Heatcapacity_Cv_cal_mol_K
"dsgdb9nsd_000001.xyz",1,"C","InChI=1S/CH4/h1H4",5,"[4,1,0,0,0]","['C','H','H','H','H']","[[-0.0126981359,1.0858041578,0.0080009958],[0.002150416,-0.0060313176,0.0019761204],[1.0117308433,1.4637511618,0.0002765748],[-0.540815069,1.4475266138,-0.8766437152],[-0.5238136345,1.4379326443,0.9063972942]]","[-0.535689,0.133921,0.133922,0.133923,0.133923]","[1341.307,1341.3284,1341.365,1562.6731,1562.7453,3038.3205,3151.6034,3151.6788,3151.7078]",157.7118,157.70997,157.70699,0.,13.21,-0.3877,0.1171,0.5048,35.3641,0.044749,-40.47893,-40.476062,-40.475117,-40.498597,6.469
"dsgdb9nsd_000003.xyz",3,"O","InChI=1S/H2O/h1H2",3,"[2,0,0,1,0]","['O','H','H']","[[-0.0343604951,0.9775395708,0.0076015923],[0.0647664923,0.0205721989,0.0015346341],[0.8717903737,1.3007924048,0.0006931336]]","[-0.589706,0.294853,0.294853]","[1671.4222,3803.6305,3907.698]",799.58812,437.90386,282.94545,1.8511,6.31,-0.2928,0.0687,0.3615,19.0002,0.021375,-76.404702,-76.401867,-76.400922,-76.422349,6.002
'''

METHANE_U0 = -40.47893  # Ha, data README
# free-atom U0 at B3LYP/6-31G(2df,p), QM9 atomref table (figshare 1057643)
E_C, E_H = -37.846772, -0.500273


@pytest.fixture(scope="module")
def qm9():
    return D.load_qm9()


def by_id(ms, gdb):
    i = int(np.nonzero(ms.ids == gdb)[0][0])
    return i, ms[i]


def test_embedded_default(qm9):
    assert len(qm9) == 5000 and qm9.n_atoms_total == int(qm9.counts.sum())
    assert set(np.unique(qm9.Z)) == {1, 6, 7, 8, 9}
    assert np.all(np.diff(qm9.ids) > 0) and qm9.ids.min() == 1 and qm9.ids.max() <= 133885
    assert set(range(1, 11)) <= set(qm9.ids.tolist())
    assert D.default_qm9_path().stat().st_size < 5 * 1024**2
    for f in ("README_qm9_default.md", "LICENSE_qm9pack_MIT.txt"):
        assert (D.default_qm9_path().parent / f).is_file()


def test_methane_values_and_units(qm9):
    i, m = by_id(qm9, 1)
    assert sorted(m.Z.tolist()) == [1, 1, 1, 1, 6] and m.smiles == "C"
    assert m.targets["U0"] == pytest.approx(METHANE_U0, abs=1e-9)
    # C–H bonds of methane: 1.09 Å; H–C–H angle: tetrahedral
    c = m.R[m.Z == 6][0]
    h = m.R[m.Z == 1] - c
    assert np.allclose(np.linalg.norm(h, axis=1), 1.0919, atol=2e-3)
    cosang = (h @ h.T)[np.triu_indices(4, 1)] / 1.0919**2
    assert np.allclose(cosang, -1 / 3, atol=5e-3)
    # 1 Ha = 27.211386 eV
    assert qm9.target("U0", "eV")[i] == pytest.approx(METHANE_U0 * 27.211386, rel=1e-8)
    assert D.convert_energy(1.0, "Ha", "eV") == pytest.approx(27.211386, abs=1e-6)
    assert D.convert_energy(1.0, "Ha", "kcal/mol") == pytest.approx(627.5095, abs=1e-4)
    with pytest.raises(ValueError, match="not an energy"):
        qm9.target("Cv", "eV")


def test_atomization_energy(qm9):
    i, _ = by_id(qm9, 1)
    expected = METHANE_U0 - (E_C + 4 * E_H)  # −0.631066 Ha
    assert D.atomization_energy(qm9, "U0")[i] == pytest.approx(expected, abs=1e-9)
    assert D.atomization_energy(qm9, "U0", unit="eV")[i] == pytest.approx(expected * 27.211386, rel=1e-7)
    # methane: ≈ 396 kcal/mol of binding (B3LYP, without zero-point correction)
    assert D.atomization_energy(qm9, "U0", unit="kcal/mol")[i] == pytest.approx(-396.0, abs=0.5)
    ea = D.atomization_energy(qm9, "U0", "eV")
    assert np.all(ea < 0)
    # per atom, QM9 atomization energies are a few eV
    assert np.all((ea / qm9.counts > -7.0) & (ea / qm9.counts < -2.0))
    # vectorised segment sum agrees with a per-molecule loop
    ref = np.array([qm9[k].targets["U0"] - sum(D.QM9_ATOMREF["U0"][z] for z in qm9[k].Z) for k in range(50)])
    assert np.allclose(D.atomization_energy(qm9[:50], "U0"), ref, atol=1e-12)


def test_atomization_rejects_unknown_elements():
    ms = MoleculeSet.from_molecules([([16, 1, 1], np.eye(3))], targets={"U0": [-399.0]}, units={"U0": "Ha"})
    with pytest.raises(ValueError, match=r"S \(Z=16\)"):
        D.atomization_energy(ms)


def test_read_qm9pack_csv(tmp_path, qm9):
    (tmp_path / "part.csv").write_text(QM9PACK_CSV)
    ms = D.read_qm9pack(tmp_path, files=("part.csv",))
    assert len(ms) == 2 and ms.ids.tolist() == [1, 3] and ms.counts.tolist() == [5, 3]
    assert ms.Z.tolist() == [6, 1, 1, 1, 1, 8, 1, 1]
    assert ms.target("U0").tolist() == [-40.47893, -76.404702]
    assert ms.units["U0"] == "Ha" and ms.units["alpha"] == "bohr^3"
    # agrees with the embedded default built from the full qm9pack (positions stored as float32)
    for k in (0, 1):
        j, m = by_id(qm9, int(ms.ids[k]))
        assert np.allclose(ms[k].R, m.R, atol=1e-6)
        assert all(ms[k].targets[t] == m.targets[t] for t in D.QM9_UNITS)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "qm9_part1.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a qm9pack CSV"):
        D.read_qm9pack(bad, files=("qm9_part1.csv",))


def test_npz_roundtrip(tmp_path, qm9):
    sub = qm9[10:60]
    p = tmp_path / "s.npz"
    sub.save_npz(p)
    back = D.load_qm9(p)
    assert np.array_equal(back.Z, sub.Z) and np.array_equal(back.R, sub.R)
    assert np.array_equal(back.offsets, sub.offsets) and np.array_equal(back.ids, sub.ids)
    assert all(np.array_equal(back.targets[k], sub.targets[k]) for k in sub.targets)
    assert back.units == sub.units and list(back.smiles) == list(sub.smiles)


@pytest.mark.slow
def test_embedded_default_agrees_with_shared_subset(qm9):
    """Developer check: the embedded subset and the developers' 1k subset (EQNTK_SHARED_DATA) agree."""
    if not SHARED:
        pytest.skip("set EQNTK_SHARED_DATA to the developers' data folder to run this check")
    f = Path(SHARED) / "qm9_subset1k_hartree.npz"
    if not f.exists():
        pytest.skip(f"no {f.name} in EQNTK_SHARED_DATA={SHARED}")
    shared = D.load_qm9(f)
    assert len(shared) == 1000 and shared.units["U0"] == "Ha"
    common, a, b = np.intersect1d(shared.ids, qm9.ids, return_indices=True)
    assert common.size > 10
    s1, s2 = shared[a], qm9[b]
    assert np.array_equal(s1.Z, s2.Z) and np.allclose(s1.R, s2.R, atol=1e-6)
    assert np.array_equal(s1.target("U0"), s2.target("U0"))


def test_moleculeset_indexing(qm9):
    sub = qm9[np.array([7, 3, 3])]
    assert len(sub) == 3 and sub.ids.tolist() == [qm9.ids[7], qm9.ids[3], qm9.ids[3]]
    for k, src in enumerate((7, 3, 3)):
        assert np.array_equal(sub[k].R, qm9[src].R) and np.array_equal(sub[k].Z, qm9[src].Z)
        assert sub.target("U0")[k] == qm9.target("U0")[src]
    mask = qm9.counts == 9
    assert len(qm9[mask]) == int(mask.sum()) and np.all(qm9[mask].counts == 9)
    assert qm9[-1].id == qm9.ids[-1]
    assert np.array_equal(qm9.molecule_index[qm9.offsets[5]:qm9.offsets[6]], np.full(qm9.counts[5], 5))
    with pytest.raises(IndexError):
        qm9[5000]
    with pytest.raises(ValueError, match="empty"):
        qm9[np.zeros(len(qm9), bool)]


def test_moleculeset_bad_input():
    R = np.zeros((3, 3))
    R[1, 0] = 1.0
    with pytest.raises(ValueError, match="add up"):
        MoleculeSet.from_counts([2, 2], [1, 1, 8], R)
    with pytest.raises(ValueError, match=r"R must have shape \(n_atoms, 3\)"):
        MoleculeSet.from_counts([3], [1, 1, 8], R[:2])
    Rn = R.copy()
    Rn[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        MoleculeSet.from_counts([3], [1, 1, 8], Rn)
    with pytest.raises(ValueError, match="has 0 atoms"):
        MoleculeSet.from_counts([3, 0], [1, 1, 8], R)
    with pytest.raises(ValueError, match="target 'U0'"):
        MoleculeSet.from_counts([3], [1, 1, 8], R, targets={"U0": [1.0, 2.0]})
    with pytest.raises(ValueError, match="2 atomic numbers but 3 positions"):
        MoleculeSet.from_molecules([([1, 1], R)])
    with pytest.raises(ValueError, match="positive integer"):
        MoleculeSet.from_counts([3], [1, 0, 8], R)


def test_transformed_and_permutation(qm9):
    sub = qm9[:20]
    p = sub.random_atom_permutation(seed=1)
    assert not np.array_equal(p, np.arange(p.size))
    assert np.array_equal(sub.molecule_index[p], sub.molecule_index)
    moved = sub.transformed(atom_permutation=p)
    assert np.array_equal(moved.Z, sub.Z[p])
    bad = np.arange(sub.n_atoms_total)
    bad[[0, sub.offsets[1]]] = bad[[sub.offsets[1], 0]]
    with pytest.raises(ValueError, match="between molecules"):
        sub.transformed(atom_permutation=bad)
    Q = np.linalg.qr(np.random.default_rng(0).normal(size=(len(sub), 3, 3)))[0]
    rot = sub.transformed(rotations=Q)
    for k in range(len(sub)):
        d0 = np.linalg.norm(sub[k].R[:, None] - sub[k].R[None], axis=-1)
        d1 = np.linalg.norm(rot[k].R[:, None] - rot[k].R[None], axis=-1)
        assert np.allclose(d0, d1, atol=1e-12)


def test_splits_disjoint_and_reproducible(qm9):
    tr, va, te = D.split_indices(len(qm9), [3000, 500, None], seed=7)
    assert (tr.size, va.size, te.size) == (3000, 500, 1500)
    allidx = np.concatenate([tr, va, te])
    assert np.array_equal(np.sort(allidx), np.arange(len(qm9)))
    for a, b in ((tr, va), (tr, te), (va, te)):
        assert np.intersect1d(a, b).size == 0
    again = D.split_indices(len(qm9), [3000, 500, None], seed=7)
    assert all(np.array_equal(x, y) for x, y in zip((tr, va, te), again))
    other = D.split_indices(len(qm9), [3000, 500, None], seed=8)
    assert not np.array_equal(tr, other[0])
    # the first subsets do not depend on the later sizes
    assert np.array_equal(D.split_indices(len(qm9), [3000, 100], seed=7)[0], tr)
    a, b = D.split_indices(10, [0.5, 0.3], seed=0)
    assert a.size == 5 and b.size == 3
    s_tr, s_te = qm9.split([100, 50], seed=3)
    assert len(s_tr) == 100 and not set(s_tr.ids.tolist()) & set(s_te.ids.tolist())
    with pytest.raises(ValueError, match="only 10"):
        D.split_indices(10, [8, 5])
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        D.split_indices(10, [1.5])


def test_load_qm9_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        D.load_qm9(tmp_path / "nope.npz")
    np.savez(tmp_path / "x.npz", Z=np.array([1]), R=np.zeros((1, 3)))
    with pytest.raises(ValueError, match="missing key"):
        D.load_qm9(tmp_path / "x.npz")
    np.savez(tmp_path / "y.npz", N=np.array([2, 2]), Z=np.array([1, 1, 8]), R=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="add up"):
        D.load_qm9(tmp_path / "y.npz")
    np.savez(tmp_path / "z.npz", N=np.array([3]), Z=np.array([1, 1, 16]), R=np.eye(3))
    with pytest.raises(ValueError, match=r"S \(Z=16\)"):
        D.load_qm9(tmp_path / "z.npz", elements="H C N O F".split())


@pytest.mark.slow
def test_full_qm9_from_qm9pack():
    try:
        D.qm9.qm9pack_data_dir()
    except ImportError:
        pytest.skip("qm9pack not installed (pip install 'eqntk[qm9]')")
    ms = D.load_qm9("qm9pack")
    assert len(ms) == 130831 and ms.n_atoms_total == 2359210
    _, m = by_id(ms, 1)
    assert m.targets["U0"] == METHANE_U0
