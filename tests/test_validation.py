"""Bad parameters and inputs are refused with a clear message, never turned into NaN or worse (issue 15)."""

import math
import warnings

import numpy as np
import pytest
import jax.numpy as jnp

import eqntk.data as D
from eqntk import stax
from eqntk.core.checks import LowPrecisionWarning

NAN, INF = float("nan"), float("inf")

BAD_LAYERS = [
    ("S2ConvSO3", "W_std", lambda: stax.S2ConvSO3(1, 2, W_std=NAN)),
    ("S2ConvSO3", "b_std", lambda: stax.S2ConvSO3(1, 2, b_std=NAN)),
    ("S2ConvSO3", "W_std", lambda: stax.S2ConvSO3(1, 2, W_std=None)),
    ("S2ConvSO3", "bandlimit", lambda: stax.S2ConvSO3(1, True)),
    ("SO3ConvSO3", "W_std", lambda: stax.SO3ConvSO3(1, 2, W_std=INF)),
    ("SO3ConvSO3", "b_std", lambda: stax.SO3ConvSO3(1, 2, b_std=-INF)),
    ("SO3ConvSO3", "oversampling", lambda: stax.SO3ConvSO3(1, 2, oversampling=NAN)),
    ("SO3Pool", "oversampling", lambda: stax.SO3Pool(oversampling=0.5)),
    ("Dense", "W_std", lambda: stax.Dense(1, W_std=INF)),
    ("Dense", "b_std", lambda: stax.Dense(1, b_std=NAN)),
    ("Dense", "out_channels", lambda: stax.Dense(2.5)),
    ("Erf", "a", lambda: stax.Erf(a=NAN)),
    ("Erf", "b", lambda: stax.Erf(b=INF)),
    ("Gelu", "n_quadrature", lambda: stax.Gelu(n_quadrature=0)),
    ("Elementwise", "n_quadrature", lambda: stax.Elementwise(jnp.sin, n_quadrature=NAN)),
    ("Z2ConvP4", "W_std", lambda: stax.Z2ConvP4(1, 3, W_std=NAN)),
    ("P4ConvP4", "b_std", lambda: stax.P4ConvP4(1, 3, b_std=INF)),
    ("Conv", "out_channels", lambda: stax.Conv(True, 3)),
]


@pytest.mark.parametrize("where,arg,make", BAD_LAYERS, ids=[f"{w}-{a}-{i}" for i, (w, a, _) in enumerate(BAD_LAYERS)])
def test_bad_layer_parameters_are_refused(where, arg, make):
    with pytest.raises(ValueError, match=f"{where}.*{arg}"):
        make()


def _so3():
    return stax.serial(stax.S2ConvSO3(1, 2), stax.Erf(), stax.SO3Pool(), stax.Dense(1))[2]


def _x(n=3, dtype=np.float64, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 4, 2)).astype(dtype)


def test_complex_inputs_are_refused():
    x = _x().astype(np.complex128) * (1 + 1j)
    with pytest.raises(ValueError, match="complex"):
        _so3()(x)
    with pytest.raises(ValueError, match="complex"):
        _so3()(_x(), jnp.asarray(x))


@pytest.mark.parametrize("dtype", [np.float16, jnp.bfloat16])
def test_half_precision_inputs_are_computed_in_float32_and_said_so(dtype):
    x = jnp.asarray(_x(), dtype=dtype)
    with pytest.warns(LowPrecisionWarning, match="float32"):
        k = _so3()(x, get="ntk")
    assert k.dtype == jnp.float32
    ref = _so3()(np.asarray(x.astype(jnp.float32), dtype=np.float64), get="ntk")  # same rounded inputs, float64
    assert np.max(np.abs(np.asarray(k, np.float64) - ref)) <= 1e-5 * np.max(np.abs(ref))


def test_inputs_whose_squares_overflow_are_refused():
    x = _x(dtype=np.float32) * np.float32(1e20)  # squares 1e40 > float32 max 3.4e38
    assert np.all(np.isfinite(x))
    with pytest.raises(ValueError, match="overflows"):
        _so3()(x)
    with pytest.raises(ValueError, match="overflows"):
        _so3()(np.full((2, 4, 2), 1e160))  # float64 squares overflow too


@pytest.mark.parametrize("budget", [NAN, INF, 0, -1.0, "1GB"])
def test_bad_memory_budget_is_refused(budget):
    with pytest.raises(ValueError, match="memory_budget"):
        _so3()(_x(), memory_budget=budget)


@pytest.mark.parametrize("tile", [0, 1.5, NAN, True])
def test_bad_tile_size_is_refused(tile):
    with pytest.raises(ValueError, match="tile_size"):
        _so3()(_x(), tile_size=tile)


@pytest.mark.parametrize("shape", [(3, 2), (2, 3, 1), (6,)])
def test_molecule_coordinates_must_be_n_by_3(shape):
    R = np.arange(math.prod(shape), dtype=float).reshape(shape)
    Z = np.ones(3 if shape[0] == 3 else 2, dtype=int)
    with pytest.raises(ValueError, match=r"\(n_atoms, 3\)"):
        D.MoleculeSet.from_molecules([(Z, R)])


def test_valid_inputs_raise_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        k = _so3()(_x(), get="nngp")
    assert np.all(np.isfinite(k))
