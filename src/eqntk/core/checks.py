"""Validation of layer parameters, driver options and kernel inputs: the one place for it.

Every layer and the tiled driver call these, so a bad value is refused with the same kind of
message everywhere (``ValueError`` naming the layer, the argument and the value), and nothing
reaches a kernel that would silently turn into NaN or lose information:

* standard deviations, scales and oversampling factors must be finite numbers;
* integer arguments must be integers (``True`` is not a channel count);
* kernel inputs must be real (complex inputs would lose their imaginary part), of at least
  single precision (float16/bfloat16 inputs are computed in float32, with a warning), finite,
  and small enough that their squared norms do not overflow the dtype.
"""

from __future__ import annotations

import math
import warnings
from numbers import Real
from typing import Optional

import numpy as np
import jax.numpy as jnp

__all__ = ["check_int", "check_real", "check_std", "check_oversampling", "check_memory_budget",
           "check_inputs", "LowPrecisionWarning"]


class LowPrecisionWarning(UserWarning):
    """Inputs in a floating type below single precision were computed in float32."""


def _is_number(value) -> bool:
    """A real number: Python or NumPy int/float, or a 0-d NumPy/JAX array of one (bools and complex refused)."""
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, Real):
        return True
    dtype = getattr(value, "dtype", None)
    return (getattr(value, "shape", None) == () and dtype is not None
            and (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)))


def check_int(where: str, name: str, value, lo: int = 1) -> int:
    """``value`` as an ``int ≥ lo`` (integral floats such as ``4.0`` accepted; bools refused)."""
    if not _is_number(value) or not math.isfinite(float(value)) or int(value) != value or value < lo:
        raise ValueError(f"{where}: {name} must be an integer ≥ {lo}, got {value!r}")
    return int(value)


def check_real(where: str, name: str, value, *, lo: Optional[float] = None, strict: bool = False) -> float:
    """``value`` as a finite ``float``; with ``lo``, at least ``lo`` (above it with ``strict``)."""
    ok = _is_number(value) and math.isfinite(float(value))
    if ok and lo is not None:
        ok = float(value) > lo if strict else float(value) >= lo
    if not ok:
        bound = "" if lo is None else f" {'>' if strict else '≥'} {lo:g}"
        raise ValueError(f"{where}: {name} must be a finite number{bound}, got {value!r}")
    return float(value)


def check_bool(where: str, name: str, value) -> bool:
    """``value`` as a ``bool`` (``True``/``False`` or NumPy booleans only: no truthy numbers or strings)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{where}: {name} must be True or False, got {value!r}")
    return bool(value)


def check_kind(where: str, get) -> str:
    """One kernel kind: ``'nngp'`` or ``'ntk'`` (for functions that return one kernel)."""
    if get not in ("nngp", "ntk"):
        raise ValueError(f"{where}: get must be 'ntk' or 'nngp', got {get!r}")
    return get


def check_std(where: str, name: str, value, allow_none: bool = True) -> Optional[float]:
    """A weight or bias standard deviation: a finite number (``None`` = no bias where allowed)."""
    if value is None:
        if allow_none:
            return None
        raise ValueError(f"{where}: {name} must be a finite number, got None")
    return check_real(where, name, value)


def check_oversampling(where: str, value) -> float:
    """An SO(3) quadrature oversampling factor: a finite number ``≥ 1``."""
    return check_real(where, "oversampling", value, lo=1.0)


def check_memory_budget(value) -> float:
    """A working-memory budget in bytes: a finite number ``> 0``."""
    return check_real("kernel_fn", "memory_budget (bytes)", value, lo=0.0, strict=True)


def _check_one(name: str, x) -> jnp.ndarray:
    if hasattr(x, "dtype") and np.issubdtype(np.dtype(x.dtype), np.complexfloating) \
            or (not hasattr(x, "dtype") and np.iscomplexobj(x)):
        raise ValueError(f"{name} is complex; eqntk's kernels are for real inputs (pass the real and "
                         "imaginary parts as separate channels)")
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    elif jnp.finfo(x.dtype).bits < 32:
        warnings.warn(f"{name} is {x.dtype}: computing in float32 (a {x.dtype} kernel would be accurate to "
                      f"only ~{jnp.finfo(x.dtype).eps:.0e})", LowPrecisionWarning, stacklevel=4)
        x = x.astype(jnp.float32)
    if x.ndim < 2:
        raise ValueError(f"{name} must have a batch axis and at least one feature axis, got shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {x.shape})")
    if x.size and not bool(jnp.all(jnp.isfinite(x))):
        raise ValueError(f"{name} contains NaN or inf")
    # kernels are built from inner products: the squared norm of every sample must be finite
    sq = jnp.sum(jnp.square(x.reshape(x.shape[0], -1)), axis=1)
    if not bool(jnp.all(jnp.isfinite(sq))):
        i = int(jnp.argmax(~jnp.isfinite(sq)))
        big = float(jnp.max(jnp.abs(x[i])))
        raise ValueError(f"{name}[{i}] is too large for {x.dtype}: its squared norm overflows (max |x| = "
                         f"{big:.3e}, {x.dtype} holds up to {float(jnp.finfo(x.dtype).max):.3e}); rescale the "
                         "inputs or use float64")
    return x


def check_inputs(x1, x2=None):
    """Validate and convert kernel inputs.

    ``x1 (N1, ...)`` and ``x2 (N2, ...)`` (optional) must be real, non-empty, finite, with the
    same shape per sample and finite squared norms; integer inputs are cast to JAX's default
    float, float16/bfloat16 to float32 (:class:`LowPrecisionWarning`), and both to their common
    dtype. Returns ``(x1, x2)`` as JAX arrays (``x2`` stays ``None`` when not given).
    """
    a = _check_one("x1", x1)
    b = None if x2 is None else _check_one("x2", x2)
    if b is not None:
        if a.shape[1:] != b.shape[1:]:
            raise ValueError(f"x1 and x2 must have the same shape per sample, got {a.shape[1:]} and {b.shape[1:]}")
        dt = jnp.result_type(a.dtype, b.dtype)
        a, b = a.astype(dt), b.astype(dt)
    return a, b
