"""Layers of the example group ``C_2`` (reflections of 1-D signals): lift, group convolution, pool.

Finite networks in NTK parameterisation (standard-normal parameters scaled in the forward pass):

* ``C2Lift``: ``(N, n, C)`` → ``(N, 2, O)``, ``h_x(g) = W/√(nC) Σ_{i,c} w_{ic} (g·x)_{ic} + b`` with
  ``(s·x)_i = x_{n-1-i}``; reflecting the input swaps the group axis (``h_{s·x}(g) = h_x(gs)``);
* ``C2Conv``: ``(N, 2, C)`` → ``(N, 2, O)``, ``h'(g) = W/√(2C) Σ_k h(gk) w_k + b`` (equivariant);
* ``C2Pool``: the mean over the group, ``(N, 2, C)`` → ``(N, C)`` (invariant).

Each kernel op checks its input state through the group's one helper, :func:`_c2_state` (the lift:
:func:`eqntk.core.kernel.first_layer`), then calls the state's group operations.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp

from eqntk.core.checks import check_int, check_std
from eqntk.core.kernel import first_layer, wrong_state
from eqntk.core.layers import KernelFn, Layer

from .kernel_state import C2Pairs, lift_pairs


def reflect(x):
    """The group action on signals ``(N, n, C)``: ``x[:, i] → x[:, n-1-i]``."""
    return x[:, ::-1]


def _c2_state(where: str, state) -> C2Pairs:
    """The one check of this group's layers that they received functions on ``C_2``."""
    if not isinstance(state, C2Pairs):
        raise wrong_state(where, state, "functions on C_2", "put C2Lift first")
    return state


def _params(key, shape, out_channels, b_std):
    kw, kb = jax.random.split(key)
    return jax.random.normal(kw, shape), (jax.random.normal(kb, (out_channels,)) if b_std is not None else None)


def _b2(b_std):
    return 0.0 if b_std is None else b_std**2


def C2Lift(out_channels: int, W_std: float = 1.0, b_std: Optional[float] = None) -> Layer:
    """Lift 1-D signals ``(N, n, C)`` to functions on ``C_2``, ``(N, 2, out_channels)``."""
    O = check_int("C2Lift", "out_channels", out_channels)
    W_std = check_std("C2Lift", "W_std", W_std, allow_none=False)
    b_std = check_std("C2Lift", "b_std", b_std)

    def init_fn(key, input_shape):
        N, n, C = input_shape
        return (N, 2, O), _params(key, (n, C, O), O, b_std)

    def apply_fn(params, x, **kwargs):
        w, b = params
        n, C = x.shape[1:]
        orbit = jnp.stack([x, reflect(x)], axis=1)  # (N, 2, n, C)
        y = jnp.einsum("Ngic,ico->Ngo", orbit, w.astype(x.dtype)) * (W_std / jnp.sqrt(n * C))
        return y if b is None else y + b_std * b.astype(x.dtype)

    def op(state):
        state = first_layer("C2Lift", state, "1-D signals (N, n, C)")
        if state.x1.ndim != 3:
            raise ValueError(f"C2Lift: inputs must be 1-D signals of shape (N, n, C), got {state.x1.shape}")
        return lift_pairs(state.x1, state.x2, W_std**2, _b2(b_std), state.with_ntk, state.cost)

    return Layer(init_fn, apply_fn, KernelFn(op, name=f"C2Lift({O}, W_std={W_std}, b_std={b_std})",
                                             spec=("C2Lift", O, W_std, b_std), centred=True))


def C2Conv(out_channels: int, W_std: float = 1.0, b_std: Optional[float] = None) -> Layer:
    """Group convolution on ``C_2``: ``(N, 2, C)`` → ``(N, 2, out_channels)``."""
    O = check_int("C2Conv", "out_channels", out_channels)
    W_std = check_std("C2Conv", "W_std", W_std, allow_none=False)
    b_std = check_std("C2Conv", "b_std", b_std)

    def init_fn(key, input_shape):
        return tuple(input_shape[:-1]) + (O,), _params(key, (2, input_shape[-1], O), O, b_std)

    def apply_fn(params, x, **kwargs):
        w, b = params
        w = w.astype(x.dtype)
        # h'(g) = Σ_k h(gk) w_k: for g = e, h(e) w_0 + h(s) w_1; for g = s, h(s) w_0 + h(e) w_1
        y = (jnp.einsum("Ngc,co->Ngo", x, w[0]) + jnp.einsum("Ngc,co->Ngo", x[:, ::-1], w[1]))
        y = y * (W_std / jnp.sqrt(2 * x.shape[-1]))
        return y if b is None else y + b_std * b.astype(x.dtype)

    def op(state):
        return _c2_state("C2Conv", state).conv(W_std**2, _b2(b_std))

    return Layer(init_fn, apply_fn, KernelFn(op, name=f"C2Conv({O}, W_std={W_std}, b_std={b_std})",
                                             spec=("C2Conv", O, W_std, b_std), centred=True))


def C2Pool() -> Layer:
    """Mean over ``C_2``: ``(N, 2, C)`` → ``(N, C)``, an invariant of the reflection."""

    def init_fn(key, input_shape):
        return (input_shape[0], input_shape[-1]), ()

    def apply_fn(params, x, **kwargs):
        return jnp.mean(x, axis=1)

    return Layer(init_fn, apply_fn, KernelFn(lambda s: _c2_state("C2Pool", s).pool(), name="C2Pool",
                                             spec=("C2Pool",)))
