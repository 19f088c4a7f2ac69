"""Tiled evaluation of a kernel op over all pairs of two input batches.

The op of a network is a pure function of one tile of inputs. The driver
validates the inputs, chooses the tile size from a memory budget, jit-compiles
the op once per tile shape, runs it over the tiles (upper triangle only for a
symmetric Gram matrix whose per-pair output is a scalar), shows a progress
bar on long runs, and assembles the result on the host.
"""

from __future__ import annotations

import collections
import math
import sys
import time
from typing import Callable, Optional, Sequence

import numpy as np
import jax
import jax.numpy as jnp

from .checks import check_int, check_memory_budget

__all__ = ["choose_tile", "evaluate_tiles", "run_shared", "spans_processes", "DEFAULT_MEMORY_BUDGET"]

DEFAULT_MEMORY_BUDGET = 2 * 1024**3  # bytes


def choose_tile(n1: int, n2: int, cost, itemsize: int, budget: float, tile_size: Optional[int]) -> tuple[int, int]:
    """Tile sizes ``(t1, t2)`` under ``budget`` bytes (or ``tile_size`` if given)."""
    budget = check_memory_budget(budget)
    if tile_size is not None:
        t = check_int("kernel_fn", "tile_size", tile_size)
    else:
        # itemsize (pair t² + row 2t) <= budget
        a, b, c = cost.pair * itemsize, 2 * cost.row * itemsize, -float(budget)
        t = int((-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)) if a > 0 else max(n1, n2)
        t = max(t, 1)
    t1, t2 = min(t, n1), min(t, n2)
    # balance tiles so that the padding of the last one is small
    t1 = math.ceil(n1 / math.ceil(n1 / t1))
    t2 = math.ceil(n2 / math.ceil(n2 / t2))
    return t1, t2


def spans_processes(devices) -> bool:
    """Whether ``devices`` include another ``jax.distributed`` process's devices (collective tiles)."""
    me = jax.process_index()
    return any(getattr(d, "process_index", me) != me for d in devices)


def _pad_rows(x, t):
    n = x.shape[0]
    if n == t:
        return x
    reps = jnp.broadcast_to(x[:1], (t - n,) + x.shape[1:])
    return jnp.concatenate([x, reps], axis=0)


def evaluate_tiles(
    tile_fn: Callable,
    x1,
    x2,
    symmetric: bool,
    t1: int,
    t2: int,
    n_out: int,
    progress: Optional[bool] = None,
    desc: str = "kernel tiles",
    store=None,
    batch_fn: Optional[Callable] = None,
    n_devices: int = 1,
    keep: Optional[Sequence[bool]] = None,
    poll: float = 0.5,
    collective: bool = False,
) -> list[np.ndarray]:
    """Run ``tile_fn(x1_tile, x2_tile) -> tuple of (t1, t2, ...) arrays`` over all tiles.

    With ``symmetric`` (``x2 is x1`` and scalar outputs) only tiles ``j ≥ i`` are
    computed and the rest is filled by transposition.

    Args:
        store: a :class:`~eqntk.core.store.TileStore`; finished tiles are loaded from it and new
            ones saved to it as soon as they are computed (resumable runs).
        batch_fn: ``batch_fn(x1_tiles, x2_tiles)`` computing ``n_devices`` stacked tiles at once
            (sharded over devices); used when ``n_devices > 1``.
        keep: which of the ``n_out`` outputs to assemble (default all); the others are dropped
            as soon as a tile is computed, and their result entry is ``None``.
        poll: seconds between looks at tiles that another process sharing ``store`` is computing.
        collective: the tiles are computed by all ``jax.distributed`` processes together
            (``batch_fn`` over devices of several processes, :func:`spans_processes`).

    With a store, each tile is claimed before it is computed (:meth:`TileStore.claim`), so several
    processes sharing one store — independent ones, or the processes of one ``jax.distributed``
    run each on its own local devices — compute different tiles, each tile once, and all return
    the whole matrix (read back from the store). With ``collective`` tiles instead, every process
    takes part in every tile; process 0 then decides which tiles are finished and is the only writer.
    """
    keep = [True] * n_out if keep is None else list(keep)
    n1, n2 = x1.shape[0], x2.shape[0]
    starts1 = list(range(0, n1, t1))
    starts2 = list(range(0, n2, t2))
    jobs = [(i, j) for i in starts1 for j in starts2 if not (symmetric and j < i)]
    if progress is None:
        progress = len(jobs) >= 8 and sys.stderr.isatty()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc=desc, unit="tile")
    results: list[Optional[np.ndarray]] = [None] * n_out

    def place(i, j, outs):
        for k, o in enumerate(outs):
            if o is None:
                continue
            o = np.asarray(o)
            if symmetric and j == i:
                # K(x_a, x_b) for a < b everywhere, so the Gram is exactly symmetric and the same
                # whatever the tiling (quadrature kernels are symmetric only to their accuracy).
                o = np.triu(o) + np.triu(o, 1).T
            if results[k] is None:
                results[k] = np.zeros((n1, n2) + o.shape[2:], o.dtype)
            ni, nj = min(t1, n1 - i), min(t2, n2 - j)
            results[k][i : i + ni, j : j + nj] = o[:ni, :nj]
            if symmetric and j != i:
                results[k][j : j + nj, i : i + ni] = o[:ni, :nj].T
        if bar is not None:
            bar.update(1)

    def tiles(batch):
        a = jnp.stack([_pad_rows(x1[i : i + t1], t1) for i, _ in batch])
        b = jnp.stack([_pad_rows(x2[j : j + t2], t2) for _, j in batch])
        return a, b

    step = n_devices if (batch_fn is not None and n_devices > 1) else 1

    def compute(batch):
        """Outputs of the tiles in ``batch`` (at most ``step``), kept ones as NumPy arrays."""
        if step > 1:
            full = batch + [batch[-1]] * (step - len(batch))  # pad the last group
            outs = batch_fn(*tiles(full))
            return [[None if (o is None or not kp) else np.asarray(o[q]) for o, kp in zip(outs, keep)]
                    for q in range(len(batch))]
        a, b = tiles(batch)
        outs = tile_fn(a[0], b[0])
        return [[None if (o is None or not kp) else np.asarray(o) for o, kp in zip(outs, keep)]]

    if store is None:
        _run_batches(jobs, compute, place, step)
    elif collective:
        _run_spmd(jobs, store, n_out, compute, place, step)
    else:
        run_shared(jobs, store, n_out, compute, place, step, poll)
    if bar is not None:
        bar.close()
    return results


