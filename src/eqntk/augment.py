"""Data augmentation as a kernel: the group average of a non-equivariant kernel.

Training a network on the full orbits of its data under a group ``G`` (infinite-width, gradient
flow on MSE) gives, in expectation, the kernel method with the *augmented* kernel

    k_G(x, x') = (1/|G|) Σ_g k(x, g·x')          (finite G),
    k_G(x, x') = ∫_SO(3) k(x, R·x') dR            (SO(3), normalised Haar measure),

for NNGP and NTK alike. Misof, Kessel & Gerken (ICML 2025) prove that a GCNN whose layers are
group convolutions followed by group pooling and a *linear* head has exactly this kernel, with
``k`` the kernel of its non-equivariant counterpart (the plain CNN; for SO(3), an MLP on the
spherical-harmonic coefficients with matched normalisation), so both have the same mean
prediction at all training times. A nonlinear head after the pooling breaks the identity.

``augment(kernel_fn, group)`` returns a kernel function with the same call signature as
``kernel_fn`` (``k(x1, x2=None, get=None, **kwargs)``):

* ``group`` in ``{'p2', 'p4', 'p4m'}`` (or a :class:`eqntk.planar.PlanarGroup`): images
  ``(N, H, W, C)`` transformed by 180°/90° rotations and flips about the image centre; exact.
* ``group = 'so3'``: spherical signals ``(N, L², C)`` rotated exactly in Fourier space
  (``f̂_l ↦ D^l(R) f̂_l``); the integral over SO(3) by the exact Euler quadrature of
  :mod:`eqntk.so3.quadrature`. ``k(x, R·x')`` of an MLP is a smooth function of ``R`` whose
  bandlimit is set by the input's ``L`` and the nonlinearity: ``oversampling`` plays the same
  role as in :class:`eqntk.stax.SO3Pool` and the average converges exponentially fast in it
  (``grid_bandlimit`` overrides the choice).
* ``group = 'inversion'``: spherical signals and their point reflections ``f(−u)``
  (``f̂_lm ↦ (−1)^l f̂_lm``), exact. Every reflection of R³ is a rotation times the inversion, so
  ``augment(k, 'inversion')`` of an SO(3)-invariant kernel (an SO(3) GCNN with ``SO3Pool``) is
  O(3)-invariant: the parity-averaged kernel, for targets such as energies that are invariant
  under reflections too.
* ``group = 'o3'``: the SO(3) quadrature and the inversion together (twice the elements of
  ``'so3'``): the O(3) average of a non-invariant kernel.
* a sequence of callables ``g(x) -> x'``: any finite group given by its elements (include the
  identity), exact.
"""

from __future__ import annotations

import collections
import os
from typing import Callable, Optional, Sequence, Union

import numpy as np
import jax.numpy as jnp

__all__ = ["augment", "group_elements"]


def _planar(name):
    from .planar.groups import P2, P4, P4M, PlanarGroup

    if isinstance(name, PlanarGroup):
        return name
    table = {"p2": P2, "p4": P4, "p4m": P4M}
    if name not in table:
        raise ValueError(f"unknown group {name!r}: use 'p2', 'p4', 'p4m', 'so3', 'inversion', 'o3' or a list of "
                         "transforms")
    return table[name]


def _parity(x) -> jnp.ndarray:
    """``(−1)^l`` for the coefficient axis of spherical signals ``x (N, L², C)``, shape ``(L², 1)``."""
    if x.ndim != 3:
        raise ValueError(f"the inversion acts on spherical signals (N, L², C), got shape {x.shape}")
    from .so3.harmonics import bandlimit_of

    L = bandlimit_of(x.shape[1])
    l = np.repeat(np.arange(L), 2 * np.arange(L) + 1)
    return jnp.asarray((-1.0) ** l, x.dtype)[:, None]


def _invert(x, idx):
    """``x`` (element 0) and its point reflection (element 1), element-major."""
    p = _parity(x)
    return jnp.concatenate([x if i == 0 else p * x for i in idx], axis=0)


