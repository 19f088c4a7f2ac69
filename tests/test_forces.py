"""Differentiable environments and forces of kernel energy models.

Oracles: the numpy environments (sphericart's harmonics, neighbour lists) for the JAX ones;
central finite differences for every derivative; the tiled ``kernel_fn`` + molecular segment
sums for the energies; exact translation invariance (forces sum to zero) and rotation
equivariance up to the SO(3) quadrature error.
"""

import numpy as np
import pytest
import jax
import jax.numpy as jnp

import eqntk.data as D
from eqntk import stax
from eqntk.data.environments import _harmonics
from eqntk.data.environments_jax import environment_fn, real_sph_harm_jax
from eqntk.forces import energies_and_forces, energy_fn, reference_weights
from eqntk.so3.wigner import matrix_from_euler

SPEC = D.EnvironmentSpec(bandlimit=3, radial="gaussian", n_radial=3, radial_scaling=2.0)


@pytest.fixture(scope="module")
def mols():
    ms = D.load_qm9()[:200]
    return ms.subset(np.nonzero(ms.counts >= 8)[0][:6])  # molecules of 8 atoms or more


def test_jax_harmonics_match_sphericart():
    x = np.random.default_rng(0).normal(size=(50, 3))
    x = np.concatenate([x, np.eye(3), -np.eye(3)])  # poles and the equator included
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    np.testing.assert_allclose(np.asarray(real_sph_harm_jax(9, u)), _harmonics(x, 9), atol=1e-13)


@pytest.mark.parametrize("spec", [
    SPEC,
    D.EnvironmentSpec(bandlimit=4),  # distance powers
    D.EnvironmentSpec(bandlimit=3, radial="bessel", n_radial=4, include_center=True, smoothing="heat"),
    D.EnvironmentSpec(bandlimit=3, cutoff=None, charge_weight=False),
    D.EnvironmentSpec(bandlimit=3, cutoff=2.0, allow_isolated=True),  # atoms beyond every neighbour
])
def test_environment_fn_matches_numpy_path(mols, spec):
    ref = D.atomic_environments(mols, spec)
    for i in range(len(mols)):
        m = mols[i]
        a, b = mols.offsets[i], mols.offsets[i + 1]
        got = np.asarray(jax.jit(environment_fn(m.Z, spec))(m.R))
        np.testing.assert_allclose(got, ref[a:b], atol=1e-12 * max(1.0, np.abs(ref).max()))


def test_environment_derivative_matches_finite_differences(mols):
    m = mols[3]
    env = environment_fn(m.Z, SPEC)
    J = np.asarray(jax.jacfwd(env)(m.R))  # (n, L², C, n, 3)
    assert np.all(np.isfinite(J))
    h = 1e-5
    for atom, axis in [(0, 0), (2, 1), (len(m.Z) - 1, 2)]:
        e = np.zeros_like(m.R)
        e[atom, axis] = h
        fd = (np.asarray(env(m.R + e)) - np.asarray(env(m.R - e))) / (2 * h)
        np.testing.assert_allclose(J[..., atom, axis], fd, atol=1e-7 * np.abs(fd).max())


def test_environment_fn_rejects_bad_input(mols):
    with pytest.raises(ValueError, match="1-d integer"):
        environment_fn(np.array([6]), SPEC)
    with pytest.raises(ValueError, match="1-d integer"):
        environment_fn(np.array([[6, 1]]), SPEC)
    with pytest.raises(ValueError):
        environment_fn(np.array([6, 16]), SPEC)  # S is not a QM9 element
    with pytest.raises(ValueError, match="shape"):
        environment_fn(mols[0].Z, SPEC)(np.zeros((2, 3)))


def _model(oversampling=2.0):
    return stax.serial(stax.S2ConvSO3(8, 3), stax.Erf(), stax.SO3Pool(oversampling=oversampling), stax.Dense(1))[2]


