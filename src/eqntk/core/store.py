"""Persistent, resumable storage of finished Gram-matrix tiles.

A store is a directory holding ``manifest.json`` (what is being computed: a fingerprint of the
inputs, the network, dtype and tiling) and one ``.npy`` file per finished tile and output
(``tile_<i>_<j>_<k>.npy``), each written to a temporary name and atomically renamed, so an
interrupted run never leaves a half-written tile. Re-running the same computation with the same
store loads the finished tiles and computes only the missing ones; a store made for a different
computation is refused with a ``ValueError``.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Optional

import numpy as np

__all__ = ["TileStore", "fingerprint_arrays"]


def fingerprint_arrays(*arrays) -> str:
    """SHA-256 over shapes, dtypes and bytes of the arrays (``None`` entries allowed)."""
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"none")
            continue
        a = np.ascontiguousarray(np.asarray(a))
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


class TileStore:
    """A directory of finished tiles for one computation described by ``manifest`` (a JSON dict)."""

    def __init__(self, path: str, manifest: dict):
        self.path = os.fspath(path)
        os.makedirs(self.path, exist_ok=True)
        mpath = os.path.join(self.path, "manifest.json")
        if os.path.exists(mpath):
            with open(mpath) as f:
                old = json.load(f)
            if old != manifest:
                diff = sorted(k for k in set(old) | set(manifest) if old.get(k) != manifest.get(k))
                raise ValueError(
                    f"tile store {self.path!r} was made for a different computation (differs in: "
                    f"{', '.join(diff)}); use a new directory or delete this one"
                )
        else:
            tmp = mpath + ".tmp"
            with open(tmp, "w") as f:
                json.dump(manifest, f, indent=1, sort_keys=True)
            os.replace(tmp, mpath)
        self.manifest = manifest

    def _file(self, i: int, j: int, k: int) -> str:
        return os.path.join(self.path, f"tile_{i}_{j}_{k}.npy")

    def load(self, i: int, j: int, n_out: int) -> Optional[list]:
        """The outputs of tile ``(i, j)`` if all were saved (``None`` entries for absent outputs)."""
        marker = os.path.join(self.path, f"tile_{i}_{j}.done")
        if not os.path.exists(marker):
            return None
        with open(marker) as f:
            present = json.load(f)
        return [np.load(self._file(i, j, k)) if present[k] else None for k in range(n_out)]

    def save(self, i: int, j: int, outputs) -> None:
        """Save the outputs of tile ``(i, j)`` (arrays or ``None``), then mark it done."""
        present = []
        for k, o in enumerate(outputs):
            present.append(o is not None)
            if o is None:
                continue
            tmp = self._file(i, j, k) + ".tmp.npy"
            np.save(tmp, np.asarray(o))
            os.replace(tmp, self._file(i, j, k))
        marker = os.path.join(self.path, f"tile_{i}_{j}.done")
        with open(marker + ".tmp", "w") as f:
            json.dump(present, f)
        os.replace(marker + ".tmp", marker)

    def completed(self) -> int:
        """Number of finished tiles."""
        return sum(1 for n in os.listdir(self.path) if n.endswith(".done"))
