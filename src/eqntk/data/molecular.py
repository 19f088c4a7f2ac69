"""Molecular kernels from atom-environment kernels: ``K(M, M') = Σ_{i∈M} Σ_{j∈M'} k(a_i, a'_j)``.

A molecule's energy is modelled as a sum of atomic terms, so its kernel is the
sum of the pairwise kernels of its atoms' environments (DESIGN §3). This is
invariant to the order of the atoms and, with a rotation-invariant atom kernel
(e.g. an SO(3) network ending in ``SO3Pool``), to rotating each molecule.
Optionally only atoms of the same element are compared
(``k(a_i, a'_j) · δ(Z_i, Z'_j)``), which also makes the computation cheaper.

Everything is segment sums (sparse indicator products in NumPy,
``jax.ops.segment_sum`` for JAX arrays); there is no Python loop over molecules.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import scipy.sparse

from .molecules import MoleculeSet

__all__ = ["segment_sum_gram", "molecular_kernel", "molecular_kernel_fn"]


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
                        *, get="nngp", same_element: bool = False, **kernel_kwargs):
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
        kernel_kwargs: passed to ``kernel_fn`` (``memory_budget``, ``tile_size``, …).

    Returns:
        the ``(n_mol1, n_mol2)`` molecular kernel(s), in the structure ``kernel_fn`` returns
        for ``get`` (an array, or a named tuple of arrays), as float64 NumPy arrays.
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

    def reduce(result, s1, s2):
        if hasattr(result, "_fields"):
            return type(result)(*(reduce(r, s1, s2) for r in result))
        return segment_sum_gram(np.asarray(result, dtype=np.float64), s1, len(molecules1), s2, len(m2))

    seg1, seg2 = molecules1.molecule_index, m2.molecule_index
    if not same_element:
        res = kernel_fn(x1, None if sym else x2, get, **kernel_kwargs)
        return reduce(res, seg1, seg2)
    total = None
    for e in np.intersect1d(molecules1.Z, m2.Z):
        i1 = np.nonzero(molecules1.Z == e)[0]
        i2 = i1 if sym else np.nonzero(m2.Z == e)[0]
        res = kernel_fn(np.asarray(x1)[i1], None if sym else np.asarray(x2)[i2], get, **kernel_kwargs)
        part = reduce(res, seg1[i1], seg2[i2])
        total = part if total is None else _add(total, part)
    if total is None:
        raise ValueError("the two molecule sets share no element: with same_element=True the kernel is zero")
    return total


def _add(a, b):
    if hasattr(a, "_fields"):
        return type(a)(*(_add(x, y) for x, y in zip(a, b)))
    return a + b
