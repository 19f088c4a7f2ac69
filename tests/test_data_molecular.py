"""Molecular kernels: segment sums, element masks, invariance to atom order and per-molecule rotations."""

import collections
from typing import NamedTuple

import numpy as np
import pytest
import jax
import jax.numpy as jnp

import eqntk.data as D
from eqntk import stax
from eqntk.so3.wigner import matrix_from_euler, random_rotation

L = 4


@pytest.fixture(scope="module")
def mols():
    ms = D.load_qm9()
    return ms[np.array([0, 2, 5, 7, 40])]  # CH4, H2O, H2CO, CH3OH and a larger one


@pytest.fixture(scope="module")
def kernel_fn():
    _, _, kf = stax.serial(stax.S2ConvSO3(8, L), stax.Erf(), stax.SO3Pool(oversampling=8), stax.Dense(1))
    return kf


def loop_reference(k, m1, m2, same_element=False):
    out = np.zeros((len(m1), len(m2)))
    for a in range(len(m1)):
        for b in range(len(m2)):
            i = slice(m1.offsets[a], m1.offsets[a + 1])
            j = slice(m2.offsets[b], m2.offsets[b + 1])
            blk = k[i, j]
            if same_element:
                blk = blk * (m1.Z[i][:, None] == m2.Z[j][None, :])
            out[a, b] = blk.sum()
    return out


def test_segment_sums_match_loops(mols):
    m2 = mols[np.array([3, 0, 1])]
    k = np.random.default_rng(0).normal(size=(mols.n_atoms_total, m2.n_atoms_total))
    for same in (False, True):
        ref = loop_reference(k, mols, m2, same)
        assert np.allclose(D.molecular_kernel(k, mols, m2, same_element=same), ref, atol=1e-12)
        kj = D.molecular_kernel(jnp.asarray(k), mols, m2, same_element=same)
        assert isinstance(kj, jax.Array) and np.allclose(np.asarray(kj), ref, atol=1e-12)
    # unsorted segment ids
    seg = np.array([2, 0, 2, 1])
    g = np.arange(16.0).reshape(4, 4)
    out = D.segment_sum_gram(g, seg, 3)
    assert out[2, 2] == g[np.ix_([0, 2], [0, 2])].sum() and out[0, 1] == g[1, 3]
    with pytest.raises(ValueError, match="shape"):
        D.molecular_kernel(k[:-1], mols, m2)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        D.segment_sum_gram(g, np.array([0, 1, 2, 3]), 3)


def test_invariant_to_atom_order_and_per_molecule_rotations(mols, kernel_fn):
    x = D.atomic_environments(mols, bandlimit=L)
    a, b, g = random_rotation(jax.random.PRNGKey(7), (len(mols),), dtype=np.float64)
    Q = np.asarray(matrix_from_euler(a, b, g))
    moved = mols.transformed(rotations=Q, translations=np.array([0.3, -1.0, 2.0]),
                             atom_permutation=mols.random_atom_permutation(seed=5))
    xm = D.atomic_environments(moved, bandlimit=L)
    assert np.abs(xm - x).max() > 0.1  # the inputs really changed
    K = D.molecular_kernel_fn(kernel_fn, x, mols, get="nngp")
    Kx = D.molecular_kernel_fn(kernel_fn, x, mols, xm, moved, get="nngp")
    scale = np.abs(K).max()
    assert np.abs(K - Kx).max() < 1e-9 * scale
    assert np.allclose(K, K.T, atol=1e-12 * scale) and np.all(np.linalg.eigvalsh(K) > -1e-10 * scale)
    # control: distorting one molecule's geometry (not a rigid motion) does change its kernel
    R = mols.R.copy()
    R[mols.offsets[2]] += [0.15, 0.0, 0.0]
    bent = D.MoleculeSet(mols.Z, R, mols.offsets)
    Kb = D.molecular_kernel_fn(kernel_fn, D.atomic_environments(bent, bandlimit=L), bent, get="nngp")
    assert np.abs(Kb[2, 2] - K[2, 2]) > 1e-4 * scale


class Kernel(NamedTuple):
    nngp: np.ndarray
    ntk: np.ndarray


def toy_kernel_fn(x1, x2=None, get=None):
    """A cheap stand-in with kernel_fn's calling convention (not rotation invariant)."""
    a = np.asarray(x1).reshape(len(x1), -1)
    b = a if x2 is None else np.asarray(x2).reshape(len(x2), -1)
    k = Kernel(a @ b.T, (a @ b.T) ** 2 + 1.0)
    if get is None:
        return k
    if isinstance(get, str):
        return getattr(k, get)
    return collections.namedtuple("Kernel", get)(*(getattr(k, g) for g in get))


