"""QM9: loaders (embedded subset, full set from ``qm9pack``, npz files) and atomization energies.

QM9 (Ramakrishnan, Dral, Rupp, von Lilienfeld, Sci. Data 1, 140022 (2014)):
130,831 small organic molecules (H, C, N, O, F; up to 9 heavy atoms) after
removing the 3,054 the authors flag as uncharacterised, with properties
computed at the B3LYP/6-31G(2df,p) level of theory.

Targets and units (keys as in the shared data README):

==========  ===================================  ==============
key         property                             unit
==========  ===================================  ==============
A, B, C     rotational constants                 GHz
mu          dipole moment                        Debye
alpha       isotropic polarizability             bohr³
homo, lumo  orbital energies                     Ha
gap         HOMO–LUMO gap                        Ha
r2          electronic spatial extent ⟨R²⟩       bohr²
zpve        zero-point vibrational energy        Ha
U0, U       internal energy at 0 K, 298.15 K     Ha
H, G        enthalpy, free energy at 298.15 K    Ha
Cv          heat capacity at 298.15 K            cal/(mol K)
==========  ===================================  ==============

Energies convert with ``MoleculeSet.target(name, unit='eV')`` (1 Ha = 27.211386 eV).
"""

from __future__ import annotations

import csv
import importlib.util
import os
from pathlib import Path
from typing import Mapping, Union

import numpy as np

from .elements import SYMBOLS, canonical_elements, check_elements
from .molecules import MoleculeSet, load_molecules_npz
from .units import convert_energy

__all__ = [
    "QM9_UNITS",
    "QM9_ATOMREF",
    "atomization_energy",
    "load_qm9",
    "read_qm9pack",
    "qm9pack_data_dir",
    "default_qm9_path",
]

QM9_UNITS: Mapping[str, str] = {
    "A": "GHz", "B": "GHz", "C": "GHz", "mu": "D", "alpha": "bohr^3",
    "homo": "Ha", "lumo": "Ha", "gap": "Ha", "r2": "bohr^2", "zpve": "Ha",
    "U0": "Ha", "U": "Ha", "H": "Ha", "G": "Ha", "Cv": "cal/(mol K)",
}

#: Free-atom reference values of QM9 at its own level of theory, B3LYP/6-31G(2df,p),
#: per element (atomic number) and property, in Hartree (Cv in cal/(mol K)).
#: Source: the "atomref" table published with QM9 — Ramakrishnan et al., Sci. Data 1,
#: 140022 (2014), figshare https://doi.org/10.6084/m9.figshare.1057643 (file atomref.txt).
#: The atomization energy of a molecule is its energy minus the sum of these over its atoms.
QM9_ATOMREF: Mapping[str, Mapping[int, float]] = {
    #         H            C             N             O             F
    "zpve": {1: 0.0, 6: 0.0, 7: 0.0, 8: 0.0, 9: 0.0},
    "U0": {1: -0.500273, 6: -37.846772, 7: -54.583861, 8: -75.064579, 9: -99.718730},
    "U": {1: -0.498857, 6: -37.845355, 7: -54.582445, 8: -75.063163, 9: -99.717314},
    "H": {1: -0.497912, 6: -37.844411, 7: -54.581501, 8: -75.062219, 9: -99.716370},
    "G": {1: -0.510927, 6: -37.861317, 7: -54.598897, 8: -75.079532, 9: -99.733544},
    "Cv": {1: 2.981, 6: 2.981, 7: 2.981, 8: 2.981, 9: 2.981},
}

# qm9pack CSV column → our key
_QM9PACK_COLUMNS = {
    "RotA_GHz": "A", "RotB_GHz": "B", "RotC_GHz": "C", "Dipole_debye": "mu",
    "Polarizability_bohr3": "alpha", "HOMO_au": "homo", "LUMO_au": "lumo",
    "HOMO_LUMO_gap_au": "gap", "R2_bohr2": "r2", "ZPVE_au": "zpve",
    "InternalEnergy_0K_au": "U0", "InternalEnergy_298K_au": "U",
    "Enthalphy_298K_au": "H", "GibbsFreeEnergy_298K_au": "G",
    "Heatcapacity_Cv_cal_mol_K": "Cv",
}
_QM9PACK_FILES = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")

_DEFAULT_FILE = "qm9_default_5k.npz"


def default_qm9_path() -> Path:
    """Path of the QM9 subset embedded in the package (see ``README_qm9_default.md`` next to it)."""
    return Path(__file__).with_name(_DEFAULT_FILE)


def atomization_energy(molecules: MoleculeSet, key: str = "U0", unit: str = "Ha") -> np.ndarray:
    """Atomization energy ``E_mol − Σ_atoms E_atom`` (n_molecules,) from QM9's atomref table.

    Args:
        molecules: a QM9-like set (elements H, C, N, O, F) with target ``key``.
        key: ``'U0'``, ``'U'``, ``'H'``, ``'G'`` or ``'zpve'`` (energies, stored in
            Ha) or ``'Cv'`` (cal/(mol K); ``unit`` is then ignored).
        unit: energy unit of the result, ``'Ha'``, ``'eV'``, ``'meV'`` or ``'kcal/mol'``.

    Atomization energies are negative for bound molecules (methane U0: −0.631066 Ha).
    """
    if key not in QM9_ATOMREF:
        raise ValueError(f"no QM9 atomic reference for {key!r}; available: {sorted(QM9_ATOMREF)}")
    ref = QM9_ATOMREF[key]
    check_elements(molecules.Z, tuple(ref), where="atomization_energy (QM9 atomrefs)")
    table = np.zeros(max(ref) + 1)
    for z, e in ref.items():
        table[z] = e
    per_atom = table[molecules.Z]
    atoms_sum = np.add.reduceat(per_atom, molecules.offsets[:-1])
    if key == "Cv":
        return molecules.target("Cv") - atoms_sum
    e_ha = convert_energy(molecules.target(key), molecules.units.get(key, "Ha"), "Ha") - atoms_sum
    return convert_energy(e_ha, "Ha", unit)


