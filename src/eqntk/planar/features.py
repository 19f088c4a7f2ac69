"""Finite-width planar group convolutions (the ``apply_fn`` side).

Layouts: images ``(N, H, W, C)``; functions on ``R ⋉ Z²`` ``(N, |G|, H, W, C)``
with the group axis indexed as in :class:`~eqntk.planar.groups.PlanarGroup`.
NTK parameterisation: standard-normal parameters, scaled in the forward pass by
``W_std / √fan_in`` (fan_in = ``C q²`` for the lift, ``C q² |G|`` for the group conv)
so that the empirical kernels converge to those of :mod:`.kernel_state`.

* lift: ``h(r, t) = W/√(C q²) Σ_{y, c} w(y, c) x(t + A_r y, c) + b``;
* group conv: ``h(r, t) = W/√(C q² |G|) Σ_{s, y, c} w(s, y, c) f(r s, t + A_r y, c) + b``.

Both are one ``lax.conv_general_dilated`` with the filter transformed for every
output element ``r`` (``w_r(y) = w(A_r⁻¹ y)``, and ``s ↦ r⁻¹ s`` for the group axis).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import jax
import jax.numpy as jnp
from jax import lax

from .groups import PlanarGroup, transform_grid

__all__ = ["conv2d", "lift_filters", "group_filters", "lift_apply", "group_conv_apply"]


def conv2d(x, w, padding: str):
    """Cross-correlation ``y(t) = Σ_y w(y) x(t + y)``: ``x (N, H, W, Ci)``, ``w (q, q, Ci, Co)``."""
    q = w.shape[0]
    r = (q - 1) // 2
    if padding == "CIRCULAR":
        x = jnp.pad(x, ((0, 0), (r, r), (r, r), (0, 0)), mode="wrap")
        pad = "VALID"
    else:
        pad = padding
    return lax.conv_general_dilated(x, w.astype(x.dtype), (1, 1), pad,
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                    precision=lax.Precision.HIGHEST)


def lift_filters(w, group: PlanarGroup):
    """``(q, q, C, O)`` → ``(q, q, C, |G|·O)`` with ``w_r(y) = w(A_r⁻¹ y)`` (output index ``r·O + o``)."""
    q, _, C, O = w.shape
    wr = transform_grid(w, group, axes=(0, 1), elements=group.inverse)  # (|G|, q, q, C, O)
    return jnp.moveaxis(wr, 0, 3).reshape(q, q, C, group.order * O)


def group_filters(w, group: PlanarGroup):
    """``(|G|, q, q, C, O)`` → ``(q, q, |G|·C, |G|·O)``: ``w_r(s', y) = w(r⁻¹ s', A_r⁻¹ y)``.

    Input channel index ``s'·C + c``, output ``r·O + o``.
    """
    G = group.order
    _, q, _, C, O = w.shape
    wy = transform_grid(w, group, axes=(1, 2), elements=group.inverse)  # (s, r, q, q, C, O)
    s_idx = group.table[group.inverse]  # [r, s'] = index of r⁻¹ s'
    wr = wy[s_idx, np.arange(G)[:, None]]  # [r, s'] = w(r⁻¹ s', A_r⁻¹ ·): (r, s', q, q, C, O)
    wr = jnp.transpose(wr, (2, 3, 1, 4, 0, 5))  # (q, q, s', C, r, O)
    return wr.reshape(q, q, G * C, G * O)


def _finish(y, group: PlanarGroup, b, b_std: Optional[float]):
    N, H, W, _ = y.shape
    y = jnp.moveaxis(y.reshape(N, H, W, group.order, -1), 3, 1)  # (N, |G|, H, W, O)
    if b is not None:
        y = y + b_std * b.astype(y.dtype)
    return y


def lift_apply(x, w, b, group: PlanarGroup, padding: str, W_std: float, b_std: Optional[float]):
    """Images ``(N, H, W, C)`` → ``(N, |G|, H', W', O)``."""
    q, _, C, _ = w.shape
    y = conv2d(x, lift_filters(w.astype(x.dtype), group), padding) * (W_std / np.sqrt(C * q * q))
    return _finish(y, group, b, b_std)


def group_conv_apply(f, w, b, group: PlanarGroup, padding: str, W_std: float, b_std: Optional[float]):
    """``(N, |G|, H, W, C)`` → ``(N, |G|, H', W', O)``."""
    G, q, _, C, _ = w.shape
    N, _, H, W, _ = f.shape
    x = jnp.moveaxis(f, 1, 3).reshape(N, H, W, G * C)
    y = conv2d(x, group_filters(w.astype(f.dtype), group), padding) * (W_std / np.sqrt(C * q * q * G))
    return _finish(y, group, b, b_std)
