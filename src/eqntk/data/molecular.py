"""Molecular kernels from atom-environment kernels: ``K(M, M') = Σ_{i∈M} Σ_{j∈M'} k(a_i, a'_j)``.

A molecule's energy is modelled as a sum of atomic terms, so its kernel is the
sum of the pairwise kernels of its atoms' environments. This is
invariant to the order of the atoms and, with a rotation-invariant atom kernel
(e.g. an SO(3) network ending in ``SO3Pool``), to rotating each molecule.
Optionally only atoms of the same element are compared
(``k(a_i, a'_j) · δ(Z_i, Z'_j)``), which also makes the computation cheaper.

Everything is segment sums (sparse indicator products in NumPy,
``jax.ops.segment_sum`` for JAX arrays); there is no Python loop over molecules.
"""

from __future__ import annotations

import collections
import math
import os
import sys
from typing import Optional

import numpy as np
import scipy.sparse

from ..core.checks import check_int

from .molecules import MoleculeSet

__all__ = ["segment_sum_gram", "molecular_kernel", "molecular_kernel_fn", "landmark_atoms", "atoms_as_molecules"]


def _indicator(segments: np.ndarray, n_segments: int) -> scipy.sparse.csr_matrix:
    n = segments.shape[0]
    return scipy.sparse.csr_matrix((np.ones(n), (segments, np.arange(n))), shape=(n_segments, n))


def segment_sum_gram(atom_gram, segments1, n_segments1: int, segments2=None, n_segments2: Optional[int] = None):
    """Sum a Gram matrix over row and column segments.

    Args:
        atom_gram: (n1, n2) array (NumPy or JAX).
        segments1: (n1,) segment id of each row (any order; ids in ``[0, n_segments1)``).
        n_segments1: number of row segments.
        segments2, n_segments2: the same for the columns (default: those of the rows).

    Returns:
        (n_segments1, n_segments2) array, ``out[a, b] = Σ_{seg1(i)=a, seg2(j)=b} atom_gram[i, j]``;
        a JAX array for JAX input (jit-compatible), else float64 NumPy.
    """
    if segments2 is None:
        segments2, n_segments2 = segments1, n_segments1
    s1, s2 = np.asarray(segments1), np.asarray(segments2)
    shape = tuple(getattr(atom_gram, "shape", np.shape(atom_gram)))
    if len(shape) != 2 or shape != (s1.shape[0], s2.shape[0]):
        raise ValueError(f"atom Gram matrix must have shape (n_atoms1, n_atoms2) = ({s1.shape[0]}, {s2.shape[0]}), "
                         f"got {shape}")
    for s, n, name in ((s1, n_segments1, "segments1"), (s2, n_segments2, "segments2")):
        if s.size and (s.min() < 0 or s.max() >= n):
            raise ValueError(f"{name} must lie in [0, {n}), got [{s.min()}, {s.max()}]")
    if _is_jax(atom_gram):
        import jax

        k = jax.ops.segment_sum(atom_gram, s1, num_segments=n_segments1)
        return jax.ops.segment_sum(k.T, s2, num_segments=n_segments2).T
    k = np.asarray(atom_gram, dtype=np.float64)
    return np.asarray(_indicator(s2, n_segments2) @ (_indicator(s1, n_segments1) @ k).T).T


def _is_jax(x) -> bool:
    try:
        import jax

        return isinstance(x, jax.Array)
    except ImportError:  # pragma: no cover
        return False


def molecular_kernel(atom_gram, molecules1: MoleculeSet, molecules2: Optional[MoleculeSet] = None, *,
                     same_element: bool = False):
    """Molecular Gram matrix ``(n_mol1, n_mol2)`` from an atom-environment Gram matrix.

    Args:
        atom_gram: (n_atoms1, n_atoms2) kernel between the atoms of ``molecules1`` and
            ``molecules2`` (in their flat atom order), NumPy or JAX.
        molecules1, molecules2: the molecule sets (``molecules2 = molecules1`` when omitted).
        same_element: only sum pairs of atoms of the same element.

    Returns:
        ``K[a, b] = Σ_{i ∈ a} Σ_{j ∈ b} atom_gram[i, j] (· δ(Z_i, Z_j))``.
    """
    m2 = molecules1 if molecules2 is None else molecules2
    k = atom_gram
    if same_element:
        mask = molecules1.Z[:, None] == m2.Z[None, :]
        k = k * mask if _is_jax(k) else np.asarray(k, dtype=np.float64) * mask
    return segment_sum_gram(k, molecules1.molecule_index, len(molecules1), m2.molecule_index, len(m2))