# ---------------------------------------------------------------------- qm9pack


def qm9pack_data_dir() -> Path:
    """Folder of the QM9 CSV files inside the installed ``qm9pack`` package.

    The package is located without importing it (its ``__init__`` needs pandas and
    ``pkg_resources``). Raises ``ImportError`` with the install hint when it is missing.
    """
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the full QM9 comes from the PyPI package qm9pack (MIT, ~100 MB): "
                          "pip install 'eqntk[qm9]'  (or: pip install qm9pack==1.0.3)")
    d = Path(list(spec.submodule_search_locations)[0]) / "data"
    missing = [f for f in _QM9PACK_FILES if not (d / f).is_file()]
    if missing:
        raise FileNotFoundError(f"qm9pack is installed at {d.parent} but lacks {missing}; "
                                "reinstall it: pip install --force-reinstall qm9pack==1.0.3")
    return d


def _parse_list(text: str) -> list[str]:
    return [t.strip().strip("'\"") for t in text.replace("[", " ").replace("]", " ").split(",") if t.strip()]


def read_qm9pack(data_dir: Union[str, os.PathLike, None] = None, files=_QM9PACK_FILES) -> MoleculeSet:
    """Read QM9 from qm9pack's CSV files (all 130,831 molecules by default; ~1 min).

    Args:
        data_dir: folder holding the CSV files (default: the installed qm9pack's).
        files: CSV file names to read, in order (qm9pack splits QM9 into three parts).

    Returns:
        a :class:`MoleculeSet` with ids = gdb index, SMILES, and the targets of
        :data:`QM9_UNITS` (energies in Hartree).
    """
    d = qm9pack_data_dir() if data_dir is None else Path(data_dir)
    zmap = {s: i for i, s in enumerate(SYMBOLS)}
    N, Z, R, ids, smiles = [], [], [], [], []
    targets = {k: [] for k in _QM9PACK_COLUMNS.values()}
    for name in files:
        path = d / name
        if not path.is_file():
            raise FileNotFoundError(f"no QM9 CSV file {path}")
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            need = {"Index", "SMILES", "N_atoms", "Elements", "XYZ_Ang", *_QM9PACK_COLUMNS}
            if reader.fieldnames is None or need - set(reader.fieldnames):
                raise ValueError(f"{path}: not a qm9pack CSV (missing columns "
                                 f"{sorted(need - set(reader.fieldnames or []))})")
            for row in reader:
                el = _parse_list(row["Elements"])
                xyz = np.array(_parse_list(row["XYZ_Ang"]), dtype=np.float64)
                n = int(row["N_atoms"])
                if len(el) != n or xyz.size != 3 * n:
                    raise ValueError(f"{path}: molecule {row['Index']} has N_atoms={n} but {len(el)} elements "
                                     f"and {xyz.size} coordinates")
                try:
                    Z.extend(zmap[e] for e in el)
                except KeyError as err:
                    raise ValueError(f"{path}: molecule {row['Index']}: unknown element {err}") from None
                N.append(n)
                R.append(xyz.reshape(n, 3))
                ids.append(int(row["Index"]))
                smiles.append(row["SMILES"])
                for col, key in _QM9PACK_COLUMNS.items():
                    targets[key].append(float(row[col]))
    if not N:
        raise ValueError(f"no molecules found in {d}")
    return MoleculeSet.from_counts(np.array(N), np.array(Z), np.concatenate(R), targets, dict(QM9_UNITS),
                                   np.array(ids), np.array(smiles))


# ---------------------------------------------------------------------- entry point


def load_qm9(source: Union[str, os.PathLike, None] = None, *, elements=None) -> MoleculeSet:
    """Load QM9 molecules.

    Args:
        source: ``None`` — the subset embedded in eqntk (5,000 molecules, see
            ``README_qm9_default.md``); ``'qm9pack'`` — the full QM9 (130,831
            molecules) from the installed ``qm9pack`` package (``pip install
            'eqntk[qm9]'``); a path to an ``.npz`` file in the flat layout of the
            shared data README (``N``, ``Z``, ``R`` Å, targets in Hartree), or to a
            folder of qm9pack CSV files.
        elements: if given, raise ``ValueError`` when a molecule holds an element
            outside this set (atomic numbers or symbols).

    Returns:
        a :class:`MoleculeSet`; energies in Hartree (``.target('U0', 'eV')`` converts),
        atomization energies via :func:`atomization_energy`.
    """
    if source is None:
        path = default_qm9_path()
        if not path.is_file():
            raise FileNotFoundError(f"the embedded QM9 subset {path} is missing from this installation "
                                    "(package data not installed?); reinstall eqntk")
        ms = load_molecules_npz(path, units=QM9_UNITS)
    elif isinstance(source, str) and source == "qm9pack":
        ms = read_qm9pack()
    else:
        p = Path(source)
        if p.is_dir():
            ms = read_qm9pack(p)
        elif p.suffix == ".npz":
            ms = load_molecules_npz(p, units={k: v for k, v in QM9_UNITS.items()})
        elif not p.exists():
            raise FileNotFoundError(f"no such QM9 source: {p} (use None, 'qm9pack', an .npz file or a folder of "
                                    "qm9pack CSV files)")
        else:
            raise ValueError(f"unsupported QM9 source {p}: expected an .npz file or a folder of qm9pack CSV files")
    if elements is not None:
        check_elements(ms.Z, canonical_elements(elements), where=f"load_qm9({source!r})")
    return ms
