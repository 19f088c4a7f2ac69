"""Invariance, equivariance, the CNN rotation-average identity, transpose symmetry and irrep blocks."""

import numpy as np
import pytest

from eqntk import stax
from eqntk.planar import P2, P4, P4M, TRIVIAL, transform_grid
from eqntk.planar.irreps import group_fourier, group_fourier_inverse, irreps

LIFT = {"p2": stax.Z2ConvP2, "p4": stax.Z2ConvP4, "p4m": stax.Z2ConvP4M}
CONV = {"p2": stax.P2ConvP2, "p4": stax.P4ConvP4, "p4m": stax.P4MConvP4M}
GROUP = {"p2": P2, "p4": P4, "p4m": P4M}
SHAPE = {"p2": (6, 5), "p4": (6, 6), "p4m": (5, 5)}


def numpy_transform(x, group, d):
    """``T_d`` on NHWC images with numpy only: element ``4m + k`` (``n_rot·m + k``) is rot90^k then flip^m."""
    k, m = group.rotation[d] * (4 // group.n_rot), group.flip[d]
    y = np.rot90(x, k, axes=(1, 2))
    return y[:, :, ::-1] if m else y


def images(group, n, C=2, seed=0):
    H, W = SHAPE[group]
    return np.random.default_rng(seed).normal(size=(n, H, W, C))


def pooled_net(group, padding="SAME", act=stax.Relu, b=0.3, head=()):
    return stax.serial(LIFT[group](4, 3, padding, b_std=b), act(), CONV[group](4, 3, padding, b_std=b), act(),
                       stax.GroupPool(), stax.Dense(1, b_std=b), *head)


@pytest.mark.parametrize("group", ["p2", "p4", "p4m"])
def test_transform_grid_is_numpy_rot90_and_flip(group):
    x = images(group, 2)
    G = GROUP[group]
    y = np.asarray(transform_grid(x, G))
    for d in range(G.order):
        np.testing.assert_array_equal(y[:, d], numpy_transform(x, G, d))
    # the matrices compose like the maps: T_a T_b = T_{ba}
    for a in range(G.order):
        for b in range(G.order):
            lhs = numpy_transform(numpy_transform(x, G, b), G, a)
            np.testing.assert_array_equal(lhs, numpy_transform(x, G, G.table[b, a]))


@pytest.mark.parametrize("group,padding", [("p4", "SAME"), ("p4m", "CIRCULAR"), ("p2", "VALID")])
def test_pooled_kernel_exactly_invariant(group, padding):
    G = GROUP[group]
    x1, x2 = images(group, 2, seed=1), images(group, 3, seed=2)
    f = pooled_net(group, padding, head=(stax.Erf(), stax.Dense(1)))  # also a nonlinear head
    n1, n2 = len(x1), len(x2)
    # one call: rows x1 and every T_d x1, columns x2 and every T_d x2
    a = np.concatenate([x1] + [numpy_transform(x1, G, d) for d in range(G.order)])
    b = np.concatenate([x2] + [numpy_transform(x2, G, d) for d in range(G.order)])
    k = f.kernel_fn(a, b)
    for kind in (k.nngp, k.ntk):
        kind = np.asarray(kind).reshape(G.order + 1, n1, G.order + 1, n2)
        np.testing.assert_allclose(kind, np.broadcast_to(kind[:1, :, :1], kind.shape), rtol=0,
                                   atol=1e-12 * np.abs(kind).max())


def test_p4_kernel_not_invariant_to_flips():
    """The invariance test can fail: p4 is not invariant to reflections (and p2 not to 90° rotations)."""
    x1, x2 = images("p4", 2, seed=1), images("p4", 2, seed=2)
    f = pooled_net("p4")
    k0 = f.kernel_fn(x1, x2, "nngp")
    k1 = f.kernel_fn(x1, x2[:, :, ::-1], "nngp")
    assert np.abs(k1 - k0).max() > 1e-7 * np.abs(k0).max()
    x1, x2 = images("p4", 2, seed=1), images("p4", 2, seed=2)
    g = pooled_net("p2")
    assert np.abs(g.kernel_fn(x1, np.rot90(x2, 1, axes=(1, 2)), "nngp") - g.kernel_fn(x1, x2, "nngp")).max() > 1e-6


@pytest.mark.parametrize("group", ["p4", "p4m", "p2"])
def test_per_element_kernels_equivariant(group):
    """M^{x, T_g x'}_d(t, t') = M_{g d}(t, g·t') and M^{T_g x, x'}_d(t, t') = M_{d g⁻¹}(g·t, t')."""
    G = GROUP[group]
    f = stax.serial(LIFT[group](4, 3, "SAME", b_std=0.2), stax.Erf(), CONV[group](4, 3, "SAME"))
    x1, x2 = images(group, 1, seed=3), images(group, 2, seed=4)
    M = np.asarray(f.kernel_fn(x1, x2, "ntk"))  # (1, 2, |G|, H, W, H, W)
    scale = np.abs(M).max()

    def spatial(K, g, axis):  # value at g·t  ==  T_g on the spatial axes (axis, axis + 1)
        Kt = np.moveaxis(K, (axis, axis + 1), (1, 2))
        sh = Kt.shape
        out = numpy_transform(Kt.reshape(sh[0], sh[1], sh[2], -1), G, g).reshape(sh)
        return np.moveaxis(out, (1, 2), (axis, axis + 1))

    for g in range(G.order):
        Mg2 = np.asarray(f.kernel_fn(x1, numpy_transform(x2, G, g), "ntk"))
        Mg1 = np.asarray(f.kernel_fn(numpy_transform(x1, G, g), x2, "ntk"))
        for d in range(G.order):
            want2 = spatial(M[:, :, G.table[g, d]].reshape((-1,) + M.shape[3:]), g, 3)
            np.testing.assert_allclose(Mg2[:, :, d].reshape(want2.shape), want2, rtol=0, atol=1e-12 * scale)
            want1 = spatial(M[:, :, G.table[d, G.inverse[g]]].reshape((-1,) + M.shape[3:]), g, 1)
            np.testing.assert_allclose(Mg1[:, :, d].reshape(want1.shape), want1, rtol=0, atol=1e-12 * scale)


@pytest.mark.parametrize("group,padding,act", [("p4", "SAME", stax.Relu), ("p4m", "CIRCULAR", stax.Erf),
                                               ("p2", "VALID", stax.Relu)])
def test_gcnn_is_rotation_average_of_cnn(group, padding, act):
    """With a linear head after GroupPool: K_GCNN(x, x') = (1/|G|) Σ_d K_CNN(x, T_d x'), NNGP and NTK."""
    G = GROUP[group]
    x1, x2 = images(group, 2, seed=5), images(group, 3, seed=6)
    gcnn = pooled_net(group, padding, act)
    cnn = stax.serial(stax.Conv(4, 3, padding, b_std=0.3), act(), stax.Conv(4, 3, padding, b_std=0.3), act(),
                      stax.GlobalAvgPool(), stax.Dense(1, b_std=0.3))
    k = gcnn.kernel_fn(x1, x2)
    ks = [cnn.kernel_fn(x1, numpy_transform(x2, G, d)) for d in range(G.order)]
    np.testing.assert_allclose(k.nngp, np.mean([c.nngp for c in ks], 0), rtol=1e-12)
    np.testing.assert_allclose(k.ntk, np.mean([c.ntk for c in ks], 0), rtol=1e-12)
    if group != "p4":
        return
    # a nonlinearity after pooling breaks the identity (so the check above is not vacuous)
    head = (stax.Relu(), stax.Dense(1))
    k2 = pooled_net(group, padding, act, head=head).kernel_fn(x1, x2, "ntk")
    cnn2 = stax.serial(cnn, *head)
    avg = np.mean([cnn2.kernel_fn(x1, numpy_transform(x2, G, d), "ntk") for d in range(G.order)], 0)
    assert np.abs(k2 - avg).max() > 1e-6 * np.abs(avg).max()


def test_gram_matrix_symmetry_and_tiles():
    """Gram matrices are symmetric (upper-triangle tiles), and tiled = untiled = cross-kernel evaluation."""
    x = images("p4", 5, seed=7)
    f = pooled_net("p4", "CIRCULAR", stax.Erf)
    full = f.kernel_fn(x)
    tiled = f.kernel_fn(x, tile_size=2)
    cross = f.kernel_fn(x, x + 0.0, tile_size=3)
    for k in (full, tiled, cross):
        np.testing.assert_allclose(k.nngp, full.nngp, rtol=1e-13)
        np.testing.assert_allclose(k.ntk, full.ntk, rtol=1e-13)
    np.testing.assert_allclose(full.ntk, full.ntk.T, rtol=1e-13)


@pytest.mark.parametrize("group", ["p4", "p4m"])
def test_per_element_transpose_symmetry(group):
    """K(x, x') = K(x', x)ᵀ: M^{x', x}_d(t', t) = M^{x, x'}_{d⁻¹}(t, t')."""
    G = GROUP[group]
    f = stax.serial(LIFT[group](4, 3, "VALID", b_std=0.2), stax.Relu(), CONV[group](4, 1, "SAME"))
    x1, x2 = images(group, 1, seed=8), images(group, 1, seed=9)
    a = np.asarray(f.kernel_fn(x1, x2, "nngp"))[0, 0]
    b = np.asarray(f.kernel_fn(x2, x1, "nngp"))[0, 0]
    for d in range(G.order):
        np.testing.assert_allclose(np.transpose(b[d], (2, 3, 0, 1)), a[G.inverse[d]], rtol=0,
                                   atol=1e-13 * np.abs(a).max())


@pytest.mark.parametrize("group", [P2, P4, P4M, TRIVIAL])
def test_irreps_are_a_complete_set(group):
    reps = irreps(group)
    assert sum(r.shape[1] ** 2 for r in reps.values()) == group.order
    for r in reps.values():  # homomorphisms, unitary
        for a in range(group.order):
            for b in range(group.order):
                np.testing.assert_allclose(r[a] @ r[b], r[group.table[a, b]], atol=1e-14)
            np.testing.assert_allclose(r[a] @ r[a].conj().T, np.eye(r.shape[1]), atol=1e-14)
    chars = np.array([[np.trace(r[d]) for d in range(group.order)] for r in reps.values()])
    np.testing.assert_allclose(chars @ chars.conj().T / group.order, np.eye(len(reps)), atol=1e-14)


@pytest.mark.parametrize("group", ["p4", "p4m"])
def test_group_fourier_of_kernels(group):
    G = GROUP[group]
    f = stax.serial(LIFT[group](4, 3, "SAME"), stax.Relu(), CONV[group](4, 3, "SAME"))
    x1, x2 = images(group, 2, seed=10), images(group, 1, seed=11)
    M = np.asarray(f.kernel_fn(x1, x2, "nngp"))
    blocks = group_fourier(M, G)
    np.testing.assert_allclose(group_fourier_inverse(blocks, G), M, atol=1e-14)
    triv = "chi0" if group == "p4" else "A1"
    np.testing.assert_allclose(np.asarray(blocks[triv])[:, :, 0, 0], M.mean(axis=2), atol=1e-14)
    if group == "p4":  # the DFT over d
        F = np.fft.fft(M, axis=2) / 4
        for j in range(4):
            np.testing.assert_allclose(np.asarray(blocks[f"chi{j}"])[:, :, 0, 0], F[:, :, j], atol=1e-14)
    else:  # the irrep blocks block-diagonalise the |G|×|G| group-circulant kernel of each position pair
        Ms = np.asarray(f.kernel_fn(x1[:1], get="nngp"))  # a self pair: the kernel matrix is symmetric
        blocks = group_fourier(Ms, G)
        n1 = M.shape[3] * M.shape[4]
        Mt = Ms[0, 0].reshape(8, n1, n1)
        big = np.zeros((8, n1, 8, n1))
        for r in range(8):
            for r2 in range(8):
                big[r, :, r2] = Mt[G.table[r2, G.inverse[r]]]
        evals = np.sort(np.linalg.eigvalsh(big.reshape(8 * n1, -1)))
        from_blocks = []
        for name, rho in irreps(G).items():
            B = np.asarray(blocks[name])[0, 0]  # (dim, dim, H, W, H, W)
            dim = rho.shape[1]
            # on {r ↦ ρ(r)ᵀ v} the kernel acts as Σ_d ρ(d)ᵀ ⊗ M_d = |G| K̂(ρ)ᵀ (irrep indices transposed)
            B = np.transpose(B.reshape(dim, dim, n1, n1), (1, 2, 0, 3)).reshape(dim * n1, dim * n1)
            np.testing.assert_allclose(B, B.T, atol=1e-13)
            e = np.linalg.eigvalsh(8 * B)
            from_blocks += list(e) * dim
        np.testing.assert_allclose(np.sort(from_blocks), evals, atol=1e-10 * np.abs(evals).max())