def molecular_kernel_fn(kernel_fn, x1, molecules1: MoleculeSet, x2=None, molecules2: Optional[MoleculeSet] = None,
                        *, get="nngp", same_element: bool = False, block_atoms: Optional[int] = None,
                        block_store: Optional[str] = None, progress: Optional[bool] = None, **kernel_kwargs):
    """Molecular kernel of a network: evaluate ``kernel_fn`` on atom environments, then segment-sum.

    Args:
        kernel_fn: an eqntk (or neural-tangents style) ``kernel_fn(x1, x2, get)`` returning
            invariant ``(N1, N2)`` kernels, e.g. of ``S2ConvSO3 → Erf → SO3Pool → Dense``.
        x1: (n_atoms1, L², C) environments of ``molecules1`` (:func:`atomic_environments`).
        molecules1: their molecules.
        x2, molecules2: the second set (default: the first; the symmetric Gram is then
            evaluated once).
        get: ``'nngp'``, ``'ntk'``, a tuple of them, or ``None`` (both), as for ``kernel_fn``.
        same_element: compare only atoms of the same element; the atom kernel is then
            evaluated per element block only (Σ_e n_e n'_e pairs instead of n n').
        block_atoms: evaluate the atom kernel in blocks of at most this many atoms per side and
            segment-sum each block as soon as it is computed, so the atom Gram matrix is never
            held whole (host memory ``O(n_mol1 · n_mol2 + block_atoms²)`` instead of
            ``O(n_atoms1 · n_atoms2)``: the H–H block of 5,000 QM9 molecules alone is 45,000² atoms).
            With ``tile_size`` in ``kernel_kwargs`` every block is padded to a multiple of it, so
            one compilation serves all blocks. ``None``: one block per element (or in all).
        block_store: a directory (needs ``block_atoms``) where each finished block's molecular
            contribution is saved; re-running the same computation resumes from them, and a
            store made for different inputs or settings is refused (:class:`~eqntk.core.store.TileStore`).
        progress: with ``block_atoms``, a progress bar over the blocks (default: when there are
            ≥ 8 and stderr is a terminal; an eqntk ``kernel_fn``'s own bar is then switched off);
            without, passed on to ``kernel_fn``.
        kernel_kwargs: passed to ``kernel_fn`` (``memory_budget``, ``tile_size``, …).

    Returns:
        the ``(n_mol1, n_mol2)`` molecular kernel(s) as float64 NumPy arrays: an array for a
        single ``get``, else a named tuple in the order of ``get`` (``nngp, ntk`` for ``None``).
    """
    sym = x2 is None
    m2 = molecules1 if molecules2 is None else molecules2
    if sym and molecules2 is not None:
        raise ValueError("molecules2 given without x2")
    if not sym and molecules2 is None:
        raise ValueError("x2 given without molecules2")
    for x, m, name in ((x1, molecules1, "x1"), (x2 if not sym else x1, m2, "x2")):
        if np.shape(x)[0] != m.n_atoms_total:
            raise ValueError(f"{name} has {np.shape(x)[0]} environments but its molecules have "
                             f"{m.n_atoms_total} atoms")

    if block_store is not None and block_atoms is None:
        raise ValueError("block_store needs block_atoms (the store holds finished blocks)")
    if block_atoms is not None:
        block_atoms = check_int("molecular_kernel_fn", "block_atoms", block_atoms)
    return _blocked(kernel_fn, np.asarray(x1), molecules1, None if sym else np.asarray(x2), m2, get, same_element,
                    block_atoms, block_store, progress, kernel_kwargs)


def _blocks(n: int, block: int, multiple: int) -> tuple[list, int]:
    """Balanced ``[start, stop)`` ranges of at most ``block`` (rounded up to ``multiple``) items, and their size."""
    size = multiple * math.ceil(min(block, n) / multiple)
    k = math.ceil(n / size)
    size = multiple * math.ceil(math.ceil(n / k) / multiple)
    return [(a, min(a + size, n)) for a in range(0, n, size)], size


