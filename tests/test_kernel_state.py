"""The kernel-state protocol (eqntk.core.kernel.KernelState): every state a real network produces
implements it, a layer whose op returns something else is refused, and the group layers' state checks
read alike (eqntk.core.kernel.wrong_state). The example group of tests/example_group/ is checked in
tests/test_example_group.py."""

import numpy as np
import pytest

from eqntk import stax
from eqntk.core.branching import Branches
from eqntk.core.kernel import Inputs, InvariantKernel, KernelState
from eqntk.core.layers import KernelFn, Layer
from eqntk.planar.kernel_state import SpatialPairs
from eqntk.so3.kernel_state import SO3Pairs

from example_group import C2Lift, C2Pairs

rng = np.random.default_rng(0)
VECTORS, IMAGES, SIGNALS, S2 = (rng.normal(size=s) for s in ((2, 3), (2, 5, 5, 2), (2, 4, 1), (2, 9, 2)))


@pytest.mark.parametrize("net, x, kind", [
    (stax.Identity(), VECTORS, Inputs),
    (stax.serial(stax.Dense(2), stax.Relu()), VECTORS, InvariantKernel),
    (stax.serial(stax.Conv(2, 3), stax.Relu()), IMAGES, SpatialPairs),
    (stax.serial(stax.Z2ConvP4(2, 3), stax.P4ConvP4(2, 3)), IMAGES, SpatialPairs),
    (stax.serial(stax.S2ConvSO3(2, 3), stax.Relu()), S2, SO3Pairs),
    (stax.serial(stax.S2ConvSO3(2, 3), stax.FanOut(2), stax.parallel(stax.SO3ConvSO3(2, 3), stax.Identity()),
                 stax.FanInSum()), S2, SO3Pairs),
    (stax.serial(stax.Dense(2), stax.FanOut(2)), VECTORS, Branches),
    (stax.serial(stax.Conv(2, 3), stax.FanOut(3), stax.parallel(stax.Relu(), stax.Identity(), stax.Conv(2, 3))),
     IMAGES, Branches),
    (C2Lift(2), SIGNALS, C2Pairs),
])
def test_every_state_implements_the_protocol(net, x, kind):
    state = net.kernel_fn.trace(x)
    assert type(state) is kind
    assert isinstance(state, KernelState)
    if isinstance(state, Branches):
        assert all(isinstance(s, KernelState) for s in state.states)


def test_non_states_are_not_kernel_states():
    assert not isinstance((np.zeros(2), np.zeros(2)), KernelState)
    assert not isinstance(np.zeros(2), KernelState)


def test_an_op_returning_no_state_is_refused():
    bad = Layer(lambda k, s: (s, ()), lambda p, x, **kw: x, KernelFn(lambda s: (s.x1, s.x2), name="Bad"))
    with pytest.raises(TypeError, match="Bad: its kernel op returned a tuple, which does not implement"):
        bad.kernel_fn(VECTORS)


@pytest.mark.parametrize("net, x, message", [
    (stax.serial(stax.Dense(2), stax.SO3Pool()), VECTORS,
     "SO3Pool needs functions on SO(3) as input, got a pooled kernel (one number per pair): put S2ConvSO3 first"),
    (stax.serial(stax.Conv(2, 3), stax.P4ConvP4(2, 3)), IMAGES,
     "P4ConvP4 needs functions on p4 as input, got plain CNN feature maps of size 5×5: put its lifting layer first"),
    (stax.serial(stax.FanOut(2), stax.GroupPool()), IMAGES,
     "GroupPool needs spatial feature maps as input, got 2 branches (after FanOut): put a Conv or a lifting layer"),
    (stax.serial(stax.Z2ConvP4(2, 3), stax.S2ConvSO3(2, 3)), IMAGES,
     "S2ConvSO3 needs spherical-harmonic coefficients of S² signals as input, got functions on p4 of size 5×5: "
     "S2ConvSO3 must be the first layer of a network"),
    (stax.serial(stax.S2ConvSO3(2, 3), stax.Z2ConvP4(2, 3)), S2,
     "Z2ConvP4 needs images as input, got functions on SO(3) of bandlimit 3: Z2ConvP4 must be the first layer"),
])
def test_state_checks_read_alike(net, x, message):
    with pytest.raises(ValueError) as e:
        net.kernel_fn(x)
    assert str(e.value).startswith(message)