def _energy_setup(mols, kf, scale=0.3):
    train = mols[:4]
    x = D.atomic_environments(train, SPEC) * scale
    alpha = np.random.default_rng(0).normal(size=len(train))
    return train, x, alpha, reference_weights(train, alpha)


def test_energies_match_the_tiled_kernel_and_forces_match_finite_differences(mols):
    kf = _model()
    train, x, alpha, w = _energy_setup(mols, kf)
    m = mols[4]
    env = lambda R: environment_fn(m.Z, SPEC)(R) * 0.3  # noqa: E731
    E = energy_fn(kf, x, train.Z, w, m.Z, env, block=8)
    rng = np.random.default_rng(1)
    R = m.R[None] + 0.05 * rng.normal(size=(3,) + m.R.shape)  # three perturbed conformations
    e, F = energies_and_forces(E, R, batch=2)
    test = D.MoleculeSet.from_counts(np.full(3, len(m.Z)), np.tile(m.Z, 3), R.reshape(-1, 3))
    K = D.molecular_kernel(np.asarray(kf(x, D.atomic_environments(test, SPEC) * 0.3, get="ntk")), train, test,
                           same_element=True)
    np.testing.assert_allclose(e, alpha @ K, rtol=1e-12)
    h = 1e-5
    Ej = jax.jit(jax.vmap(E))
    for atom, axis in [(0, 2), (5, 0)]:
        d = np.zeros_like(m.R)
        d[atom, axis] = h
        fd = -(np.asarray(Ej(R + d)) - np.asarray(Ej(R - d))) / (2 * h)
        np.testing.assert_allclose(F[:, atom, axis], fd, rtol=1e-6, atol=1e-9 * np.abs(F).max())
    # translation invariance of the environments: the forces sum to zero, exactly
    assert np.abs(F.sum(axis=1)).max() < 1e-12 * np.abs(F).max()


def test_forces_rotate_with_the_molecule(mols):
    kf = _model(oversampling=6.0)  # rotation invariance holds to the SO3Pool quadrature error
    train, x, alpha, w = _energy_setup(mols, kf)
    m = mols[5]
    env = lambda R: environment_fn(m.Z, SPEC)(R) * 0.3  # noqa: E731
    E = energy_fn(kf, x, train.Z, w, m.Z, env, block=16)
    Q = np.asarray(matrix_from_euler(0.7, 1.1, -0.4))
    R = m.R - m.R.mean(0)
    e, F = energies_and_forces(E, np.stack([R, R @ Q.T]), batch=2)
    np.testing.assert_allclose(e[1], e[0], rtol=1e-6)
    np.testing.assert_allclose(F[1], F[0] @ Q.T, atol=1e-5 * np.abs(F).max())


def test_force_inputs_are_checked(mols):
    kf = _model()
    train, x, alpha, w = _energy_setup(mols, kf)
    with pytest.raises(ValueError, match="one per molecule"):
        reference_weights(train, alpha[:-1])
    with pytest.raises(ValueError, match="one per reference"):
        energy_fn(kf, x, train.Z, w[:-1], mols[4].Z, lambda R: R)
    with pytest.raises(ValueError, match="get"):
        energy_fn(kf, x, train.Z, w, mols[4].Z, lambda R: R, get="both")
    with pytest.raises(ValueError, match=r"\(B, n, 3\)"):
        energies_and_forces(lambda R: R.sum(), np.zeros((4, 3)))


def _conformations(m, n, seed=0, scale=0.05):
    return m.R[None] + scale * np.random.default_rng(seed).normal(size=(n,) + m.R.shape)


def _five_atom_molecule():
    ms = D.load_qm9()[:50]
    return ms[int(np.nonzero(ms.counts == 5)[0][0])]


