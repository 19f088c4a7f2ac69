"""Atomic environments as S² signals: harmonics, Funk–Hecke coefficients, channels, rotations, errors."""

import numpy as np
import pytest
import jax

import eqntk.data as D
from eqntk.data import MoleculeSet
from eqntk.data.environments import bump_coefficients, bump_profile, smoothing_coefficients, _harmonics
from eqntk.so3.harmonics import coeffs_from_s2_samples, real_sph_harm, s2_grid
from eqntk.so3.wigner import matrix_from_euler, random_rotation, rotate_coeffs

GRID_L = 24  # GL grid: exact for bump degrees ≤ 2·24 − 2 − 7; c_l < 1e-30 beyond for σ ≥ 0.3


@pytest.fixture(scope="module")
def small():
    return D.load_qm9()[:12]


def test_harmonics_match_eqntk_convention():
    x = np.random.default_rng(0).normal(size=(40, 3)) * 2.5
    assert np.allclose(_harmonics(x, 9), real_sph_harm(9, x), atol=1e-12)
    # pole convention: Y_1,0 ∝ z, Y_1,1 ∝ x, Y_1,-1 ∝ y
    y = _harmonics(np.eye(3), 2)
    k = np.sqrt(3 / (4 * np.pi))
    assert np.allclose(y[:, 1:], [[0, 0, k], [k, 0, 0], [0, k, 0]], atol=1e-14)


def test_smoothing_coefficients():
    for sm in ("vmf", "heat"):
        c = smoothing_coefficients(12, sm, 0.4)
        assert c[0] == pytest.approx(1.0) and np.all(np.diff(c) < 0) and c[-1] > 0
    # heat kernel closed form
    assert np.allclose(smoothing_coefficients(5, "heat", 0.5), np.exp(-0.125 * np.arange(5) * np.arange(1, 6)))
    # vMF: c_1 = coth κ − 1/κ (Langevin function)
    k = 1 / 0.5**2
    assert smoothing_coefficients(2, "vmf", 0.5)[1] == pytest.approx(1 / np.tanh(k) - 1 / k, rel=1e-12)
    # narrow bumps agree between the two smoothings at low degree (both ≈ Gaussian of width σ)
    a, b = smoothing_coefficients(4, "vmf", 0.05), smoothing_coefficients(4, "heat", 0.05)
    assert np.allclose(a, b, atol=1e-3)


@pytest.mark.parametrize("smoothing", ["vmf", "heat"])
@pytest.mark.parametrize("width", [0.3, 0.6])
def test_funk_hecke_against_s2_projection(smoothing, width):
    """Coefficients c_l Y_lm(r̂) = numerical S² projection of the bump sampled on a fine grid."""
    g = s2_grid(GRID_L)
    pts = g.points()
    for r in ([0.3, -0.5, 0.8], [0.0, 0.0, -2.0], [1.0, 1e-3, 0.0]):
        rh = np.asarray(r) / np.linalg.norm(r)
        samples = bump_profile(pts @ rh, smoothing, width)[..., None]
        ref = coeffs_from_s2_samples(samples, GRID_L)[:64, 0]
        assert np.allclose(bump_coefficients(r, 8, smoothing, width), ref, atol=1e-12)
    # unit mass: ∫ b = 1
    w = np.sum(bump_profile(pts @ rh, smoothing, width) * g.weights[:, None])
    assert w == pytest.approx(1.0, abs=1e-12)


def test_environment_equals_projection_of_real_space_signal():
    """The whole construction (weights, cutoff, channels) vs projecting the signal built on a grid."""
    ms = D.load_qm9()
    mol = ms[int(np.nonzero(ms.ids == 8)[0][0])]  # gdb 8: CH3OH
    one = MoleculeSet.from_molecules([(mol.Z, mol.R)])
    spec = D.EnvironmentSpec(bandlimit=6, cutoff=2.2, powers=(1.0, 2.5), smoothing="vmf", width=0.45,
                             include_center=True)
    env = D.atomic_environments(one, spec)
    assert env.shape == (len(mol), 36, spec.n_channels) and spec.n_channels == 5 * 2 + 5
    g = s2_grid(GRID_L)
    pts = g.points()
    for a in range(len(mol)):
        f = np.zeros(pts.shape[:2] + (spec.n_channels,))
        for b in range(len(mol)):
            d = mol.R[b] - mol.R[a]
            r = np.linalg.norm(d)
            if b == a or r >= 2.2:
                continue
            e = spec.elements.index(mol.Z[b])
            for k, p in enumerate(spec.powers):
                w = mol.Z[b] * r**-p * 0.5 * (1 + np.cos(np.pi * r / 2.2))
                f[..., e * 2 + k] += w * bump_profile(pts @ (d / r), "vmf", 0.45)
        f[..., 10 + spec.elements.index(mol.Z[a])] = mol.Z[a] / (4 * np.pi)  # uniform, mass Z_a
        ref = coeffs_from_s2_samples(f, GRID_L)[:36]
        assert np.allclose(env[a], ref, atol=1e-11 * max(1.0, np.abs(ref).max()))
    assert spec.channel_names[:3] == ["H r^-1", "H r^-2.5", "C r^-1"]


