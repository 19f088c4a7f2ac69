"""Energy units used by the data layer.

QM9 stores energies in Hartree. Conversions use CODATA 2018:
1 Ha = 27.211386245988 eV = 627.5094740631 kcal/mol.
"""

from __future__ import annotations

import numpy as np

__all__ = ["HARTREE_IN_EV", "HARTREE_IN_KCAL_MOL", "ENERGY_UNITS", "convert_energy"]

HARTREE_IN_EV = 27.211386245988
HARTREE_IN_KCAL_MOL = 627.5094740631

#: size of one unit, in Hartree
ENERGY_UNITS = {
    "Ha": 1.0,
    "hartree": 1.0,
    "eV": 1.0 / HARTREE_IN_EV,
    "meV": 1e-3 / HARTREE_IN_EV,
    "kcal/mol": 1.0 / HARTREE_IN_KCAL_MOL,
}


def convert_energy(values, from_unit: str, to_unit: str) -> np.ndarray:
    """Convert energies between ``'Ha'``, ``'eV'``, ``'meV'`` and ``'kcal/mol'``.

    Args:
        values: array-like of energies in ``from_unit``.
        from_unit, to_unit: unit names (keys of :data:`ENERGY_UNITS`).

    Returns:
        float64 array of the same shape, in ``to_unit``.
    """
    for u in (from_unit, to_unit):
        if u not in ENERGY_UNITS:
            raise ValueError(f"unknown energy unit {u!r}; known units: {sorted(ENERGY_UNITS)}")
    return np.asarray(values, dtype=np.float64) * (ENERGY_UNITS[from_unit] / ENERGY_UNITS[to_unit])
