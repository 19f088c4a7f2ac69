r"""Accuracy on request: the coarsest quadrature that reaches a relative tolerance, by an a-posteriori estimate.

Kernels that integrate a nonlinearity over a continuous group (``SO3Pool``, ``SO3ConvSO3``) do
so on a quadrature grid sized by ``oversampling``; their error falls exponentially in it for
smooth nonlinearities but depends on the inputs (their scale, the bandlimit) and the
nonlinearity, so no fixed default suits every use. :func:`choose_oversampling` measures it:

1. a sample of ``n_sample`` inputs is drawn from ``x``;
2. their Gram matrices ``K_j`` (every requested output, NNGP and/or NTK) are computed for the
   ladder of levels ``o_1 < o_2 < …``;
3. the first ``j`` with ``δ_j = max|K_j − K_{j+1}| / max|K_{j+1}| ≤ rtol`` is taken, and the
   *finer* level ``o_{j+1}`` is returned. With errors ``e_j`` that decrease along the ladder,
   ``e_{j+1} ≤ e_j ≤ δ_j + e_{j+1}``, and for exponential convergence ``e_{j+1} ≪ e_j``, so
   ``δ_j`` estimates ``e_j``, an upper bound of the returned level's error.

:func:`at_rtol` applies it to a network: ``kernel_fn.regrid(o)`` is the same network with every
group-quadrature layer on the grid ``o``, and ``kernel_fn(x1, x2, rtol=...)`` calls it.

The estimate is over the sampled pairs: pairs outside the sample (larger inputs, say) can be
less accurate; sample the inputs you will use. ``tests/test_accuracy.py`` checks that the
returned level meets ``rtol`` against a much finer grid, for several input scales and
nonlinearities.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import numpy as np

from .checks import check_int, check_real

__all__ = ["OversamplingChoice", "choose_oversampling", "at_rtol", "DEFAULT_LEVELS"]

#: The default ladder of oversampling factors.
DEFAULT_LEVELS = (2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0)


class OversamplingChoice(NamedTuple):
    """Result of :func:`choose_oversampling`.

    Attributes:
        oversampling: the level to use.
        estimate: the a-posteriori relative error estimate of that level (``δ`` of the level
            below it, an upper bound under monotone convergence).
        estimates: ``((o_j, δ_j), …)`` for every level compared.
    """

    oversampling: float
    estimate: float
    estimates: tuple


def choose_oversampling(build: Callable[[float], Callable], x, rtol: float, *,
                        levels: Sequence[float] = DEFAULT_LEVELS, get=("nngp", "ntk"), n_sample: int = 16,
                        seed: int = 0) -> OversamplingChoice:
    """The coarsest oversampling whose kernel is accurate to ``rtol`` (relative, max norm).

    Args:
        build: ``oversampling → kernel_fn`` (e.g. ``lambda o: stax.serial(..., stax.SO3Pool(o),
            ...)[2]``); the network must be the same at every level but for its grid.
        x: ``(N, ...)`` inputs of the kind the kernel will be used on.
        rtol: requested relative accuracy, ``max|K − K_exact| ≤ rtol · max|K_exact|``, > 0.
        levels: increasing oversampling factors to try (at least two).
        get: the kernel outputs that must meet ``rtol`` (``'nngp'``, ``'ntk'`` or both).
        n_sample: inputs sampled from ``x`` (all of them if ``N`` is smaller).
        seed: seed of the sample.

    Returns:
        :class:`OversamplingChoice`.

    Raises:
        ValueError: bad arguments, or no level of the ladder reached ``rtol`` (the message gives
            the estimates; extend ``levels``).
    """
    rtol = check_real("choose_oversampling", "rtol", rtol, lo=0.0, strict=True)
    n_sample = check_int("choose_oversampling", "n_sample", n_sample)
    levels = [float(o) for o in levels]
    if len(levels) < 2 or any(b <= a for a, b in zip(levels, levels[1:])) or levels[0] < 1:
        raise ValueError(f"levels must be at least two increasing oversampling factors >= 1, got {levels}")
    kinds = (get,) if isinstance(get, str) else tuple(get)
    n = np.shape(x)[0]
    idx = np.sort(np.random.default_rng(seed).choice(n, min(n, n_sample), replace=False))
    xs = np.asarray(x)[idx]

    def gram(o):
        k = build(o)(xs, None, kinds)
        return [np.asarray(getattr(k, kd), dtype=np.float64) for kd in kinds]

    estimates = []
    prev = gram(levels[0])
    for lo, hi in zip(levels, levels[1:]):
        cur = gram(hi)
        d = max(float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), np.finfo(np.float64).tiny))
                for a, b in zip(prev, cur))
        estimates.append((lo, d))
        if d <= rtol:
            return OversamplingChoice(hi, d, tuple(estimates))
        prev = cur
    raise ValueError(f"no oversampling in {levels} reaches rtol={rtol:g} on the sampled inputs: estimates "
                     + ", ".join(f"{o:g}: {d:.1e}" for o, d in estimates) + "; pass finer levels")


def at_rtol(kernel_fn, x1, x2=None, *, rtol: float, get=None, levels: Sequence[float] = DEFAULT_LEVELS,
            n_sample: int = 16, seed: int = 0):
    """``kernel_fn`` with its group quadratures on the coarsest grid that reaches ``rtol``.

    Args:
        kernel_fn: an eqntk :class:`~eqntk.core.layers.KernelFn` (``stax.serial(...)[2]``).
        x1: ``(N1, ...)`` inputs; x2: ``(N2, ...)`` inputs or ``None``. The sample of
            :func:`choose_oversampling` (``n_sample`` inputs) is drawn from both, half each.
        rtol: requested relative accuracy (max norm over the sampled Gram), > 0.
        get: outputs that must meet it (``'nngp'``, ``'ntk'``, a tuple, or ``None`` for both).
        levels, n_sample, seed: as in :func:`choose_oversampling`; every quadrature layer of the
            network takes the same level.

    Returns:
        ``(kernel_fn_at_level, choice)``: the network at the chosen oversampling and its
        :class:`OversamplingChoice`; ``(kernel_fn, None)`` when the network has no group
        quadrature (its kernel is exact: nothing to choose).

    Raises:
        ValueError: bad arguments, or no level reaches ``rtol`` (see :func:`choose_oversampling`).
    """
    rtol = check_real("at_rtol", "rtol", rtol, lo=0.0, strict=True)
    if not hasattr(kernel_fn, "regrid"):
        raise ValueError("at_rtol needs an eqntk kernel_fn (stax.serial(...)[2]); for augment(), choose the "
                         "inner kernel_fn's grid first")
    regrid = kernel_fn.regrid
    if regrid is None:
        return kernel_fn, None
    kinds = ("nngp", "ntk") if get is None else ((get,) if isinstance(get, str) else tuple(get))
    x1 = np.asarray(x1)
    if x2 is None:
        x = x1
    else:
        x2 = np.asarray(x2)
        if x2.shape[1:] != x1.shape[1:]:
            raise ValueError(f"at_rtol: x1 and x2 have different shapes per sample, {x1.shape[1:]} and {x2.shape[1:]}")
        n_sample = check_int("at_rtol", "n_sample", n_sample)
        rng = np.random.default_rng(seed)
        half = n_sample // 2
        x = np.concatenate([x1[rng.choice(len(x1), min(len(x1), n_sample - half), replace=False)],
                            x2[rng.choice(len(x2), min(len(x2), half), replace=False)]])
    choice = choose_oversampling(regrid, x, rtol, levels=levels, get=kinds, n_sample=n_sample, seed=seed)
    return regrid(choice.oversampling), choice