@pytest.fixture(scope="module")
def small_kernel():
    """A 5-atom molecule and a small network: the second derivatives compile in seconds."""
    from eqntk.forces import conformation_kernel

    m = _five_atom_molecule()
    spec = D.EnvironmentSpec(bandlimit=2, radial="gaussian", n_radial=2, radial_scaling=2.0)
    kf = stax.serial(stax.S2ConvSO3(4, 2), stax.Erf(), stax.SO3Pool(oversampling=1.0), stax.Dense(1))[2]
    env = lambda R: environment_fn(m.Z, spec)(R) * 0.3  # noqa: E731
    return m, spec, kf, conformation_kernel(kf, m.Z, env)


def _blocks(G, n_rows, n_cols, n3, a, b):
    """``(ee, ef, fe, ff)`` of conformations ``(a, b)`` from an energy–force Gram's layout
    (``n_rows``, ``n_cols``: the conformations of its two sides)."""
    fa, fb = n_rows + a * n3 + np.arange(n3), n_cols + b * n3 + np.arange(n3)
    return G[a, b], G[a, fb], G[fa, b], G[np.ix_(fa, fb)]


# every derivative kernel below comes from one compiled program (batch=1, the same kernel object):
# compiling the second derivatives is what costs, not evaluating them


def test_energy_force_blocks_match_finite_differences(small_kernel):
    from eqntk.forces import energy_force_gram

    m, spec, kf, k = small_kernel
    kj = jax.jit(k)
    R1, R2 = _conformations(m, 2, seed=3)
    n, n3 = len(m.Z), 3 * len(m.Z)
    ee, ef, fe, ff = _blocks(energy_force_gram(k, R1[None], R2[None], batch=1), 1, 1, n3, 0, 0)
    # k itself: the tiled kernel_fn and molecular segment sums
    both = D.MoleculeSet.from_counts(np.full(2, n), np.tile(m.Z, 2), np.concatenate([R1, R2]))
    x = D.atomic_environments(both, spec) * 0.3
    K = D.molecular_kernel(np.asarray(kf(x[:n], x[n:], get="ntk")), both[:1], both[1:], same_element=True)
    np.testing.assert_allclose(ee, K[0, 0], rtol=1e-12)
    h = 1e-5
    g = jax.jit(jax.grad(k, argnums=0))
    for atom, axis in [(0, 0), (n - 1, 2)]:
        d = np.zeros_like(R1)
        d[atom, axis] = h
        p = atom * 3 + axis
        np.testing.assert_allclose(ef[p], -(kj(R1, R2 + d) - kj(R1, R2 - d)) / (2 * h), rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(fe[p], -(kj(R1 + d, R2) - kj(R1 - d, R2)) / (2 * h), rtol=1e-6, atol=1e-12)
        # ∂²k/∂R1∂R2, column p: the R2-derivative of ∂k/∂R1 by central differences
        col = (np.asarray(g(R1, R2 + d)) - np.asarray(g(R1, R2 - d))).reshape(-1) / (2 * h)
        np.testing.assert_allclose(ff[:, p], col, rtol=1e-5, atol=1e-7 * np.abs(ff).max())


def test_energy_force_gram_structure(small_kernel):
    from eqntk.forces import energy_force_gram

    m, spec, kf, k = small_kernel
    R = _conformations(m, 5, seed=4)
    n3 = 3 * len(m.Z)
    G = energy_force_gram(k, R, batch=1)  # the upper triangle of pairs; the rest by symmetry
    assert G.shape == (5 * (1 + n3),) * 2
    np.testing.assert_array_equal(G, G.T)
    cross = energy_force_gram(k, R, R[:3], batch=1)  # the full rectangle, every pair computed
    cols = np.concatenate([np.arange(3), 5 + np.arange(3 * n3)])
    # k(R, R') = k(R', R) holds only to the SO3Pool quadrature error (its grid is not closed under inversion)
    np.testing.assert_allclose(cross, G[:, cols], atol=1e-4 * np.abs(G).max())
    for a, b in [(3, 1), (2, 2), (0, 2)]:  # the per-pair blocks sit where the layout says
        for got, want in zip(_blocks(G, 5, 5, n3, a, b), _blocks(cross, 5, 3, n3, a, b)):
            np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(G).max())
    lam = np.linalg.eigvalsh(G)
    assert lam.min() > -1e-4 * lam.max()  # a covariance, PSD up to the quadrature error
    with pytest.raises(ValueError, match="one molecule"):
        energy_force_gram(k, R, R[:, :3])