def test_kernel_fn_paths_agree(mols):
    x = D.atomic_environments(mols, bandlimit=L)
    atoms = toy_kernel_fn(x)
    both = D.molecular_kernel_fn(toy_kernel_fn, x, mols, get=None)
    assert both._fields == ("nngp", "ntk")
    assert np.allclose(both.ntk, loop_reference(atoms.ntk, mols, mols), rtol=1e-12)
    assert np.allclose(D.molecular_kernel_fn(toy_kernel_fn, x, mols, get="nngp"),
                       loop_reference(atoms.nngp, mols, mols), rtol=1e-12)
    # the same-element path evaluates only element blocks; it equals the masked full Gram
    se = D.molecular_kernel_fn(toy_kernel_fn, x, mols, get=("ntk", "nngp"), same_element=True)
    assert se._fields == ("ntk", "nngp")
    assert np.allclose(se.ntk, loop_reference(atoms.ntk, mols, mols, same_element=True), rtol=1e-12)
    m2 = mols[np.array([1, 4])]
    x2 = D.atomic_environments(m2, bandlimit=L)
    cross = D.molecular_kernel_fn(toy_kernel_fn, x, mols, x2, m2, get="nngp", same_element=True)
    assert np.allclose(cross, se.nngp[:, [1, 4]], rtol=1e-12)
    with pytest.raises(ValueError, match="environments but its molecules have"):
        D.molecular_kernel_fn(toy_kernel_fn, x[:-1], mols)
    with pytest.raises(ValueError, match="without molecules2"):
        D.molecular_kernel_fn(toy_kernel_fn, x, mols, x2)


@pytest.mark.parametrize("same_element", [False, True])
def test_blocked_path_equals_whole_gram(mols, same_element, tmp_path):
    """Blocks of a few atoms, reduced as they come, give the loop reference over the whole atom Gram."""
    x = D.atomic_environments(mols, bandlimit=L)
    atoms = toy_kernel_fn(x)
    ref = loop_reference(atoms.ntk, mols, mols, same_element=same_element)
    for block in (1, 5, 7, 10_000):
        got = D.molecular_kernel_fn(toy_kernel_fn, x, mols, get=("ntk", "nngp"), same_element=same_element,
                                    block_atoms=block)
        assert np.allclose(got.ntk, ref, rtol=1e-12) and np.allclose(got.ntk, got.ntk.T, rtol=1e-14)
    m2 = mols[np.array([4, 1, 2])]
    x2 = D.atomic_environments(m2, bandlimit=L)
    cross = D.molecular_kernel_fn(toy_kernel_fn, x, mols, x2, m2, get="nngp", same_element=same_element,
                                  block_atoms=3)
    assert np.allclose(cross, loop_reference(toy_kernel_fn(x, x2).nngp, mols, m2, same_element=same_element),
                       rtol=1e-12)


def test_blocked_store_resumes_and_refuses_other_inputs(mols, tmp_path):
    x = D.atomic_environments(mols, bandlimit=L)
    calls = []

    class Counting:  # a callable object identifies itself to the store by __fingerprint__
        def __call__(self, x1, x2=None, get=None, **kw):
            calls.append(kw)
            return toy_kernel_fn(x1, x2, get)

        def __fingerprint__(self):
            return toy_kernel_fn

    counting = Counting()

    store = str(tmp_path / "blocks")
    first = D.molecular_kernel_fn(counting, x, mols, get="ntk", block_atoms=4, block_store=store, tile_size=2)
    n_blocks = len(calls)
    assert n_blocks > 3 and all(kw == {"tile_size": 2} for kw in calls)
    again = D.molecular_kernel_fn(counting, x, mols, get="ntk", block_atoms=4, block_store=store, tile_size=2)
    assert len(calls) == n_blocks and np.array_equal(first, again)  # nothing recomputed
    assert np.allclose(first, loop_reference(toy_kernel_fn(x).ntk, mols, mols), rtol=1e-12)
    with pytest.raises(ValueError, match="different computation"):
        D.molecular_kernel_fn(counting, x * 2, mols, get="ntk", block_atoms=4, block_store=store, tile_size=2)
    with pytest.raises(ValueError, match="needs block_atoms"):
        D.molecular_kernel_fn(counting, x, mols, block_store=store)
    with pytest.raises(ValueError, match="block_atoms"):
        D.molecular_kernel_fn(counting, x, mols, block_atoms=0)
