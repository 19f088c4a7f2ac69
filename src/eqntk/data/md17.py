"""MD17-style molecular dynamics data: one molecule, many conformations, energies and forces.

``load_md17(path=None)`` reads an ``.npz`` with ``z (n,)`` atomic numbers, ``R (B, n, 3)``
positions in Å, ``F (B, n, 3)`` forces and (optionally) ``E (B,)`` energies, checks it and returns
the arrays. Without a path it loads the subset embedded in eqntk, ``md17_ethanol_500.npz``: 500
conformations of ethanol from the original MD17 (energies in kcal/mol, forces in kcal/mol/Å;
provenance and licence in ``README_md17.md`` next to this module).
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np

__all__ = ["load_md17", "default_md17_path"]

_FILE = "md17_ethanol_500.npz"


def default_md17_path() -> str:
    """Path of the MD17 ethanol subset shipped with eqntk (``md17_ethanol_500.npz``)."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), _FILE)


def load_md17(path: Optional[str] = None) -> dict:
    """``{'z' (n,), 'R' (B, n, 3), 'F' (B, n, 3)[, 'E' (B,)]}`` from an ``.npz`` (default: the embedded subset).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for missing keys, shapes
    that do not fit together, or non-finite values.
    """
    path = default_md17_path() if path is None else os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"md17: no data file {path!r}")
    with np.load(path) as d:
        missing = [k for k in ("z", "R", "F") if k not in d.files]
        if missing:
            raise ValueError(f"md17: {path} lacks {missing} (needs z (n_atoms,), R and F (n_conf, n_atoms, 3))")
        out = {"z": np.asarray(d["z"]).astype(int), "R": np.asarray(d["R"], np.float64),
               "F": np.asarray(d["F"], np.float64)}
        if "E" in d.files:
            out["E"] = np.asarray(d["E"], np.float64)
    z, R, F = out["z"], out["R"], out["F"]
    if z.ndim != 1 or R.ndim != 3 or R.shape[1:] != (z.size, 3) or F.shape != R.shape:
        raise ValueError(f"md17: shapes z {z.shape}, R {R.shape}, F {F.shape}: need (n,), (B, n, 3), (B, n, 3)")
    if "E" in out and out["E"].shape != R.shape[:1]:
        raise ValueError(f"md17: E has shape {out['E'].shape}, need ({R.shape[0]},), one per conformation")
    if not all(np.all(np.isfinite(v)) for v in out.values()):
        raise ValueError("md17: R, F and E must be finite")
    return out