def _pad(x, size):
    if x.shape[0] == size:
        return x
    return np.concatenate([x, np.broadcast_to(x[:1], (size - x.shape[0],) + x.shape[1:])])


def _blocked(kernel_fn, x1, mol1, x2, mol2, get, same_element, block, store, progress, kwargs):
    """Molecular Gram(s) from atom blocks (one per element, or in all, when ``block`` is None),
    each segment-summed to molecules as soon as it is computed."""
    import jax

    from ..core.driver import run_shared
    from ..core.layers import KernelFn
    from ..core.store import TileStore, fingerprint_arrays

    sym = x2 is None
    seg1, seg2, n1, n2 = mol1.molecule_index, mol2.molecule_index, len(mol1), len(mol2)
    kinds = (get,) if isinstance(get, str) else (("nngp", "ntk") if get is None else tuple(get))
    blocked = block is not None
    multiple = int(kwargs.get("tile_size") or 1) if blocked else 1
    if not blocked and progress is not None:
        kwargs = dict(kwargs, progress=progress)  # one call per element: kernel_fn's own bar
    elif blocked and isinstance(kernel_fn, KernelFn):
        kwargs = dict(kwargs, progress=False)  # one bar, over the blocks
    Z1, Z2 = mol1.Z, mol2.Z
    groups = [(int(e), np.nonzero(Z1 == e)[0], np.nonzero(Z2 == e)[0]) for e in np.intersect1d(Z1, Z2)] \
        if same_element else [(None, np.arange(len(seg1)), np.arange(len(seg2)))]
    if not groups:
        raise ValueError("the two molecule sets share no element: with same_element=True the kernel is zero")
    network_id = None
    if store is not None:
        from .. import __version__
        from ..core.fingerprint import Unfingerprintable, fingerprint

        try:
            network_id = kernel_fn.fingerprint() if isinstance(kernel_fn, KernelFn) else fingerprint(kernel_fn)
        except Unfingerprintable as err:
            raise ValueError(f"cannot identify kernel_fn for block_store: {err}; pass an eqntk kernel_fn "
                             "(whose layers are fingerprinted) or run without block_store") from None
    plans = []  # per element block: its store and its jobs (a, b) → (atoms of a, atoms of b, sizes)
    for e, i1, i2 in groups:
        r1, size1 = _blocks(len(i1), block or len(i1), multiple)
        r2, size2 = (r1, size1) if sym else _blocks(len(i2), block or len(i2), multiple)
        sub = None
        if store is not None:
            sub = TileStore(os.path.join(store, "all" if e is None else f"Z{e}"), {
                "kernel_fn": getattr(kernel_fn, "name", repr(kernel_fn)), "fingerprint": network_id,
                "eqntk": __version__, "outputs": list(kinds),
                "x1": fingerprint_arrays(x1[i1], seg1[i1]),
                "x2": "x1" if sym else fingerprint_arrays(x2[i2], seg2[i2]),
                "blocks": [size1, size2], "kernel_kwargs": repr(sorted(kwargs.items())),
                "same_element": bool(same_element)})
        jobs = {(a, b): (i1[slice(*ra)], (i1 if sym else i2)[slice(*rb)], size1, size2)
                for a, ra in enumerate(r1) for b, rb in enumerate(r2) if not (sym and b < a)}
        plans.append((sub, jobs))
    if store is not None and jax.process_count() > 1 and isinstance(kernel_fn, KernelFn):
        kwargs = dict(kwargs, devices=jax.local_devices())  # the processes divide the blocks (run_shared)
    total = {k: np.zeros((n1, n2)) for k in kinds}
    bar = None
    n_jobs = sum(len(jobs) for _, jobs in plans)
    if blocked and (progress or (progress is None and n_jobs >= 8 and sys.stderr.isatty())):
        from tqdm.auto import tqdm

        bar = tqdm(total=n_jobs, desc="molecular kernel blocks", unit="block")
    for sub, jobs in plans:
        def compute(batch):
            """Each block's molecular contributions, ``[(n_mol_a, n_mol_b) per kind]``."""
            (a, b), = batch
            ia, ib, size1, size2 = jobs[(a, b)]
            sa, sb = seg1[ia], (seg1 if sym else seg2)[ib]
            lo_a, lo_b = int(sa.min()), int(sb.min())
            xa = _pad(x1[ia], size1)
            xb = None if (sym and a == b) else _pad((x1 if sym else x2)[ib], size2)
            res = kernel_fn(xa, xb, kinds, **kwargs)
            out = []
            for k in kinds:
                g = np.asarray(getattr(res, k), dtype=np.float64)[: ia.size, : ib.size]
                out.append(segment_sum_gram(g, sa - lo_a, int(sa.max()) - lo_a + 1, sb - lo_b, int(sb.max()) - lo_b + 1))
            return [out]

        def place(a, b, saved):
            ia, ib, _, _ = jobs[(a, b)]
            lo_a, lo_b = int(seg1[ia].min()), int((seg1 if sym else seg2)[ib].min())
            for k, r in zip(kinds, saved):
                total[k][lo_a:lo_a + r.shape[0], lo_b:lo_b + r.shape[1]] += r
                if sym and a != b:
                    total[k][lo_b:lo_b + r.shape[1], lo_a:lo_a + r.shape[0]] += r.T
            if bar is not None:
                bar.update(1)

        if sub is None:
            for key in jobs:
                place(*key, compute([key])[0])
        else:  # finished blocks read back; the rest claimed, so processes sharing the store divide them
            run_shared(list(jobs), sub, len(kinds), compute, place)
    if bar is not None:
        bar.close()
    if isinstance(get, str):
        return total[get]
    return collections.namedtuple("Kernel", kinds)(*(total[k] for k in kinds))


