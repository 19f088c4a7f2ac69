"""A typed container for a set of molecules, stored flat.

Molecules are stored the way the data files store them (see the shared data
README): the atoms of all molecules concatenated in molecule order, with
``offsets`` marking where each molecule starts:

* ``Z``: (n_atoms,) int64 atomic numbers,
* ``R``: (n_atoms, 3) float64 positions in Å,
* ``offsets``: (n_molecules + 1,) int64, molecule ``i`` owns atoms
  ``offsets[i]:offsets[i+1]`` (``offsets = [0, cumsum(N)]``),
* ``targets``: per-molecule float64 arrays (n_molecules,), with their units in ``units``,
* ``ids``: (n_molecules,) int64 identifiers (QM9: the gdb index),
* ``smiles``: optional (n_molecules,) strings.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Mapping, Optional, Sequence, Union

import numpy as np

from .splits import split_indices
from .units import ENERGY_UNITS, convert_energy

__all__ = ["Molecule", "MoleculeSet", "load_molecules_npz"]

Index = Union[int, slice, Sequence[int], np.ndarray]


@dataclasses.dataclass(frozen=True)
class Molecule:
    """One molecule: ``Z`` (n,) atomic numbers, ``R`` (n, 3) Å, its targets and id."""

    Z: np.ndarray
    R: np.ndarray
    targets: Mapping[str, float]
    id: int
    smiles: Optional[str] = None

    def __len__(self) -> int:
        return int(self.Z.shape[0])


@dataclasses.dataclass(frozen=True, eq=False)
class MoleculeSet:
    """A set of molecules stored flat (see the module docstring for the fields and units).

    Construct it with :meth:`from_counts` (``N`` atoms per molecule) or
    :meth:`from_molecules` (a list of ``(Z, R)``); the constructor validates
    shapes, finiteness of ``R`` and non-empty molecules, and raises ``ValueError``
    with the reason otherwise.

    Indexing: ``ms[i]`` is a :class:`Molecule`; ``ms[slice]``, ``ms[int array]``
    and ``ms[bool mask]`` are a new :class:`MoleculeSet` (molecules in the given order).
    """

    Z: np.ndarray
    R: np.ndarray
    offsets: np.ndarray
    targets: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
    units: Mapping[str, str] = dataclasses.field(default_factory=dict)
    ids: Optional[np.ndarray] = None
    smiles: Optional[np.ndarray] = None

    # ---------------------------------------------------------------- construction
    def __post_init__(self):
        Z = np.asarray(self.Z)
        R = np.asarray(self.R, dtype=np.float64)
        off = np.asarray(self.offsets)
        if Z.ndim != 1:
            raise ValueError(f"Z must be a flat array of atomic numbers (n_atoms,), got shape {Z.shape}")
        if Z.size and (not np.issubdtype(Z.dtype, np.number) or np.any(Z != np.round(Z)) or np.any(Z < 1)):
            raise ValueError("Z must hold positive integer atomic numbers")
        Z = Z.astype(np.int64)
        if R.shape != (Z.shape[0], 3):
            raise ValueError(
                f"R must have shape (n_atoms, 3) = ({Z.shape[0]}, 3) to match Z, got {R.shape}"
            )
        if not np.all(np.isfinite(R)):
            bad = np.unique(np.nonzero(~np.all(np.isfinite(R), axis=1))[0])
            raise ValueError(f"R contains NaN or inf coordinates (atoms {bad[:10].tolist()}"
                             f"{' …' if bad.size > 10 else ''})")
        if off.ndim != 1 or off.size < 2 or not np.issubdtype(off.dtype, np.integer):
            raise ValueError(f"offsets must be an integer array (n_molecules + 1,) with n_molecules ≥ 1, "
                             f"got {off.dtype} array of shape {off.shape}")
        off = off.astype(np.int64)
        if off[0] != 0 or off[-1] != Z.shape[0]:
            raise ValueError(f"offsets must start at 0 and end at n_atoms = {Z.shape[0]}, "
                             f"got {off[0]} … {off[-1]} (the atom counts do not add up to the number of atoms)")
        if np.any(np.diff(off) < 1):
            i = int(np.nonzero(np.diff(off) < 1)[0][0])
            raise ValueError(f"molecule {i} has no atoms (offsets must be strictly increasing)")
        n = off.size - 1
        targets = {}
        for k, v in dict(self.targets).items():
            v = np.asarray(v, dtype=np.float64)
            if v.shape != (n,):
                raise ValueError(f"target {k!r} must have shape (n_molecules,) = ({n},), got {v.shape}")
            targets[k] = v
        ids = np.arange(n, dtype=np.int64) if self.ids is None else np.asarray(self.ids).astype(np.int64)
        if ids.shape != (n,):
            raise ValueError(f"ids must have shape ({n},), got {ids.shape}")
        smiles = None if self.smiles is None else np.asarray(self.smiles, dtype=str)
        if smiles is not None and smiles.shape != (n,):
            raise ValueError(f"smiles must have shape ({n},), got {smiles.shape}")
        for name, val in (("Z", Z), ("R", R), ("offsets", off), ("targets", targets), ("ids", ids),
                          ("smiles", smiles), ("units", dict(self.units))):
            object.__setattr__(self, name, val)
        for a in (Z, R, off, ids):
            a.setflags(write=False)

    @classmethod
    def from_counts(cls, N, Z, R, targets: Optional[Mapping[str, np.ndarray]] = None,
                    units: Optional[Mapping[str, str]] = None, ids=None, smiles=None) -> "MoleculeSet":
        """From the flat file layout: ``N`` (n_molecules,) atom counts, ``Z`` and ``R`` concatenated."""
        N = np.asarray(N)
        if N.ndim != 1 or not np.issubdtype(N.dtype, np.integer):
            raise ValueError(f"N must be a 1-d integer array of atom counts, got {N.dtype} {N.shape}")
        if np.any(N < 1):
            raise ValueError(f"molecule {int(np.nonzero(N < 1)[0][0])} has {int(N[N < 1][0])} atoms")
        if int(N.sum()) != len(Z):
            raise ValueError(f"the atom counts N add up to {int(N.sum())} but Z has {len(Z)} atoms")
        off = np.concatenate([[0], np.cumsum(N.astype(np.int64))])
        return cls(Z, R, off, targets or {}, units or {}, ids, smiles)

    @classmethod
    def from_molecules(cls, molecules: Sequence, targets=None, units=None, ids=None, smiles=None) -> "MoleculeSet":
        """From a list of ``(Z, R)`` pairs (``Z`` (n,), ``R`` (n, 3) Å)."""
        if len(molecules) == 0:
            raise ValueError("from_molecules: no molecules given")
        Zs, Rs = [], []
        for i, (z, r) in enumerate(molecules):
            z, r = np.atleast_1d(np.asarray(z)), np.asarray(r, dtype=np.float64)
            if r.ndim == 1 and r.shape == (3,) and z.shape == (1,):
                r = r[None]  # one atom given as a single position
            if r.ndim != 2 or r.shape[1] != 3:
                raise ValueError(f"molecule {i}: positions R must have shape (n_atoms, 3) in Å, got shape {r.shape}")
            if z.shape[0] != r.shape[0]:
                raise ValueError(f"molecule {i}: {z.shape[0]} atomic numbers but {r.shape[0]} positions")
            Zs.append(z)
            Rs.append(r)
        N = np.array([len(z) for z in Zs], dtype=np.int64)
        return cls.from_counts(N, np.concatenate(Zs), np.concatenate(Rs), targets, units, ids, smiles)

    # ---------------------------------------------------------------- shape
    def __len__(self) -> int:
        return int(self.offsets.size - 1)

    @property
    def n_molecules(self) -> int:
        return len(self)

    @property
    def n_atoms_total(self) -> int:
        return int(self.Z.shape[0])

    @property
    def counts(self) -> np.ndarray:
        """(n_molecules,) number of atoms per molecule."""
        return np.diff(self.offsets)

    @property
    def molecule_index(self) -> np.ndarray:
        """(n_atoms,) index of the molecule each atom belongs to (segment ids)."""
        return np.repeat(np.arange(len(self)), self.counts)

    def __repr__(self) -> str:
        return (f"MoleculeSet({len(self)} molecules, {self.n_atoms_total} atoms, "
                f"elements {sorted(set(self.Z.tolist()))}, targets {sorted(self.targets)})")

    # ---------------------------------------------------------------- indexing
    def __getitem__(self, index: Index):
        if isinstance(index, (int, np.integer)):
            i = int(index)
            if not -len(self) <= i < len(self):
                raise IndexError(f"molecule index {i} out of range for {len(self)} molecules")
            i %= len(self)
            a, b = self.offsets[i], self.offsets[i + 1]
            return Molecule(self.Z[a:b].copy(), self.R[a:b].copy(),
                            {k: float(v[i]) for k, v in self.targets.items()}, int(self.ids[i]),
                            None if self.smiles is None else str(self.smiles[i]))
        return self.subset(index)

    def subset(self, index: Index) -> "MoleculeSet":
        """The molecules selected by a slice, an integer array or a boolean mask, in that order."""
        idx = np.arange(len(self))[index] if isinstance(index, slice) else np.asarray(index)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise ValueError(f"boolean mask must have shape ({len(self)},), got {idx.shape}")
            idx = np.nonzero(idx)[0]
        if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
            raise ValueError(f"index must be a slice, a 1-d integer array or a boolean mask, got {idx.dtype} "
                             f"{idx.shape}")
        if idx.size == 0:
            raise ValueError("the selection is empty")
        if np.any(idx >= len(self)) or np.any(idx < -len(self)):
            raise IndexError(f"molecule index out of range for {len(self)} molecules")
        idx = idx % len(self)
        counts = self.counts[idx]
        starts = self.offsets[idx]
        atom = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts) + np.arange(counts.sum())
        return MoleculeSet(self.Z[atom], self.R[atom], np.concatenate([[0], np.cumsum(counts)]),
                           {k: v[idx] for k, v in self.targets.items()}, self.units, self.ids[idx],
                           None if self.smiles is None else self.smiles[idx])

    def split(self, sizes: Sequence, seed: int = 0) -> tuple["MoleculeSet", ...]:
        """Seeded disjoint random subsets (e.g. train/validation/test); see :func:`split_indices`."""
        return tuple(self.subset(i) for i in split_indices(len(self), sizes, seed))

    # ---------------------------------------------------------------- targets
    def target(self, name: str, unit: Optional[str] = None) -> np.ndarray:
        """Target ``name`` (n_molecules,) float64, converted to energy ``unit`` if given (``'eV'``, …)."""
        if name not in self.targets:
            raise KeyError(f"no target {name!r}; available: {sorted(self.targets)}")
        v = self.targets[name]
        if unit is None:
            return v.copy()
        src = self.units.get(name)
        if src not in ENERGY_UNITS:
            raise ValueError(f"target {name!r} is in {src!r}, not an energy: it cannot be converted to {unit!r}")
        return convert_energy(v, src, unit)

    def with_targets(self, targets: Mapping[str, np.ndarray], units: Optional[Mapping[str, str]] = None
                     ) -> "MoleculeSet":
        """A copy with extra (or replaced) targets."""
        return dataclasses.replace(self, targets={**self.targets, **targets}, units={**self.units, **(units or {})})

    # ---------------------------------------------------------------- geometry
    def transformed(self, rotations=None, translations=None, atom_permutation: Optional[np.ndarray] = None
                    ) -> "MoleculeSet":
        """Rigid motions and atom reordering, molecule by molecule.

        Args:
            rotations: (n_molecules, 3, 3) or (3, 3) rotation matrices: ``r ↦ Q r`` per molecule.
            translations: (n_molecules, 3) or (3,) Å, added after rotating.
            atom_permutation: (n_atoms,) new order of the atoms; it must keep each atom
                inside its molecule (see :meth:`random_atom_permutation`).
        """
        R = self.R
        mol = self.molecule_index
        if rotations is not None:
            Q = np.broadcast_to(np.asarray(rotations, float), (len(self), 3, 3))
            R = np.einsum("nij,nj->ni", Q[mol], R)
        if translations is not None:
            R = R + np.broadcast_to(np.asarray(translations, float), (len(self), 3))[mol]
        Z = self.Z
        if atom_permutation is not None:
            p = np.asarray(atom_permutation)
            if p.shape != Z.shape or not np.array_equal(np.sort(p), np.arange(Z.size)):
                raise ValueError("atom_permutation must be a permutation of range(n_atoms)")
            if not np.array_equal(mol[p], mol):
                raise ValueError("atom_permutation moves atoms between molecules")
            Z, R = Z[p], R[p]
        return dataclasses.replace(self, Z=Z, R=R)

    def random_atom_permutation(self, seed: int = 0) -> np.ndarray:
        """(n_atoms,) a random reordering of the atoms within each molecule."""
        rng = np.random.default_rng(seed)
        key = self.molecule_index + rng.random(self.n_atoms_total)  # molecule index + [0, 1)
        return np.argsort(key, kind="stable")

    # ---------------------------------------------------------------- io
    def save_npz(self, path: Union[str, os.PathLike], float32_positions: bool = False) -> None:
        """Write the flat file layout (``N``, ``Z``, ``R``, ``id``, targets, ``smiles``) compressed."""
        arrays = dict(N=self.counts.astype(np.int32), Z=self.Z.astype(np.int8),
                      R=self.R.astype(np.float32 if float32_positions else np.float64), id=self.ids)
        arrays.update(self.targets)
        if self.smiles is not None:
            arrays["smiles"] = self.smiles
        if self.units:
            arrays["_units"] = np.array([f"{k}={v}" for k, v in self.units.items()])
        np.savez_compressed(path, **arrays)


_LAYOUT_KEYS = {"N", "Z", "R", "id", "smiles", "_units"}


def load_molecules_npz(path, units: Optional[Mapping[str, str]] = None,
                       target_keys: Optional[Sequence[str]] = None) -> MoleculeSet:
    """Read a molecule set in the flat npz layout of the shared data README.

    Keys ``N`` (atoms per molecule), ``Z`` and ``R`` (Å, concatenated) are required;
    ``id`` and ``smiles`` are optional; every other 1-d array of length n_molecules
    is a target (or only ``target_keys``). ``units`` names the target units
    (stored ones in ``_units`` are used otherwise).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path}")
    with np.load(path, allow_pickle=False) as f:
        missing = {"N", "Z", "R"} - set(f.files)
        if missing:
            raise ValueError(f"{path}: not a flat molecule file, missing key(s) {sorted(missing)} "
                             f"(found {sorted(f.files)}); expected N (atoms per molecule), Z and R concatenated")
        N = f["N"]
        n = N.shape[0]
        keys = [k for k in f.files if k not in _LAYOUT_KEYS and f[k].shape == (n,)
                and np.issubdtype(f[k].dtype, np.number)] if target_keys is None else list(target_keys)
        for k in keys:
            if k not in f.files:
                raise ValueError(f"{path}: no target {k!r}; keys: {sorted(f.files)}")
        stored = dict(s.split("=", 1) for s in f["_units"]) if "_units" in f.files else {}
        return MoleculeSet.from_counts(
            N.astype(np.int64), f["Z"], f["R"].astype(np.float64), {k: f[k] for k in keys},
            {**stored, **(units or {})}, f["id"] if "id" in f.files else None,
            f["smiles"] if "smiles" in f.files else None)
