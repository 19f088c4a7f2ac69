"""SO(3) GCNN layers: lifting convolution S² → SO(3), group convolution, pooling.

Normalisation (docs/mathematics.md, "Normalisation": NTK parameterisation): a layer averages over its
filter's support, so with white filters

* ``S2ConvSO3``: ``ψ(u) = W² / (4π C) Σ_c Σ_{l<L} f̂_c,lᵀ D^l(u) f̂'_c,l + b²``
  (a constant input of value 1 gives ``W²``), ``Θ = ψ``;
* ``SO3ConvSO3``: ``ψ' = W² P_L ψ + b²`` (``P_L``: projection onto degrees < L),
  ``Θ' = ψ' + W² P_L Θ``;
* ``SO3Pool``: the mean over SO(3) of both arguments, ``∫ ψ(u) du``.

Inputs are real spherical-harmonic coefficients ``(N, L_in², C)`` (see
:mod:`eqntk.so3.harmonics`).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import jax
import jax.numpy as jnp

from ..core.checks import check_bool, check_int, check_oversampling, check_std
from ..core.kernel import first_layer, wrong_state
from ..core.layers import KernelFn, Layer
from .features import SO3Signal
from .harmonics import bandlimit_of
from .kernel_state import LiftBase, PairFunction, SO3Pairs
from .wigner import num_block_coeffs, pad, pad_blocks

__all__ = ["S2ConvSO3", "SO3ConvSO3", "SO3Pool"]


def _check_s2_input(where: str, shape, bandlimit: int) -> tuple[int, int]:
    if len(shape) != 3:
        raise ValueError(
            f"{where}: inputs must be spherical-harmonic coefficients of shape (N, L_in², C), got shape "
            f"{tuple(shape)}"
        )
    L_in = bandlimit_of(shape[1])
    if bandlimit > L_in:
        raise ValueError(
            f"{where}: bandlimit {bandlimit} is above the input's bandlimit {L_in} (inputs have L_in² = "
            f"{shape[1]} coefficients); use bandlimit ≤ {L_in}"
        )
    return L_in, shape[2]


def S2ConvSO3(out_channels: int, bandlimit: int, W_std: float = 1.0, b_std: Optional[float] = None) -> Layer:
    """Lifting convolution from S² to SO(3) with a global filter of bandlimit ``bandlimit``.

    Input: coefficients ``(N, L_in², C)``, ``bandlimit ≤ L_in``. Output: functions on SO(3) of
    bandlimit ``bandlimit`` (degrees ``l < bandlimit``); ``init_fn`` reports the shape
    ``(N, Σ_{l<L}(2l+1)², out_channels)`` of their Wigner-D coefficients.
    """
    out_channels = check_int("S2ConvSO3", "out_channels", out_channels)
    L = check_int("S2ConvSO3", "bandlimit", bandlimit)
    W_std = check_std("S2ConvSO3", "W_std", W_std, allow_none=False)
    b_std = check_std("S2ConvSO3", "b_std", b_std)
    b2 = 0.0 if b_std is None else b_std**2

    def init_fn(key, input_shape):
        _, C = _check_s2_input("S2ConvSO3", input_shape, L)
        kw, kb = jax.random.split(key)
        w = jax.random.normal(kw, (L * L, C, out_channels))
        b = jax.random.normal(kb, (out_channels,)) if b_std is not None else None
        return (input_shape[0], num_block_coeffs(L), out_channels), (w, b)

    def apply_fn(params, x, **kwargs):
        x = jnp.asarray(x)
        _, C = _check_s2_input("S2ConvSO3", x.shape, L)
        w, b = params
        f = pad(x[:, : L * L])  # (N, L, P, C)
        wp = pad(jnp.moveaxis(w.astype(x.dtype), -1, 0))  # (Cout, L, P, C)
        blocks = jnp.einsum("nlmc,ilkc->nlmki", f, wp) * (W_std / np.sqrt(4 * np.pi * C))
        if b is not None:
            blocks = blocks.at[:, 0, L - 1, L - 1, :].add(float(b_std) * b.astype(x.dtype))
        return SO3Signal(blocks)

    def op(state):
        state = first_layer("S2ConvSO3", state, "spherical-harmonic coefficients of S² signals")
        _, C = _check_s2_input("S2ConvSO3", state.x1.shape, L)
        scale = W_std**2 / (4 * np.pi * C)
        x1 = pad(state.x1[:, : L * L])
        x2 = pad(state.x2[:, : L * L])
        var1 = scale * jnp.sum(x1**2, axis=(1, 2, 3)) + b2
        var2 = scale * jnp.sum(x2**2, axis=(1, 2, 3)) + b2
        w = state.with_ntk

        def base(a, b, outer, with_ntk):
            return PairFunction(LiftBase(a, b, L, outer, scale, b2, with_ntk))

        return SO3Pairs(base(x1, x2, True, w), base(x1, x1, False, False), base(x2, x2, False, False),
                        var1, var2, w, state.cost)

    return Layer(init_fn, apply_fn, KernelFn(op, name=f"S2ConvSO3({out_channels}, bandlimit={L}, W_std={W_std}, b_std={b_std})",
                                             spec=("S2ConvSO3", out_channels, L, W_std, b_std), centred=True))


def _as_signal(where, x):
    if isinstance(x, SO3Signal):
        return x
    x = jnp.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"{where}: expected an SO(3) signal (output of S2ConvSO3 / SO3ConvSO3), got shape {x.shape}")
    return SO3Signal(jnp.moveaxis(pad_blocks(jnp.moveaxis(x, -1, 1)), 1, -1))


def _check_so3_state(where: str, state) -> SO3Pairs:
    """The one check of this group's layers that they received functions on SO(3)."""
    if not isinstance(state, SO3Pairs):
        raise wrong_state(where, state, "functions on SO(3)", "put S2ConvSO3 first")
    return state


