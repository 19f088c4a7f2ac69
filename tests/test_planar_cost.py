"""The planar cost model bounds what XLA's compiled tile program holds (issue 15, memory budget).

For a tile ``(t1, t2)`` the driver budgets ``itemsize · (pair · t1 t2 + row · (t1 + t2))`` bytes from the
state's ``cost`` (``eqntk.planar.kernel_state.kernel_cost``); the compiled program's temporaries plus its
outputs (``memory_analysis()``, XLA's buffer assignment: deterministic, no execution) must fit in it.
"""

import numpy as np
import pytest
import jax
import jax.numpy as jnp

from eqntk import stax
from eqntk.core.kernel import Inputs

T = (6, 6)


def _net(kind, pad, nl=stax.Relu):
    if kind == "p4":
        layers = [stax.Z2ConvP4(4, 3, pad), nl(), stax.P4ConvP4(4, 3, pad), nl(), stax.P4ConvP4(4, 3, pad), nl(),
                  stax.GroupPool()]
    elif kind == "p4m":
        layers = [stax.Z2ConvP4M(4, 3, pad), stax.Relu(), stax.P4MConvP4M(4, 3, pad), stax.Relu(), stax.GroupPool()]
    else:
        layers = [stax.Conv(4, 3, pad), stax.Relu(), stax.Conv(4, 3, pad), stax.Relu(), stax.GlobalAvgPool()]
    return stax.serial(*layers, stax.Dense(1))[2]


def _bytes(kernel_fn, H, dtype, with_ntk, t=T):
    a = jnp.zeros((t[0], H, H, 3), dtype)
    b = jnp.zeros((t[1], H, H, 3), dtype)
    cost = jax.eval_shape(lambda a, b: kernel_fn.op(Inputs(a, b, with_ntk)), a[:1], b[:1]).cost
    ma = kernel_fn._tile_fn(with_ntk).lower(a, b).compile().memory_analysis()
    if ma is None:
        pytest.skip("no memory_analysis on this backend")
    itemsize = np.dtype(dtype).itemsize
    budgeted = itemsize * (cost.pair * t[0] * t[1] + cost.row * (t[0] + t[1]))
    return ma.temp_size_in_bytes + ma.output_size_in_bytes, budgeted


@pytest.mark.parametrize("kind,pad,H,dtype,with_ntk,nl", [
    ("p4", "SAME", 8, "float32", True, stax.Relu),
    ("p4", "SAME", 8, "float32", False, stax.Relu),
    ("cnn", "CIRCULAR", 8, "float32", True, stax.Relu),
    ("p4", "VALID", 8, "float32", True, stax.Relu),
    ("p4", "SAME", 8, "float64", True, stax.Erf),
    # Gauss–Hermite maps: their quadrature must not hold one kernel-sized temporary per node
    ("cnn", "SAME", 8, "float32", True, stax.Gelu),
    ("cnn", "CIRCULAR", 8, "float32", False, stax.Gelu),
])
def test_tile_program_fits_cost(kind, pad, H, dtype, with_ntk, nl):
    measured, budgeted = _bytes(_net(kind, pad, nl), H, dtype, with_ntk)
    assert measured <= budgeted, f"XLA holds {measured} B, the cost model budgets {budgeted:.0f} B"


def test_cost_not_wildly_above_for_same_padding():
    # SAME padding: the model is within 1.5x of what XLA holds (it is conservative for small tiles,
    # whose self pairs it counts although jit drops them, and for VALID grids, which shrink)
    measured, budgeted = _bytes(_net("p4", "SAME"), 8, "float32", True)
    assert budgeted <= 1.5 * measured
