"""Persistent, resumable storage of finished Gram-matrix tiles, safe to share between processes.

A store is a directory holding

* ``manifest.json`` — what is being computed: a structural fingerprint of the network
  (:mod:`eqntk.core.fingerprint`: every layer's type and parameters, user functions by their
  code and constants), fingerprints of the inputs, their dtype and the tiling. A store made for
  a different computation is refused with a ``ValueError`` that names what differs;
* ``tile_<i>_<j>_<k>.npy`` — output ``k`` of the finished tile whose rows start at ``i`` and
  columns at ``j``;
* ``tile_<i>_<j>.done`` — the tile's marker, written last: for each output its SHA-256, shape
  and dtype. A tile is loaded only if its marker exists and every file matches its checksum; a
  missing, truncated or altered file is reported (:class:`StoreWarning`, naming the file) and
  the tile recomputed;
* ``tile_<i>_<j>.claim`` — while a process computes that tile (host, pid, time).

Every file is written under a temporary name unique to the writer and atomically renamed, so an
interrupted run never leaves a half-written tile and several writers never collide. Several
processes may share one store: each claims a tile before computing it (an exclusive create),
so they compute different tiles and every process ends with the whole matrix. A claim whose
process has died (same host) or that is older than ``claim_timeout`` is taken over; two
processes computing one tile is harmless (same values, atomic renames).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import socket
import time
import warnings
from typing import Optional

import numpy as np

from .fingerprint import fingerprint_arrays

__all__ = ["TileStore", "StoreWarning", "fingerprint_arrays"]

_HOST = socket.gethostname()


class StoreWarning(UserWarning):
    """A stored tile was missing, truncated or corrupted and is recomputed."""


def _atomic_write(path: str, data: bytes) -> None:
    tmp = f"{path}.{os.getpid()}.{secrets.token_hex(6)}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(a), allow_pickle=False)
    return buf.getvalue()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class TileStore:
    """A directory of finished tiles for one computation described by ``manifest`` (a JSON dict).

    Args:
        path: the directory (created if absent).
        manifest: what identifies the computation; compared with the stored one.
        claim_timeout: seconds after which another host's claim on a tile is taken over.
    """

    def __init__(self, path: str, manifest: dict, claim_timeout: float = 3600.0):
        self.path = os.fspath(path)
        self.claim_timeout = float(claim_timeout)
        os.makedirs(self.path, exist_ok=True)
        manifest = json.loads(json.dumps(manifest))  # the form it takes on disk (tuples → lists)
        mpath = os.path.join(self.path, "manifest.json")
        if not os.path.exists(mpath):
            _atomic_write(mpath, json.dumps(manifest, indent=1, sort_keys=True).encode())
        try:
            with open(mpath) as f:
                old = json.load(f)
        except (OSError, ValueError) as e:
            raise ValueError(f"tile store manifest {mpath!r} is unreadable ({e}); delete the store directory "
                             "to start afresh") from None
        if old != manifest:
            keys = set(old) | set(manifest) if isinstance(old, dict) else set(manifest)
            diff = sorted(k for k in keys if not isinstance(old, dict) or old.get(k) != manifest.get(k))
            raise ValueError(
                f"tile store {self.path!r} was made for a different computation (differs in: "
                f"{', '.join(diff)}); use a new directory or delete this one"
            )
        self.manifest = manifest

    # ------------------------------------------------------------------ files
    def _file(self, i: int, j: int, k: int) -> str:
        return os.path.join(self.path, f"tile_{i}_{j}_{k}.npy")

    def _marker(self, i: int, j: int) -> str:
        return os.path.join(self.path, f"tile_{i}_{j}.done")

    def _claim(self, i: int, j: int) -> str:
        return os.path.join(self.path, f"tile_{i}_{j}.claim")

    def _bad(self, path: str, why: str) -> None:
        warnings.warn(f"tile store: {path} {why}; recomputing that tile", StoreWarning, stacklevel=3)

    def is_done(self, i: int, j: int) -> bool:
        """Whether tile ``(i, j)`` has a marker (its files are verified by :meth:`load`)."""
        return os.path.exists(self._marker(i, j))

    def load(self, i: int, j: int, n_out: int) -> Optional[list]:
        """The outputs of tile ``(i, j)`` (``None`` entries for absent outputs), or ``None``.

        ``None`` when the tile is not finished, or when its marker or one of its files is
        unreadable or fails its checksum (then a :class:`StoreWarning` names the file).
        """
        marker = self._marker(i, j)
        try:
            with open(marker) as f:
                entries = json.load(f)["outputs"]
            if len(entries) != n_out:
                raise ValueError(f"{len(entries)} outputs recorded, {n_out} expected")
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as e:
            self._bad(marker, f"is unreadable ({e})")
            return None
        out = []
        for k, entry in enumerate(entries):
            if entry is None:
                out.append(None)
                continue
            path = self._file(i, j, k)
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError as e:
                self._bad(path, f"cannot be read ({e})")
                return None
            if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
                self._bad(path, f"fails its checksum ({len(data)} bytes; corrupted or truncated)")
                return None
            a = np.load(io.BytesIO(data), allow_pickle=False)
            if list(a.shape) != entry.get("shape") or a.dtype.str != entry.get("dtype"):
                self._bad(path, f"holds a {a.dtype} array of shape {a.shape}, not what its marker records")
                return None
            out.append(a)
        return out

    def save(self, i: int, j: int, outputs) -> None:
        """Save the outputs of tile ``(i, j)`` (arrays or ``None``), then mark it done."""
        entries = []
        for k, o in enumerate(outputs):
            if o is None:
                entries.append(None)
                continue
            a = np.asarray(o)
            data = _npy_bytes(a)
            _atomic_write(self._file(i, j, k), data)
            entries.append({"sha256": hashlib.sha256(data).hexdigest(), "shape": list(a.shape),
                            "dtype": a.dtype.str})
        _atomic_write(self._marker(i, j), json.dumps({"outputs": entries}).encode())

    # ----------------------------------------------------------------- claims
    def claim(self, i: int, j: int) -> bool:
        """Claim tile ``(i, j)`` for this process; ``False`` if another live process holds it."""
        path = self._claim(i, j)
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self._stale(path):
                    return False
                stale = f"{path}.{os.getpid()}.{secrets.token_hex(6)}.stale"
                try:  # take over: only one process renames the stale claim away
                    os.rename(path, stale)
                    os.remove(stale)
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as f:
                json.dump({"host": _HOST, "pid": os.getpid(), "time": time.time()}, f)
            return True
        return False

    def _stale(self, path: str) -> bool:
        try:
            with open(path) as f:
                info = json.load(f)
            host, pid, t = info["host"], int(info["pid"]), float(info["time"])
        except FileNotFoundError:
            return True
        except (OSError, ValueError, KeyError, TypeError):
            # half-written by a live claimant, or garbage: stale only once old
            try:
                return time.time() - os.path.getmtime(path) > 60.0
            except FileNotFoundError:
                return True
        if host == _HOST and pid != os.getpid() and not _pid_alive(pid):
            return True
        return time.time() - t > self.claim_timeout

    def release(self, i: int, j: int) -> None:
        """Drop this process's claim on tile ``(i, j)`` (a claim taken over by another stays)."""
        path = self._claim(i, j)
        try:
            with open(path) as f:
                info = json.load(f)
            if info.get("host") == _HOST and info.get("pid") == os.getpid():
                os.remove(path)
        except (OSError, ValueError):
            pass

    def completed(self) -> int:
        """Number of finished tiles."""
        return sum(1 for n in os.listdir(self.path) if n.endswith(".done"))