def _gaussian_kernel(R1, R2):
    """A cheap k(R, R') whose fingerprint identifies it (a module-level function)."""
    return jnp.exp(-0.5 * jnp.sum((R1 - R2) ** 2))


def test_energy_force_gram_resumes_from_its_store(tmp_path, monkeypatch):
    """An interrupted Gram computed with store= resumes: the finished tiles are read back, only the rest is
    computed, and the result equals the Gram computed in one go; a store of other inputs is refused."""
    import eqntk.forces as fo

    R = _conformations(_five_atom_molecule(), 5, seed=3, scale=0.3)
    want = fo.energy_force_gram(_gaussian_kernel, R, batch=2)  # 6 tiles: the upper triangle of 3 x 3
    want_cross = fo.energy_force_gram(_gaussian_kernel, R[:3], R, batch=2)
    real, calls = fo._tile_program, []

    def interrupted_after(n):
        def program(kernel, method):
            f = real(kernel, method)

            def tile(a, b):
                if len(calls) == n:
                    raise RuntimeError("interrupted")
                calls.append(1)
                return f(a, b)

            return tile

        return program

    monkeypatch.setattr(fo, "_tile_program", interrupted_after(3))
    with pytest.raises(RuntimeError, match="interrupted"):
        fo.energy_force_gram(_gaussian_kernel, R, batch=2, store=tmp_path / "train")
    calls.clear()
    monkeypatch.setattr(fo, "_tile_program", interrupted_after(100))
    got = fo.energy_force_gram(_gaussian_kernel, R, batch=2, store=tmp_path / "train")
    assert len(calls) == 3  # only the tiles the interrupted run had not finished
    np.testing.assert_array_equal(got, want)
    calls.clear()
    np.testing.assert_array_equal(fo.energy_force_gram(_gaussian_kernel, R, batch=2, store=tmp_path / "train"), want)
    assert not calls  # everything read back
    got = fo.energy_force_gram(_gaussian_kernel, R[:3], R, batch=2, store=tmp_path / "cross")
    np.testing.assert_array_equal(got, want_cross)
    info = {}
    fo.energy_force_gram(_gaussian_kernel, R, batch=2, store=tmp_path / "train", info=info)
    assert info == {"tiles": 6, "pairs": 15, "pairs_computed": 0}

    class Opaque:  # no structural fingerprint: a store could not tell it from another kernel
        def __call__(self, a, b):
            return jnp.sum(a * b)

    with pytest.raises(ValueError, match="store= needs a kernel whose fingerprint"):
        fo.energy_force_gram(Opaque(), R, batch=2, store=tmp_path / "opaque")
    for other in [dict(R1=R[:4]), dict(R1=R, batch=1), dict(R1=R, kernel=lambda a, b: jnp.sum(a * b))]:
        args = dict(kernel=_gaussian_kernel, batch=2) | other
        with pytest.raises(ValueError, match="different computation"):
            fo.energy_force_gram(args.pop("kernel"), args.pop("R1"), store=tmp_path / "train", **args)


