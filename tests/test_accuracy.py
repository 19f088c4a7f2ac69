"""Accuracy on request: the oversampling chosen by the a-posteriori estimate meets rtol against a much finer grid."""

import functools

import numpy as np
import pytest

from eqntk import stax
from eqntk.core.accuracy import choose_oversampling

L = 4


def _build(nonlinearity):
    return lambda o: stax.serial(stax.S2ConvSO3(1, L), nonlinearity(), stax.SO3Pool(oversampling=o),
                                 stax.Dense(1))[2]


NONLINEARITIES = {"erf": stax.Erf, "rbf": lambda: stax.Rbf(0.5), "relu": stax.Relu}


def _x(scale):
    return scale * np.random.default_rng(1).normal(size=(8, L * L, 2))


@functools.lru_cache(maxsize=None)
def _reference(name, scale):
    """The kernel on a grid far finer than any level chosen (oversampling 24)."""
    return _build(NONLINEARITIES[name])(24.0)(_x(scale), None, ("nngp", "ntk"))


# input scales 0.3 / 1 / 3: pre-activation variances ~0.1 (almost linear) to ~10 (almost a step);
# 1e-6 for the large-scale Erf and for ReLU's kink needs grids beyond the default ladder (they raise)
@pytest.mark.parametrize("name, scale, rtol", [
    ("erf", 0.3, 1e-4), ("erf", 1.0, 1e-4), ("erf", 3.0, 1e-4), ("erf", 0.3, 1e-6), ("erf", 1.0, 1e-6),
    ("rbf", 0.3, 1e-4), ("rbf", 1.0, 1e-4), ("rbf", 3.0, 1e-4), ("rbf", 1.0, 1e-6),
    ("relu", 1.0, 1e-3), ("relu", 3.0, 1e-4)])
def test_chosen_oversampling_meets_rtol_against_a_fine_grid(name, scale, rtol):
    x = _x(scale)
    build = _build(NONLINEARITIES[name])
    choice = choose_oversampling(build, x, rtol)
    ref = _reference(name, scale)
    got = build(choice.oversampling)(x, None, ("nngp", "ntk"))
    for kind in ("nngp", "ntk"):
        r, g = np.asarray(getattr(ref, kind)), np.asarray(getattr(got, kind))
        err = np.max(np.abs(g - r)) / np.max(np.abs(r))
        assert err <= rtol, (kind, choice, err)
    assert choice.estimate <= rtol


def test_coarser_request_never_needs_a_finer_grid():
    x = np.random.default_rng(2).normal(size=(8, L * L, 2))
    build = _build(stax.Erf)
    a, b = choose_oversampling(build, x, 1e-3), choose_oversampling(build, x, 1e-7)
    assert a.oversampling <= b.oversampling


def test_unreachable_rtol_and_bad_arguments_raise():
    x = 3.0 * np.random.default_rng(3).normal(size=(6, L * L, 2))
    build = _build(stax.Relu)
    with pytest.raises(ValueError, match="no oversampling"):
        choose_oversampling(build, x, 1e-12, levels=(2, 3))
    with pytest.raises(ValueError, match="levels"):
        choose_oversampling(build, x, 1e-3, levels=(3,))
    with pytest.raises(ValueError, match="levels"):
        choose_oversampling(build, x, 1e-3, levels=(3, 2))
    with pytest.raises(ValueError, match="rtol"):
        choose_oversampling(build, x, 0.0)
