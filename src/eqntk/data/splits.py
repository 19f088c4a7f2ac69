"""Seeded, disjoint random splits (train / validation / test)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["split_indices"]


def split_indices(n: int, sizes: Sequence, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Disjoint random index sets of ``range(n)``, reproducible from ``seed``.

    Args:
        n: number of items.
        sizes: one entry per subset; integers are counts, floats in (0, 1] are
            fractions of ``n`` (rounded down); ``None`` in the last position
            means "all remaining items".
        seed: seed of ``numpy.random.default_rng``; the same ``(n, sizes, seed)``
            always gives the same subsets, and the first ``k`` subsets do not
            depend on the sizes of later ones.

    Returns:
        a tuple of sorted int64 index arrays, one per entry of ``sizes``.
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"cannot split {n} items")
    sizes = list(sizes)
    if not sizes:
        raise ValueError("sizes is empty")
    counts = []
    for i, s in enumerate(sizes):
        if s is None:
            if i != len(sizes) - 1:
                raise ValueError("only the last size may be None (the remaining items)")
            counts.append(n - sum(counts))
        elif isinstance(s, (float, np.floating)):
            if not 0.0 < s <= 1.0:
                raise ValueError(f"a fractional size (float) must be in (0, 1], got {s}; pass counts as int")
            counts.append(int(np.floor(s * n)))
        else:
            if isinstance(s, bool) or int(s) != s or s < 0:
                raise ValueError(f"sizes must be non-negative integers, fractions or None, got {s!r}")
            counts.append(int(s))
    if sum(counts) > n or counts[-1] < 0:
        raise ValueError(f"the subsets need {sum(c for c in counts if c > 0)} items but there are only {n}")
    perm = np.random.default_rng(seed).permutation(n)
    bounds = np.concatenate([[0], np.cumsum(counts)])
    return tuple(np.sort(perm[a:b]).astype(np.int64) for a, b in zip(bounds[:-1], bounds[1:]))
