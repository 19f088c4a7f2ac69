"""Chemical elements: symbols and the validation of atomic numbers against an element set."""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

__all__ = ["SYMBOLS", "QM9_ELEMENTS", "symbol", "atomic_number", "canonical_elements", "check_elements"]

#: element symbols indexed by atomic number (index 0 unused)
SYMBOLS = (
    "X H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se "
    "Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe"
).split()

#: the elements of QM9 (H, C, N, O, F): the default element set of the data layer
QM9_ELEMENTS = (1, 6, 7, 8, 9)


def symbol(z: int) -> str:
    """Element symbol of atomic number ``z`` (``'Z=<z>'`` beyond Xe)."""
    z = int(z)
    return SYMBOLS[z] if 0 < z < len(SYMBOLS) else f"Z={z}"


def atomic_number(element) -> int:
    """Atomic number of an element given as a symbol (``'C'``) or a number (``6``)."""
    if isinstance(element, str):
        try:
            return SYMBOLS.index(element.strip().capitalize())
        except ValueError:
            raise ValueError(f"unknown element symbol {element!r}") from None
    z = int(element)
    if z != element or z < 1:
        raise ValueError(f"an atomic number must be a positive integer, got {element!r}")
    return z


def canonical_elements(elements: Iterable) -> tuple[int, ...]:
    """Element set as a tuple of distinct atomic numbers, in the given order."""
    zs = tuple(atomic_number(e) for e in elements)
    if not zs:
        raise ValueError("the element set is empty")
    if len(set(zs)) != len(zs):
        raise ValueError(f"the element set has duplicates: {zs}")
    return zs


def check_elements(Z: np.ndarray, elements: Sequence[int], where: str = "") -> None:
    """Raise ``ValueError`` naming the atomic numbers of ``Z`` that are not in ``elements``."""
    Z = np.asarray(Z)
    bad = np.setdiff1d(np.unique(Z), np.asarray(elements))
    if bad.size:
        names = ", ".join(f"{symbol(z)} (Z={int(z)})" for z in bad)
        known = ", ".join(symbol(z) for z in elements)
        pre = f"{where}: " if where else ""
        raise ValueError(
            f"{pre}unknown element(s) {names}: the element set is ({known}); pass e.g. "
            f"elements={tuple(sorted(set(int(e) for e in elements) | set(int(z) for z in bad)))} "
            "to include them"
        )