def test_energy_force_predict_equals_the_cross_gram(small_kernel):
    """The posterior-mean model's energies and forces (one jvp and one reverse pass per pair) equal the
    cross energy–force Gram (forward-over-reverse with 3n tangents) times the coefficients, and its
    forces are −∂E/∂R by finite differences."""
    from eqntk.forces import energy_force_gram, energy_force_predict

    m, spec, kf, k = small_kernel
    n3 = 3 * len(m.Z)
    R_train, R = _conformations(m, 5, seed=5), _conformations(m, 3, seed=6)
    coef = np.random.default_rng(7).normal(size=5 * (1 + n3))
    cross = energy_force_gram(k, R, R_train, batch=1)
    e, f = energy_force_predict(k, R_train, coef, R, block=2, batch=2)  # padding on both sides
    assert e.shape == (3,) and f.shape == R.shape
    want = cross @ coef
    np.testing.assert_allclose(e, want[:3], rtol=1e-10, atol=1e-12 * np.abs(want).max())
    np.testing.assert_allclose(f.reshape(-1), want[3:], rtol=1e-10, atol=1e-12 * np.abs(want).max())
    h = 1e-5
    d = np.zeros_like(R[:1])
    d[0, 1, 2] = h
    ep, _ = energy_force_predict(k, R_train, coef, R[:1] + d, block=2, batch=2)
    em, _ = energy_force_predict(k, R_train, coef, R[:1] - d, block=2, batch=2)
    np.testing.assert_allclose(f[0, 1, 2], -(ep[0] - em[0]) / (2 * h), rtol=1e-6)
    with pytest.raises(ValueError, match="layout"):
        energy_force_predict(k, R_train, coef[:-1], R)
    with pytest.raises(ValueError, match="one molecule"):
        energy_force_predict(k, R_train, coef, R[:, :3])


# Fourier-side derivative kernels (eqntk.so3.derivatives) against forward-over-reverse autodiff of the kernel:
# two independent routes to the same quadrature, so they agree to rounding

FOURIER_NETS = {
    # the eqntk qm9 network's shape on a point rule (Rbf takes the rule's weights inside its exponential)
    "rbf_rule": lambda: stax.serial(stax.S2ConvSO3(4, 3), stax.Rbf(0.7), stax.SO3Pool(oversampling=3.0),
                                    stax.Dense(1)),
    # the same on the product grid (the lift values by separable synthesis, the analyses by the separable transform)
    "rbf_grid": lambda: stax.serial(stax.S2ConvSO3(4, 3), stax.Rbf(0.7), stax.SO3Pool(oversampling=3.0, rule=False),
                                    stax.Dense(1)),
    # biases, two nonlinearities and a 1x1 layer before the pool, a biased readout, the product grid
    "relu_sin_grid": lambda: stax.serial(stax.S2ConvSO3(4, 3, W_std=1.3, b_std=0.4), stax.Relu(),
                                         stax.Dense(8, 1.1, 0.2), stax.Sin(1.0, 0.8, 0.3),
                                         stax.SO3Pool(oversampling=4.0, rule=False), stax.Dense(1, 0.9, 0.5)),
}


@pytest.fixture(scope="module")
def five_atoms():
    m = _five_atom_molecule()
    spec = D.EnvironmentSpec(bandlimit=3, radial="gaussian", n_radial=2, radial_scaling=2.0)
    env0 = environment_fn(m.Z, spec)
    return m, lambda R: env0(R) * 0.3


@pytest.mark.parametrize("net, get", [("rbf_rule", "ntk"), ("rbf_grid", "ntk"),
                                      pytest.param("rbf_rule", "nngp", marks=pytest.mark.slow),
                                      pytest.param("relu_sin_grid", "ntk", marks=pytest.mark.slow),
                                      pytest.param("relu_sin_grid", "nngp", marks=pytest.mark.slow)])
def test_fourier_energy_force_gram_equals_autodiff(five_atoms, net, get):
    from eqntk.forces import conformation_kernel, energy_force_gram
    from eqntk.so3.derivatives import pooled_lift

    m, env = five_atoms
    kf = FOURIER_NETS[net]()[2]
    assert pooled_lift(kf) is not None
    assert (pooled_lift(kf).quadrature()[0] is None) == net.startswith("rbf_rule")  # a point rule, or the grid
    k = conformation_kernel(kf, m.Z, env, get=get)
    R = _conformations(m, 3, seed=8)
    want = energy_force_gram(k, R, batch=2, method="autodiff")
    got = energy_force_gram(k, R, batch=2, method="fourier")
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * np.abs(want).max())


