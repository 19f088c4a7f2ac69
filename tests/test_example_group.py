"""The example group of tests/example_group/ (C_2 reflecting 1-D signals) against its finite networks.

It is the proof that a new group needs only its own folder: its kernel state implements
eqntk.core.kernel.KernelState, and its lift, group convolution and pool compose with eqntk's Dense,
Relu, serial, FanOut/parallel/FanInSum and tile stores unchanged (docs/architecture.md, "Adding a
group"). Checked: a closed form (linear network), Monte Carlo over finite networks (NNGP and NTK, with a
residual block), exact equivariance before pooling and invariance after it, the refusals' wording.
"""

import numpy as np
import pytest

from eqntk import stax
from eqntk.core.empirical import empirical_nngp, empirical_ntk
from eqntk.core.kernel import KernelState

from ensembles import mean_empirical
from example_group import C2Conv, C2Lift, C2Pairs, C2Pool, reflect

W, B = 1.3, 0.4  # W_std, b_std of every parameterised layer


def signals(n=4, length=5, channels=2, seed=0):
    return np.random.default_rng(seed).normal(size=(n, length, channels))


def res(*branch):
    return stax.serial(stax.FanOut(2), stax.parallel(stax.serial(*branch), stax.Identity()), stax.FanInSum())


def resnet(width=1, k=1, skip=True):
    block = res(stax.Relu(), C2Conv(width, W, B)) if skip else stax.serial(stax.Relu(), C2Conv(width, W, B))
    return stax.serial(C2Lift(width, W, B), stax.Relu(), C2Conv(width, W, B), block, stax.Relu(), C2Pool(),
                       stax.Dense(k, W, B))


def test_the_state_implements_the_protocol():
    x = signals()
    state = stax.serial(C2Lift(3), stax.Relu(), C2Conv(3)).kernel_fn.trace(x)
    assert isinstance(state, C2Pairs) and isinstance(state, KernelState)
    assert state.output()[0].shape == (4, 4, 2, 2)


def test_linear_network_closed_form():
    """Lift → C2Conv → C2Pool: with x̄ = (x + s·x)/2 the pooled lift is K₀ = W²⟨x̄, x̄'⟩/(nC) + b²,
    Θ₀ = K₀; then K = W² K₀ + b², Θ = K + W² Θ₀ (the group convolution's mean over the group)."""
    x1, x2 = signals(), signals(3, seed=1)
    n, C = x1.shape[1:]
    m1, m2 = (x1 + reflect(x1)) / 2, (x2 + reflect(x2)) / 2
    k0 = W**2 * np.einsum("aic,bic->ab", m1, m2) / (n * C) + B**2
    k = W**2 * k0 + B**2
    t = k + W**2 * k0
    out = stax.serial(C2Lift(2, W, B), C2Conv(2, W, B), C2Pool()).kernel_fn(x1, x2)
    np.testing.assert_allclose(out.nngp, k, rtol=1e-12)
    np.testing.assert_allclose(out.ntk, t, rtol=1e-12)


def test_monte_carlo_nngp_with_a_residual_block():
    """Mean of f(x) f(x')ᵀ over 1000 networks of width 64 (32 outputs): observed max relative error 0.027
    (MC and 1/width); tolerance 0.08. Without the skip connection the kernel is outside it."""
    x = signals()
    K = resnet().kernel_fn(x, get="nngp")
    mc = mean_empirical(empirical_nngp, resnet(64, 32), x, 1000, seed=1, batch_size=100)
    scale = np.abs(K).max()
    assert np.abs(mc - K).max() / scale < 0.08
    no_skip = resnet(skip=False).kernel_fn(x, get="nngp")
    assert np.abs(mc - no_skip).max() / scale > 0.08


def test_monte_carlo_ntk_with_a_residual_block():
    """Mean empirical NTK of 8 networks of width 256 (4 outputs): observed 0.007 at 32 networks; tolerance 0.05."""
    x = signals()
    K = resnet().kernel_fn(x, get="ntk")
    mc = mean_empirical(empirical_ntk, resnet(256, 4), x, 8, seed=2)
    assert np.abs(mc - K).max() / np.abs(K).max() < 0.05


def test_equivariance_and_invariance_are_exact():
    """Reflecting x1 swaps its group axis before pooling, K(s·x, x')[g, h] = K(x, x')[gs, h], and leaves the
    pooled kernel unchanged (to rounding)."""
    x1, x2 = signals(), signals(3, seed=1)
    body = stax.serial(C2Lift(2, W, B), stax.Relu(), C2Conv(2, W, B), res(stax.Erf(), C2Conv(2, W, B)))
    a, b = body.kernel_fn(x1, x2), body.kernel_fn(reflect(x1), x2)
    for u, v in zip(a, b):
        np.testing.assert_allclose(v, u[:, :, ::-1, :], rtol=1e-13, atol=1e-14)
    pooled = stax.serial(body, stax.Relu(), C2Pool(), stax.Dense(1, W, B)).kernel_fn
    for u, v in zip(pooled(x1, x2), pooled(reflect(x1), reflect(x2))):
        np.testing.assert_allclose(v, u, rtol=1e-13, atol=1e-14)


def test_tile_store_needs_no_registration(tmp_path):
    """The layers' specs fingerprint as they are: a store resumes the same network and refuses another."""
    x = signals()
    kf = resnet().kernel_fn
    first = kf(x, store=str(tmp_path / "s"))
    np.testing.assert_allclose(kf(x, store=str(tmp_path / "s")).nngp, first.nngp, rtol=0)
    other = stax.serial(C2Lift(1, 2.0), C2Pool()).kernel_fn
    assert other.fingerprint() != kf.fingerprint()
    with pytest.raises(ValueError, match="different computation .*fingerprint"):
        other(x, store=str(tmp_path / "s"))


def test_refusals():
    x = signals()
    with pytest.raises(ValueError, match="C2Conv needs functions on C_2 as input, got raw inputs: put C2Lift first"):
        stax.serial(C2Conv(2), C2Pool()).kernel_fn(x)
    with pytest.raises(ValueError, match="C2Lift must be the first layer"):
        stax.serial(C2Lift(2), C2Lift(2)).kernel_fn(x)
    with pytest.raises(ValueError, match="C2Pool needs functions on C_2 as input, got a pooled kernel"):
        stax.serial(C2Lift(2), C2Pool(), C2Pool()).kernel_fn(x)
    with pytest.raises(ValueError, match="FanInSum cannot add a C2Pairs to a InvariantKernel"):
        stax.serial(C2Lift(2), stax.FanOut(2), stax.parallel(C2Conv(2), C2Pool()), stax.FanInSum()).kernel_fn(x)