def test_rotation_of_coordinates_rotates_coefficients(small):
    """Rotating each molecule by its own rotation ↔ rotate_coeffs on every environment (exact)."""
    L = 7
    env = D.atomic_environments(small, bandlimit=L, cutoff=4.0)
    a, b, g = random_rotation(jax.random.PRNGKey(0), (len(small),), dtype=np.float64)
    Q = np.asarray(matrix_from_euler(a, b, g))
    env_rot = D.atomic_environments(small.transformed(rotations=Q, translations=np.ones(3)), bandlimit=L, cutoff=4.0)
    mol = small.molecule_index
    pred = np.asarray(jax.jit(rotate_coeffs)(env, a[mol], b[mol], g[mol]))
    assert np.abs(pred - env_rot).max() < 1e-12 * np.abs(env).max()
    assert np.abs(env - env_rot).max() > 0.1 * np.abs(env).max()  # the rotation did change them


def test_permutation_permutes_environments(small):
    p = small.random_atom_permutation(seed=4)
    env = D.atomic_environments(small)
    env_p = D.atomic_environments(small.transformed(atom_permutation=p))
    assert np.allclose(env_p, env[p], atol=1e-13)


def test_channels_and_cutoff():
    # water-like: O at origin, two H at 1 Å along x and z; a third H 5.5 Å from O (beyond the cutoff), 4.5 Å from the second H
    Z = [8, 1, 1, 1]
    R = np.array([[0, 0, 0], [1.0, 0, 0], [0, 0, 1.0], [0, 0, 5.5]])
    ms = MoleculeSet.from_molecules([(Z, R)])
    env = D.atomic_environments(ms, bandlimit=3, cutoff=5.0, powers=(1.0, 2.0), allow_isolated=False)
    # l = 0 coefficient = Σ weights / √(4π); the far H (6 Å) is beyond the cutoff of O
    fc = 0.5 * (1 + np.cos(np.pi / 5.0))
    assert env[0, 0, 0] == pytest.approx(2 * fc / np.sqrt(4 * np.pi))  # H channel, r^-1, charge 1
    assert np.all(env[0, :, 2:] == 0)  # no C neighbours
    # H at 1 Å along x, O neighbour: O channel (index 3·2 = 6), weight 8 · fc
    c1 = smoothing_coefficients(3, "vmf", 0.5)[1]
    assert env[1, 1:4, 6] == pytest.approx(8 * fc * c1 * np.sqrt(3 / (4 * np.pi)) * np.array([0, 0, -1]))
    # smooth cutoff: the weight of a neighbour goes to 0 continuously at the cutoff
    near = D.atomic_environments(MoleculeSet.from_molecules([([1, 1], [[0, 0, 0], [0, 0, 4.999]])]), cutoff=5.0)
    assert np.abs(near).max() < 1e-6