def group_elements(group, *, oversampling: float = 3.0, grid_bandlimit: Optional[int] = None,
                   bandlimit: Optional[int] = None):
    """``(transform, weights)``: ``transform(x, idx)`` stacks ``g_i·x`` for the elements ``idx``
    (shape ``(len(idx)·N, ...)``, element-major); ``weights`` sum to 1.

    For ``'so3'``, ``bandlimit`` is the input's ``L`` (required to size the quadrature).
    """
    if isinstance(group, str) and group == "inversion":
        return _invert, np.full(2, 0.5)
    if isinstance(group, str) and group == "o3":
        rotate, w = group_elements("so3", oversampling=oversampling, grid_bandlimit=grid_bandlimit,
                                   bandlimit=bandlimit)
        n = len(w)

        def rotate_or_invert(x, idx):
            idx = np.asarray(idx)
            parts = [rotate(x, idx[idx < n]) if np.any(idx < n) else None,
                     rotate(_parity(x) * x, idx[idx >= n] - n) if np.any(idx >= n) else None]
            return jnp.concatenate([p for p in parts if p is not None], axis=0)

        return rotate_or_invert, np.concatenate([w, w]) / 2
    if isinstance(group, str) and group == "so3":
        from .so3.quadrature import grid_bandlimit_for, so3_grid
        from .so3.wigner import rotate_coeffs

        if grid_bandlimit is None:
            if bandlimit is None:
                raise ValueError("augment(..., 'so3') needs the inputs' bandlimit to size its quadrature")
            grid_bandlimit = grid_bandlimit_for(bandlimit, 1, oversampling, nonlinear=True)
        g = so3_grid(int(grid_bandlimit))
        angles = [a.ravel() for a in g.euler_angles()]

        def rotate(x, idx):  # one batched call for all rotations of the chunk
            a, b, c = (jnp.asarray(v[idx], x.dtype)[:, None] for v in angles)
            out = rotate_coeffs(x[None], a, b, c)
            return out.reshape((-1,) + x.shape[1:])

        return rotate, g.weights().ravel()
    if isinstance(group, (list, tuple)) and all(callable(f) for f in group):
        if not group:
            raise ValueError("augment: the list of group elements is empty")
        fns = list(group)
        return (lambda x, idx: jnp.concatenate([jnp.asarray(fns[i](x)) for i in idx], axis=0),
                np.full(len(fns), 1.0 / len(fns)))
    from .planar.groups import transform_grid

    pg = _planar(group)

    def act(x, idx):
        out = transform_grid(x, pg, axes=(1, 2), elements=list(idx))  # (N, k, H, W, C)
        return jnp.moveaxis(out, 1, 0).reshape((-1,) + x.shape[1:])

    return act, np.full(pg.order, 1.0 / pg.order)


def augment(kernel_fn: Callable, group: Union[str, Sequence[Callable], object], *,
            oversampling: float = 3.0, grid_bandlimit: Optional[int] = None) -> Callable:
    """The group-averaged kernel ``(1/|G|) Σ_g k(x, g·x')`` of ``kernel_fn`` (see module docs).

    Returns ``k_aug(x1, x2=None, get=None, **kwargs)`` with ``kernel_fn``'s conventions
    (``get`` a string → an array; a tuple or ``None`` → a named tuple). ``rtol=`` chooses the
    grid of ``kernel_fn``'s own group quadratures once, on a sample of ``x1`` and ``x2``
    (:func:`eqntk.core.accuracy.at_rtol`); it is refused for ``'so3'`` and ``'o3'``, whose
    averaging quadrature is set by ``oversampling`` / ``grid_bandlimit``. Cost: ``|G|`` (or the
    number of quadrature points) evaluations of ``kernel_fn``. With ``store=DIR`` each chunk of
    group elements keeps its tiles in its own sub-store ``DIR/chunk_<first element>``.
    """
    if not callable(kernel_fn):
        raise ValueError("augment: kernel_fn must be callable")

    def k_aug(x1, x2=None, get=None, **kwargs):
        x1 = jnp.asarray(x1)
        x2v = x1 if x2 is None else jnp.asarray(x2)
        kinds = ("nngp", "ntk") if get is None else ((get,) if isinstance(get, str) else tuple(get))
        L = None
        if isinstance(group, str) and group in ("so3", "o3"):
            if x1.ndim != 3:
                raise ValueError(f"augment(..., {group!r}) expects spherical signals (N, L², C), got {x1.shape}")
            from .so3.harmonics import bandlimit_of

            L = bandlimit_of(x1.shape[1])
        transform, weights = group_elements(group, oversampling=oversampling, grid_bandlimit=grid_bandlimit,
                                            bandlimit=L)
        # several group elements per kernel_fn call (one call per element costs its overhead
        # thousands of times for SO(3) quadratures), at most ~2e7 kernel entries at a time
        n1, n2, n_g = x1.shape[0], x2v.shape[0], len(weights)
        chunk = max(1, min(n_g, int(2e7 // max(n1 * n2, 1))))
        acc = None
        store = kwargs.pop("store", None)
        rtol = kwargs.pop("rtol", None)
        inner = kernel_fn
        if rtol is not None:
            if L is not None:
                raise ValueError(f"augment(..., {group!r}): rtol does not cover the averaging quadrature over "
                                 "SO(3); set its accuracy with oversampling= (or grid_bandlimit=)")
            from .core.accuracy import at_rtol

            inner = at_rtol(kernel_fn, x1, None if x2 is None else x2v, rtol=rtol, get=kinds)[0]
        for s in range(0, n_g, chunk):
            idx = np.arange(s, min(s + chunk, n_g))
            if store is not None:  # each chunk is its own computation (other inputs)
                kwargs["store"] = os.path.join(os.fspath(store), f"chunk_{s}")
            k = inner(x1, transform(x2v, idx), get=kinds, **kwargs)
            vals = [np.einsum("igj,g->ij", np.asarray(getattr(k, name)).reshape(n1, len(idx), n2), weights[idx])
                    for name in kinds]
            acc = vals if acc is None else [a + v for a, v in zip(acc, vals)]
        out = [jnp.asarray(a) for a in acc]
        if isinstance(get, str):
            return out[0]
        return collections.namedtuple("Kernel", kinds)(*out)

    return k_aug