def test_fourier_route_is_taken_only_where_it_applies(five_atoms):
    from eqntk.forces import _route, conformation_kernel, energy_force_gram
    from eqntk.so3.derivatives import pooled_lift

    m, env = five_atoms
    pooled = stax.serial(stax.S2ConvSO3(4, 3), stax.Erf(), stax.SO3Pool(), stax.Dense(2), stax.Dense(1))[2]
    nested = stax.serial(stax.serial(stax.S2ConvSO3(4, 3), stax.Tanh()), stax.SO3Pool(), stax.Dense(1))[2]
    assert pooled_lift(pooled).readout and pooled_lift(nested) is not None
    # after the pool a LayerNorm or nonlinearity acts on pooled values (and pooled self-variances): not point by point
    others = [stax.serial(stax.S2ConvSO3(4, 3), stax.Erf(), stax.SO3Pool(), stax.Dense(3), stax.LayerNorm(),
                          stax.Dense(1))[2],
              stax.serial(stax.S2ConvSO3(4, 3), stax.SO3Pool(), stax.Dense(3), stax.Relu(), stax.Dense(1))[2],
              stax.serial(stax.S2ConvSO3(4, 3), stax.Elementwise(jnp.tanh, name="tanh"), stax.SO3Pool(),
                          stax.Dense(1))[2],  # a named map: its spec does not hold the function
              stax.serial(stax.S2ConvSO3(4, 3), stax.Erf(), stax.SO3ConvSO3(4, 2), stax.Erf(), stax.SO3Pool(),
                          stax.Dense(1))[2],
              stax.serial(stax.Dense(4), stax.Erf(), stax.Dense(1))[2]]
    for kf in others:
        assert pooled_lift(kf) is None
        k = conformation_kernel(kf, m.Z, env)
        assert _route(k, "auto") == "autodiff"
        with pytest.raises(ValueError, match="method='fourier' needs"):
            energy_force_gram(k, m.R[None], method="fourier")
    assert _route(conformation_kernel(pooled, m.Z, env), "auto") == "fourier"
    plain = lambda R1, R2: jnp.sum(R1 * R2)  # noqa: E731  any differentiable k(R, R')
    assert _route(plain, "auto") == "autodiff"
    with pytest.raises(ValueError, match="method must be one of"):
        energy_force_gram(plain, m.R[None], method="dense")
    R = _conformations(m, 2, seed=9)
    G = energy_force_gram(plain, R)  # k = Σ R·R': ee = R·R', ef = −R, fe = −R', ff = I for every pair
    n3 = 3 * len(m.Z)
    for a in range(2):
        for b in range(2):
            ee, ef, fe, ff = _blocks(G, 2, 2, n3, a, b)
            np.testing.assert_allclose(ee, np.sum(R[a] * R[b]))
            np.testing.assert_allclose(ef, -R[a].ravel())
            np.testing.assert_allclose(fe, -R[b].ravel())
            np.testing.assert_allclose(ff, np.eye(n3))


def test_fourier_tile_does_not_depend_on_the_pair_chunk(five_atoms):
    """The atom pairs mapped in chunks of any size (padded with copies of the last pair) or all at once (no loop)
    give the same blocks; a chunk size that is not a positive integer is refused."""
    from eqntk.so3.derivatives import energy_force_tile, pooled_lift

    m, env = five_atoms
    chain = pooled_lift(FOURIER_NETS["rbf_grid"]()[2])
    R = _conformations(m, 2, seed=4)
    pairs = sum(int(np.sum(m.Z == e)) ** 2 for e in np.unique(m.Z)) * 2 * 2
    want = energy_force_tile(chain, m.Z, env, "ntk", pair_chunk=1)(R, R)
    for chunk in (3, pairs):
        got = energy_force_tile(chain, m.Z, env, "ntk", pair_chunk=chunk)(R, R)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=0, atol=1e-13 * np.abs(w).max())
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="pair_chunk"):
            energy_force_tile(chain, m.Z, env, "ntk", pair_chunk=bad)