def test_bad_inputs(small):
    s_mol = MoleculeSet.from_molecules([([6, 16, 1], np.eye(3))])
    with pytest.raises(ValueError, match=r"unknown element\(s\) S \(Z=16\)"):
        D.atomic_environments(s_mol)
    env = D.atomic_environments(s_mol, elements=(1, 6, 7, 8, 16))
    assert env.shape == (3, 64, 15)
    single = MoleculeSet.from_molecules([([6, 1], [[0, 0, 0], [1.1, 0, 0]]), ([8], [[0, 0, 0]])])
    with pytest.raises(ValueError, match="single atom"):
        D.atomic_environments(single)
    z = D.atomic_environments(single, allow_isolated=True)
    assert np.all(z[2] == 0) and np.any(z[0] != 0)
    far = MoleculeSet.from_molecules([([6, 1], [[0, 0, 0], [8.0, 0, 0]])])
    with pytest.raises(ValueError, match="no neighbour within the cutoff"):
        D.atomic_environments(far)
    assert np.any(D.atomic_environments(far, cutoff=None) != 0)
    same = MoleculeSet.from_molecules([([6, 1], [[0, 0, 0], [0, 0, 0]])])
    with pytest.raises(ValueError, match="same position"):
        D.atomic_environments(same)
    for kw, msg in ((dict(bandlimit=0), "bandlimit"), (dict(width=-1.0), "width"), (dict(smoothing="x"), "smoothing"),
                    (dict(cutoff=0.0), "cutoff"), (dict(elements=("H", "H")), "duplicates")):
        with pytest.raises(ValueError, match=msg):
            D.atomic_environments(small, **kw)
    with pytest.raises(TypeError, match="MoleculeSet"):
        D.atomic_environments(np.zeros((3, 3)))


def test_chunking_matches_single_chunk(small, monkeypatch):
    import eqntk.data.environments as E

    full = D.atomic_environments(small)
    monkeypatch.setattr(E, "_MAX_PAIRS_PER_CHUNK", 50)
    assert np.array_equal(D.atomic_environments(small), full)


@pytest.mark.parametrize("radial", ["gaussian", "bessel"])
def test_radial_basis_equals_projection_of_real_space_density(radial):
    """Gaussian / Bessel radial channels vs the neighbour density built on an S² grid by hand."""
    ms = D.load_qm9()
    mol = ms[int(np.nonzero(ms.ids == 8)[0][0])]  # gdb 8: CH3OH
    one = MoleculeSet.from_molecules([(mol.Z, mol.R)])
    rc, n = 3.0, 5
    spec = D.EnvironmentSpec(bandlimit=5, cutoff=rc, radial=radial, n_radial=n, r_min=0.8, radial_width=0.4,
                             width=0.45)
    env = D.atomic_environments(one, spec)
    assert env.shape == (len(mol), 25, 5 * n) and spec.n_channels == 5 * n
    centres = 0.8 + (rc - 0.8) * np.arange(n) / (n - 1)
    g = s2_grid(GRID_L)
    pts = g.points()
    for a in range(len(mol)):
        f = np.zeros(pts.shape[:2] + (spec.n_channels,))
        for b in range(len(mol)):
            d = mol.R[b] - mol.R[a]
            r = np.linalg.norm(d)
            if b == a or r >= rc:
                continue
            e = spec.elements.index(mol.Z[b])
            for k in range(n):
                gk = np.exp(-((r - centres[k]) ** 2) / (2 * 0.4**2)) if radial == "gaussian" else \
                    np.sin((k + 1) * np.pi * r / rc) / r
                w = mol.Z[b] * gk * 0.5 * (1 + np.cos(np.pi * r / rc))
                f[..., e * n + k] += w * bump_profile(pts @ (d / r), "vmf", 0.45)
        ref = coeffs_from_s2_samples(f, GRID_L)[:25]
        assert np.allclose(env[a], ref, atol=1e-11 * max(1.0, np.abs(ref).max()))
        assert np.abs(ref).max() > 0.1
    assert len(spec.channel_names) == spec.n_channels


def test_radial_basis_spec_validation():
    with pytest.raises(ValueError, match="radial must be"):
        D.EnvironmentSpec(radial="spline")
    with pytest.raises(ValueError, match="needs a cutoff"):
        D.EnvironmentSpec(radial="bessel", cutoff=None)
    with pytest.raises(ValueError, match="n_radial"):
        D.EnvironmentSpec(radial="gaussian", n_radial=0)
    with pytest.raises(ValueError, match="r_min"):
        D.EnvironmentSpec(radial="gaussian", r_min=6.0, cutoff=5.0)
    with pytest.raises(ValueError, match="radial_width"):
        D.EnvironmentSpec(radial="gaussian", radial_width=-1.0)
    mu, s = D.EnvironmentSpec(radial="gaussian", n_radial=10, r_min=0.5, cutoff=5.0).gaussian_centres
    assert mu[0] == 0.5 and mu[-1] == 5.0 and s == pytest.approx(0.5)
