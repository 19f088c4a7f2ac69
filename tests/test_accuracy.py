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


# --- kernel_fn(..., rtol=) and at_rtol: the same choice applied to a whole network ---

from eqntk.augment import augment  # noqa: E402
from eqntk.core.accuracy import at_rtol  # noqa: E402


@pytest.mark.parametrize("scale", [0.3, 1.0, 3.0])
def test_kernel_fn_rtol_meets_the_request_against_a_fine_grid(scale):
    x = _x(scale)
    kfn = _build(stax.Erf)(3.0)  # the default grid, replaced by the requested accuracy
    got = kfn(x, None, ("nngp", "ntk"), rtol=1e-4)
    ref = _reference("erf", scale)
    for kind in ("nngp", "ntk"):
        r, g = np.asarray(getattr(ref, kind)), np.asarray(getattr(got, kind))
        assert np.max(np.abs(g - r)) / np.max(np.abs(r)) <= 1e-4, kind


@pytest.mark.slow  # 9-13 s; the one-layer cases stay in the fast suite
def test_at_rtol_regrids_every_quadrature_layer_of_a_deep_network():
    x = np.random.default_rng(4).normal(size=(6, L * L, 2))
    net = lambda o1, o2: stax.serial(stax.S2ConvSO3(2, L), stax.Erf(), stax.SO3ConvSO3(2, 3, oversampling=o1),  # noqa: E731
                                     stax.Erf(), stax.SO3Pool(oversampling=o2), stax.Dense(1))[2]
    kfn, choice = at_rtol(net(2.0, 2.0), x, rtol=1e-3, get="ntk")
    o = choice.oversampling
    assert kfn.fingerprint() == net(o, o).fingerprint() != net(2.0, 2.0).fingerprint()
    np.testing.assert_allclose(np.asarray(kfn(x, None, "ntk")), np.asarray(net(o, o)(x, None, "ntk")), rtol=0, atol=0)
    # cross kernels sample both arguments; x2 of another scale changes nothing about the contract
    x2 = 2.0 * np.random.default_rng(5).normal(size=(5, L * L, 2))
    k12 = net(2.0, 2.0)(x, x2, "nngp", rtol=1e-3)
    ref = net(16.0, 16.0)(x, x2, "nngp")
    assert np.max(np.abs(np.asarray(k12) - np.asarray(ref))) <= 1e-3 * np.max(np.abs(np.asarray(ref)))


def test_rtol_on_a_network_without_group_quadrature_is_exact_and_unchanged():
    x = np.random.default_rng(6).normal(size=(5, 7))
    kfn = stax.serial(stax.Dense(3), stax.Relu(), stax.Dense(1))[2]
    same, choice = at_rtol(kfn, x, rtol=1e-8)
    assert same is kfn and choice is None
    np.testing.assert_array_equal(np.asarray(kfn(x, None, "ntk", rtol=1e-8)), np.asarray(kfn(x, None, "ntk")))


def test_augment_rtol_regrids_the_inner_kernel_and_refuses_so3_averaging():
    x = np.random.default_rng(7).normal(size=(5, L * L, 2))
    build = _build(stax.Erf)
    k_inv = augment(build(2.0), "inversion")
    inner, _ = at_rtol(build(2.0), x, rtol=1e-5, get="nngp")
    np.testing.assert_allclose(np.asarray(k_inv(x, None, "nngp", rtol=1e-5)),
                               np.asarray(augment(inner, "inversion")(x, None, "nngp")), rtol=0, atol=0)
    mlp = stax.serial(stax.Dense(2), stax.Erf(), stax.Dense(1))[2]
    with pytest.raises(ValueError, match="averaging quadrature"):
        augment(mlp, "so3")(x.reshape(5, L * L, 2), None, "nngp", rtol=1e-5)
    with pytest.raises(ValueError, match="eqntk kernel_fn"):
        at_rtol(lambda a, b=None, get=None: a, x, rtol=1e-3)
    with pytest.raises(ValueError, match="rtol"):
        build(2.0)(x, None, "nngp", rtol=-1.0)