def landmark_atoms(molecules: MoleculeSet, m: int, *, seed: int = 0) -> np.ndarray:
    """``(m,)`` indices (flat atom order, ascending) of ``m`` landmark atoms drawn from ``molecules``.

    Drawn at random without replacement, stratified by element: each element first gets
    ``min(n_e, ⌈m / (4 E)⌉)`` landmarks (``E`` elements, ``n_e`` atoms of element ``e``), so that
    rare elements (QM9's F) are represented, and the rest is shared in proportion to the atoms
    left (largest remainders). With ``same_element`` molecular kernels an element without
    landmarks could not be predicted at all. ``m`` may not exceed the number of atoms.
    """
    m = check_int("landmark_atoms", "m", m)
    n = molecules.n_atoms_total
    if not 1 <= m <= n:
        raise ValueError(f"landmark_atoms: m must be in [1, {n}] (the atoms of the molecules), got {m}")
    elements, counts = np.unique(molecules.Z, return_counts=True)
    take = np.minimum(counts, math.ceil(m / (4 * len(elements))))
    if take.sum() > m:  # fewer landmarks than the floors: the floors shrink, largest counts first
        take = np.zeros_like(counts)
        for i in np.argsort(-counts, kind="stable")[np.arange(m) % len(counts)]:
            take[i] += 1
        take = np.minimum(take, counts)
    while take.sum() < m:
        left = counts - take
        share = (m - take.sum()) * left / left.sum()
        add = np.minimum(np.floor(share).astype(np.int64), left)
        if add.sum() == 0:  # hand out the remainders one by one
            add[int(np.argmax(np.where(left > 0, share, -1.0)))] = 1
        take = take + add
    rng = np.random.default_rng(seed)
    picks = [rng.choice(np.nonzero(molecules.Z == e)[0], int(k), replace=False) for e, k in zip(elements, take)]
    return np.sort(np.concatenate(picks))


def atoms_as_molecules(molecules: MoleculeSet, atoms) -> MoleculeSet:
    """The atoms ``atoms`` (flat indices) of ``molecules``, each as a one-atom molecule.

    Its molecular kernel against a molecule set is the molecule × landmark kernel of
    :mod:`eqntk.landmarks`: ``K[a, j] = Σ_{i∈a} k(x_i, z_j) (· δ(Z_i, Z_j))``. Its ``ids`` are
    the atoms' flat indices.
    """
    atoms = np.asarray(atoms)
    if atoms.ndim != 1 or atoms.size == 0 or not np.issubdtype(atoms.dtype, np.integer):
        raise ValueError(f"atoms must be a non-empty 1-d integer array, got {atoms.dtype} {atoms.shape}")
    if atoms.min() < 0 or atoms.max() >= molecules.n_atoms_total:
        raise IndexError(f"atom index out of range for {molecules.n_atoms_total} atoms")
    return MoleculeSet(molecules.Z[atoms], molecules.R[atoms], np.arange(atoms.size + 1), ids=atoms.astype(np.int64))
