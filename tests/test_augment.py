"""The paper's theorem: GCNN kernel = group-averaged kernel of its non-equivariant counterpart."""

import numpy as np
import jax
import pytest

from eqntk import predict, stax
from eqntk.augment import augment


def _images(n, seed, size=6, C=2):
    return np.random.default_rng(seed).normal(size=(n, size, size, C))


def _gcnn(lift, gconv, head):
    return stax.serial(lift(3, (3, 3), "SAME", b_std=0.2), stax.Relu(), gconv(3, (3, 3), "SAME", b_std=0.2),
                       stax.Erf(), stax.GroupPool(), *head)


def _cnn(head):
    return stax.serial(stax.Conv(3, (3, 3), "SAME", b_std=0.2), stax.Relu(), stax.Conv(3, (3, 3), "SAME", b_std=0.2),
                       stax.Erf(), stax.GlobalAvgPool(), *head)


LINEAR_HEAD = [stax.Dense(1, b_std=0.1)]
NONLINEAR_HEAD = [stax.Dense(4, b_std=0.1), stax.Erf(), stax.Dense(1)]


@pytest.mark.parametrize("group,lift,gconv", [("p4", stax.Z2ConvP4, stax.P4ConvP4),
                                              ("p4m", stax.Z2ConvP4M, stax.P4MConvP4M),
                                              ("p2", stax.Z2ConvP2, stax.P2ConvP2)])
def test_planar_gcnn_equals_augmented_cnn(group, lift, gconv):
    x1, x2 = _images(3, 0), _images(2, 1)
    g = _gcnn(lift, gconv, LINEAR_HEAD)[2](x1, x2)
    a = augment(_cnn(LINEAR_HEAD)[2], group)(x1, x2)
    np.testing.assert_allclose(g.nngp, a.nngp, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(g.ntk, a.ntk, rtol=1e-12, atol=1e-14)


def test_equal_mean_predictions_along_gradient_flow():
    """Same kernels ⇒ same ensemble-mean predictions at t = 0.3, 3, ∞ (time convention of
    eqntk.predict: loss (1/2n) Σ|f - y|², learning rate 1)."""
    xtr, xte = _images(6, 2), _images(3, 3)
    y = np.random.default_rng(4).normal(size=(6, 1))
    kg, ka = _gcnn(stax.Z2ConvP4, stax.P4ConvP4, LINEAR_HEAD)[2], augment(_cnn(LINEAR_HEAD)[2], "p4")
    t = np.array([0.3, 3.0, np.inf])
    preds = []
    for k in (kg, ka):
        ktt, kte = k(xtr, get="ntk"), k(xte, xtr, get="ntk")
        preds.append(np.asarray(predict.gradient_flow(ktt, y, t, kte).test))
    np.testing.assert_allclose(preds[0], preds[1], rtol=1e-9, atol=1e-12)
    assert np.abs(preds[0][0] - preds[0][1]).max() > 1e-3  # the times really differ


def test_nonlinear_head_breaks_the_identity():
    x1, x2 = _images(3, 5), _images(3, 6)
    g = _gcnn(stax.Z2ConvP4, stax.P4ConvP4, NONLINEAR_HEAD)[2](x1, x2)
    a = augment(_cnn(NONLINEAR_HEAD)[2], "p4")(x1, x2)
    gap = np.abs(np.asarray(g.ntk) - np.asarray(a.ntk)).max() / np.abs(np.asarray(a.ntk)).max()
    assert gap > 1e-3, f"measured relative NTK gap {gap:.2e}"
    # and the linear-head identity on the same inputs holds (the gap is the head's doing)
    gl = _gcnn(stax.Z2ConvP4, stax.P4ConvP4, LINEAR_HEAD)[2](x1, x2)
    al = augment(_cnn(LINEAR_HEAD)[2], "p4")(x1, x2)
    np.testing.assert_allclose(gl.ntk, al.ntk, rtol=1e-12)


def test_so3_gcnn_equals_rotation_augmented_mlp():
    """lift → Erf → SO3Pool → Dense  vs  the MLP Dense → Erf → Dense on flattened coefficients,
    averaged over SO(3) (W_mlp² = W² L² / 4π matches the lift's normalisation W² / (4π C))."""
    L, C, W, b = 3, 2, 1.3, 0.2
    rng = np.random.default_rng(7)
    x1, x2 = rng.normal(size=(3, L * L, C)), rng.normal(size=(2, L * L, C))
    _, _, kg = stax.serial(stax.S2ConvSO3(1, L, W, b), stax.Erf(), stax.SO3Pool(oversampling=12),
                           stax.Dense(1, b_std=0.1))
    _, _, km = stax.serial(stax.Dense(1, W * np.sqrt(L * L / (4 * np.pi)), b), stax.Erf(), stax.Dense(1, b_std=0.1))

    def mlp(a, b_, get=None):
        return km(np.reshape(a, (a.shape[0], -1)), np.reshape(b_, (b_.shape[0], -1)), get=get)

    g = kg(x1, x2)
    a = augment(mlp, "so3", oversampling=12)(x1, x2)
    np.testing.assert_allclose(g.nngp, a.nngp, atol=1e-10)
    np.testing.assert_allclose(g.ntk, a.ntk, atol=1e-10)


def test_custom_elements_and_errors():
    x1, x2 = _images(2, 8), _images(2, 9)
    _, _, k = _cnn(LINEAR_HEAD)
    flips = [lambda x: x, lambda x: x[:, :, ::-1]]
    a = augment(k, flips)(x1, x2, get="nngp")
    manual = 0.5 * (np.asarray(k(x1, x2, get="nngp")) + np.asarray(k(x1, x2[:, :, ::-1], get="nngp")))
    np.testing.assert_allclose(a, manual, rtol=1e-13)
    with pytest.raises(ValueError, match="unknown group"):
        augment(k, "p6")(x1, x2)
    with pytest.raises(ValueError, match="spherical signals"):
        augment(k, "so3")(x1, x2)