def SO3ConvSO3(out_channels: int, bandlimit: int, W_std: float = 1.0, b_std: Optional[float] = None,
               oversampling: float = 3.0) -> Layer:
    """SO(3) group convolution with a global white filter of bandlimit ``bandlimit``.

    Integrates its input (after any nonlinearity) by quadrature on an exact SO(3)
    grid; ``oversampling`` sets its resolution: the grid integrates exactly
    ``σ(ψ) D^l`` as if σ were a polynomial of degree ``oversampling``
    (see :func:`eqntk.so3.quadrature.grid_bandlimit_for`). Linear inputs are
    integrated exactly.
    """
    out_channels = check_int("SO3ConvSO3", "out_channels", out_channels)
    L = check_int("SO3ConvSO3", "bandlimit", bandlimit)
    osf = check_oversampling("SO3ConvSO3", oversampling)
    W_std = check_std("SO3ConvSO3", "W_std", W_std, allow_none=False)
    b_std = check_std("SO3ConvSO3", "b_std", b_std)

    def init_fn(key, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"SO3ConvSO3: expected input shape (N, M, C), got {input_shape}")
        C = input_shape[-1]
        kw, kb = jax.random.split(key)
        w = jax.random.normal(kw, (num_block_coeffs(L), C, out_channels))
        b = jax.random.normal(kb, (out_channels,)) if b_std is not None else None
        return (input_shape[0], num_block_coeffs(L), out_channels), (w, b)

    def apply_fn(params, x, **kwargs):
        x = _as_signal("SO3ConvSO3", x)
        H = x.project(L, osf)  # (N, C, L, P, P)
        C = H.shape[1]
        w, b = params
        wp = pad_blocks(jnp.transpose(w.astype(H.dtype), (1, 2, 0)))  # (C, Cout, L, P, P)
        scale = W_std / np.sqrt(C * (2 * np.arange(L) + 1))
        out = jnp.einsum("nclpk,cjlmk->nlpmj", H, wp) * jnp.asarray(scale, H.dtype)[:, None, None, None]
        if b is not None:
            out = out.at[:, 0, L - 1, L - 1, :].add(float(b_std) * b.astype(H.dtype))
        return SO3Signal(out)

    def op(state):
        return _check_so3_state("SO3ConvSO3", state).conv(L, W_std, b_std, osf)

    return Layer(init_fn, apply_fn, KernelFn(op, name=f"SO3ConvSO3({out_channels}, bandlimit={L}, W_std={W_std}, b_std={b_std}, oversampling={osf})",
                                             spec=("SO3ConvSO3", out_channels, L, W_std, b_std, osf),
                                             regrid=lambda o: SO3ConvSO3(out_channels, L, W_std, b_std, o).kernel_fn,
                                             centred=True))


def SO3Pool(oversampling: float = 3.0, rule: bool = True) -> Layer:
    """Invariant pooling: the mean over SO(3) (of both arguments of the kernel).

    Output ``(N, C)``. ``oversampling`` as in :func:`SO3ConvSO3`: it sets the exact degree of the
    quadrature. ``rule=True`` (default): after an exponential nonlinearity (``Rbf``, ``Sin``) or
    none, the kernel integrates on a shipped point rule of that exact degree where one is stored
    (:func:`eqntk.so3.quadrature.pool_rule`: about 1.5× fewer points than the Euler product grid,
    1.5× faster at the QM9 default); after other nonlinearities, and with ``False``, on the product
    grid (docs/mathematics.md, "Point rules for the pool").
    """
    osf = check_oversampling("SO3Pool", oversampling)
    rule = check_bool("SO3Pool", "rule", rule)

    def init_fn(key, input_shape):
        return (input_shape[0], input_shape[-1]), ()

    def apply_fn(params, x, **kwargs):
        x = _as_signal("SO3Pool", x)
        return x.project(1, osf)[:, :, 0, 0, 0]

    def op(state):
        return _check_so3_state("SO3Pool", state).pool(osf, rule)

    name = f"SO3Pool(oversampling={osf})" if rule else f"SO3Pool(oversampling={osf}, rule=False)"
    return Layer(init_fn, apply_fn, KernelFn(op, name=name, spec=("SO3Pool", osf, "rule" if rule else "grid"),
                                             regrid=lambda o: SO3Pool(o, rule).kernel_fn))
