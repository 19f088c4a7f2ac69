"""Tiled evaluation of a kernel op over all pairs of two input batches.

The op of a network is a pure function of one tile of inputs. The driver
validates the inputs, chooses the tile size from a memory budget, jit-compiles
the op once per tile shape, runs it over the tiles (upper triangle only for a
symmetric Gram matrix whose per-pair output is a scalar), shows a progress
bar on long runs, and assembles the result on the host.
"""

from __future__ import annotations

import math
import sys
from typing import Callable, Optional, Sequence

import numpy as np
import jax
import jax.numpy as jnp

from .kernel import Inputs

__all__ = ["check_inputs", "choose_tile", "evaluate_tiles", "DEFAULT_MEMORY_BUDGET"]

DEFAULT_MEMORY_BUDGET = 2 * 1024**3  # bytes


def check_inputs(x1, x2=None):
    """Validate and convert inputs: same trailing shape, non-empty, finite, floating.

    Returns ``(x1, x2)`` as JAX arrays (``x2`` stays ``None`` when not given).
    """
    out = []
    for name, x in (("x1", x1), ("x2", x2)):
        if x is None:
            out.append(None)
            continue
        x = jnp.asarray(x)
        if not jnp.issubdtype(x.dtype, jnp.floating):
            x = x.astype(jnp.result_type(float))
        if x.ndim < 2:
            raise ValueError(f"{name} must have a batch axis and at least one feature axis, got shape {x.shape}")
        if x.shape[0] == 0:
            raise ValueError(f"{name} is an empty batch (shape {x.shape})")
        if not bool(jnp.all(jnp.isfinite(x))):
            raise ValueError(f"{name} contains NaN or inf")
        out.append(x)
    a, b = out
    if b is not None:
        if a.shape[1:] != b.shape[1:]:
            raise ValueError(f"x1 and x2 must have the same shape per sample, got {a.shape[1:]} and {b.shape[1:]}")
        dt = jnp.result_type(a.dtype, b.dtype)
        a, b = a.astype(dt), b.astype(dt)
    return a, b


def choose_tile(n1: int, n2: int, cost, itemsize: int, budget: float, tile_size: Optional[int]) -> tuple[int, int]:
    """Tile sizes ``(t1, t2)`` under ``budget`` bytes (or ``tile_size`` if given)."""
    if tile_size is not None:
        if int(tile_size) < 1:
            raise ValueError(f"tile_size must be a positive integer, got {tile_size!r}")
        t = int(tile_size)
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

    pending = []
    for i, j in jobs:
        saved = store.load(i, j, n_out) if store is not None else None
        if saved is not None:
            place(i, j, saved)
        else:
            pending.append((i, j))

    def tiles(batch):
        a = jnp.stack([_pad_rows(x1[i : i + t1], t1) for i, _ in batch])
        b = jnp.stack([_pad_rows(x2[j : j + t2], t2) for _, j in batch])
        return a, b

    step = n_devices if (batch_fn is not None and n_devices > 1) else 1
    for s in range(0, len(pending), step):
        batch = pending[s : s + step]
        if step > 1:
            full = batch + [batch[-1]] * (step - len(batch))  # pad the last group
            outs = batch_fn(*tiles(full))
            per_tile = [[None if (o is None or not kp) else np.asarray(o[q]) for o, kp in zip(outs, keep)]
                        for q in range(len(batch))]
        else:
            a, b = tiles(batch)
            outs = tile_fn(a[0], b[0])
            per_tile = [[None if (o is None or not kp) else np.asarray(o) for o, kp in zip(outs, keep)]]
        for (i, j), outs_ij in zip(batch, per_tile):
            if store is not None:
                store.save(i, j, outs_ij)
            place(i, j, outs_ij)
    if bar is not None:
        bar.close()
    return results
