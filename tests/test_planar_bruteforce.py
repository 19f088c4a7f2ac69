"""Planar kernels (|G| spatial blocks per pair) against a brute force over all |G|² blocks.

The brute force (tests/planar_bruteforce.py) runs DESIGN §3's recursion literally on
K((r, t), (r', t')) with explicit sums over filter offsets and group elements.
"""

import itertools

import jax
import numpy as np
import pytest

from eqntk import stax
from eqntk.core.kernel import Inputs
from eqntk.planar import groups as pg

import planar_bruteforce as bf

LIFT = {"trivial": stax.Conv, "p2": stax.Z2ConvP2, "p4": stax.Z2ConvP4, "p4m": stax.Z2ConvP4M}
CONV = {"trivial": stax.Conv, "p2": stax.P2ConvP2, "p4": stax.P4ConvP4, "p4m": stax.P4MConvP4M}
GROUP = {"trivial": pg.TRIVIAL, "p2": pg.P2, "p4": pg.P4, "p4m": pg.P4M}
ACT = {"relu": stax.Relu, "erf": stax.Erf}
SHAPE = {"trivial": (6, 5), "p2": (6, 5), "p4": (6, 6), "p4m": (5, 5)}  # (H, W), odd and even sides
FILTERS = {"SAME": [3, 3, 3], "VALID": [3, 1, 3], "CIRCULAR": [3, 5, 1]}


def net(group, layers, act, final_act, pooled, readout_bias=None):
    ls = []
    for i, (q, padding, b) in enumerate(layers):
        if i:
            ls.append(ACT[act]())
        ls.append((LIFT if i == 0 else CONV)[group](3, q, padding, b_std=b))
    if final_act:
        ls.append(ACT[act]())
    if pooled:
        ls += [stax.GroupPool(), stax.Dense(1, b_std=readout_bias)]
    return stax.serial(*ls)


def cases():
    """Every (padding, depth) for each group; bias and σ cycle so that each group sees all four."""
    out = []
    combos = [(None, "relu"), (0.4, "erf"), (0.4, "relu"), (None, "erf")]
    for gi, group in enumerate(("p4", "p4m", "p2", "trivial")):
        for k, (padding, depth) in enumerate(itertools.product(("SAME", "VALID", "CIRCULAR"), (1, 2, 3))):
            if group in ("p2", "trivial") and depth == 2:
                continue
            bias, act = combos[(k + gi) % 4]
            out.append((group, padding, depth, bias, act))
    return out


def kernels_both(group, layers, act, final_act, bias, x1, x2):
    """Per-element kernels of the stack and the pooled kernel of stack → GroupPool → Dense, in one jit."""
    a = net(group, layers, act, final_act, pooled=False).kernel_fn.op
    b = net(group, layers, act, final_act, pooled=True, readout_bias=bias).kernel_fn.op
    f = jax.jit(lambda u, v: (a(Inputs(u, v)).output(), b(Inputs(u, v)).output()))
    return f(x1, x2)


def _pair_images(group, C=2, seed=0):
    rng = np.random.default_rng(seed)
    H, W = SHAPE[group]
    return rng.normal(size=(2, H, W, C)), rng.normal(size=(2, H, W, C))


@pytest.mark.parametrize("group,padding,depth,bias,act", cases())
def test_blocks_and_pooled_match_bruteforce(group, padding, depth, bias, act):
    x1, x2 = _pair_images(group, seed=depth)
    x2 = x2[:1]
    layers = [(FILTERS[padding][i], padding, bias) for i in range(depth)]
    final_act = depth != 2  # also end on a linear layer
    lib = GROUP[group]
    per_el, pooled = kernels_both(group, layers, act, final_act, bias, x1, x2)
    mats = bf.generate(group)
    assert sorted(map(lambda A: A.tolist(), mats)) == sorted(map(lambda A: A.tolist(), lib.array))
    for a in range(2):
        for b in range(1):
            (K, T), (kp, tp) = bf.kernels(x1[a], x2[b], mats, layers, act, final_act, readout_bias=bias)
            scale = np.abs(K).max()
            for lib_k, bf_k in ((per_el[0], K), (per_el[1], T)):
                lib_k = np.asarray(lib_k[a, b])
                if lib.order == 1:
                    lib_k = lib_k[None]
                # every block (r, r') of the brute force is the library's block d = A_r' A_r⁻¹
                for r, r2 in itertools.product(range(len(mats)), repeat=2):
                    d = lib.index(mats[r2] @ np.round(np.linalg.inv(mats[r])).astype(int))
                    np.testing.assert_allclose(lib_k[d], bf_k[r, :, :, r2], rtol=0, atol=1e-12 * scale)
            np.testing.assert_allclose(pooled[0][a, b], kp, rtol=1e-12, atol=0)
            np.testing.assert_allclose(pooled[1][a, b], tp, rtol=1e-12, atol=0)


def test_variance_after_pooling_matches_bruteforce():
    """A nonlinearity after GroupPool needs the pooled self-kernels (the variances of the pooled features)."""
    x1, x2 = _pair_images("p4", seed=5)
    layers = [(3, "SAME", 0.2), (3, "SAME", 0.2)]
    f = stax.serial(net("p4", layers, "erf", True, pooled=True, readout_bias=0.1), stax.Erf(), stax.Dense(1))
    k = f.kernel_fn(x1, x2)
    for a, b in itertools.product(range(2), repeat=2):
        _, (kab, tab) = bf.kernels(x1[a], x2[b], "p4", layers, "erf", True, readout_bias=0.1)
        _, (kaa, _) = bf.kernels(x1[a], x1[a], "p4", layers, "erf", True, readout_bias=0.1)
        _, (kbb, _) = bf.kernels(x2[b], x2[b], "p4", layers, "erf", True, readout_bias=0.1)
        k2, t2 = bf.erf(kab, kaa, kbb, tab)
        np.testing.assert_allclose(k.nngp[a, b], k2, rtol=1e-12)
        np.testing.assert_allclose(k.ntk[a, b], k2 + t2, rtol=1e-12)