def run_shared(jobs, store, n_out: int, compute: Callable, place: Callable, step: int = 1, poll: float = 0.5):
    """Tiles of ``jobs`` from ``store`` where finished, else claimed and computed, else awaited.

    ``jobs``: tile keys ``(i, j)``; ``compute(batch)`` returns the outputs of at most ``step`` of
    them; ``place(i, j, outs)`` receives every tile once, computed here or read from the store.

    A tile is computed only by the process holding its claim, and only when, with the claim held,
    the store still has no finished copy (another process may finish it and drop its claim between
    this process's first look and its claim). One pass over the jobs in order; tiles claimed by
    other processes are deferred and looked at again (every ``poll`` seconds once a pass over
    them brought nothing) until they are finished or their claim has gone stale.
    """
    waiting, deferred, progressed = collections.deque(jobs), [], False
    while waiting or deferred:
        if not waiting:
            if not progressed:
                time.sleep(poll)  # every remaining tile is being computed by another process
            waiting, deferred, progressed = collections.deque(deferred), [], False
        batch = []
        while waiting and len(batch) < step:
            i, j = waiting.popleft()
            marked = store.is_done(i, j)
            saved = store.load(i, j, n_out)
            if saved is not None:
                place(i, j, saved)
                progressed = True
            elif store.claim(i, j):
                # another process may have finished the tile and dropped its claim between the
                # load above and this claim: look again, now that no one else can start it (a
                # tile that was marked but unreadable has been reported and is recomputed)
                saved = None if marked else store.load(i, j, n_out)
                if saved is None:
                    batch.append((i, j))
                else:
                    store.release(i, j)
                    place(i, j, saved)
                    progressed = True
            else:
                deferred.append((i, j))
        if batch:
            try:
                for (i, j), outs_ij in zip(batch, compute(batch)):
                    store.save(i, j, outs_ij)
                    place(i, j, outs_ij)
            finally:
                for i, j in batch:
                    store.release(i, j)
            progressed = True


def _run_spmd(jobs, store, n_out, compute, place, step):
    """All processes compute the same tiles (collectives); process 0 alone writes the store."""
    from jax.experimental import multihost_utils

    done = np.array([store.is_done(i, j) for i, j in jobs], dtype=np.int32)
    done = np.asarray(multihost_utils.broadcast_one_to_all(done)).astype(bool)
    pending = []
    for (i, j), d in zip(jobs, done):
        if not d:
            pending.append((i, j))
            continue
        saved = store.load(i, j, n_out)
        if saved is None:
            raise ValueError(f"tile store {store.path!r}: tile ({i}, {j}) is marked finished by process 0 but "
                             f"cannot be read here (see the warning above); delete its marker "
                             f"{store._marker(i, j)!r} and re-run")
        place(i, j, saved)

    def save_and_place(i, j, outs_ij):
        store.save(i, j, outs_ij)
        place(i, j, outs_ij)

    _run_batches(pending, compute, save_and_place if jax.process_index() == 0 else place, step)


def _run_batches(jobs, compute, done, step):
    """Compute ``jobs`` in groups of ``step`` tiles and hand each tile's outputs to ``done(i, j, outs)``."""
    for s in range(0, len(jobs), step):
        batch = jobs[s : s + step]
        for (i, j), outs_ij in zip(batch, compute(batch)):
            done(i, j, outs_ij)
