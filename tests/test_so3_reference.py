"""SO(3) kernels against the paper authors' reference vectors (tests/data/reference_vectors.npz, keys
so3_*; provenance in tests/data/README.md).

eqntk computes the continuum kernel; the authors' code evaluates σ on pairs of points of a
Driscoll–Healy (DH) grid of SO(3) (DESIGN §2). The two differ by that grid's aliasing. These
tests show

1. lift → Erf → pool: eqntk sits at the end of the references' own convergence (grids b = 6, 7, 8);
2. lift → ReLU → pool: agreement to 1e-3 (here: 1e-5);
3. every reference value is REPRODUCED to ~1e-12 by tests/so3_dense_oracle.py, an independent dense
   G × G emulation of the discretised network on the authors' grid (DH β, SOFT weights, α and γ
   on 2b − 1 points: with the textbook 2b points the emulation misses the references by up to
   0.7%, also tested);
4. full lift → σ → conv → σ → pool networks, where the references differ from eqntk by ~0.75%
   (their grid b = 3 is coarse): refining the emulation's grids (same signal and filter
   bandlimits) closes that gap monotonically, towards eqntk's continuum value;
5. the emulation and eqntk agree to 1e-10 where both are exact (linear network, quadratic σ,
   grids fine enough), and do not where the emulation's grid is too coarse.

Nothing here compares with numbers produced by the code under test: the references come from
the authors' package, and the emulation is a separate implementation (dense matrices on a
product grid, Wigner-D matrices of the grid points) of the same discretised network.
"""

import functools
import pathlib

import numpy as np
import pytest

from eqntk import stax
from eqntk.core.pointwise import AffineMap, ElementwiseMap, ErfMap, ReluMap
from so3_dense_oracle import DenseSO3Net, dense_kernel, dh_so3_grid
from eqntk.so3.wigner import wigner_D_padded

REF = pathlib.Path(__file__).with_name("data") / "reference_vectors.npz"


@pytest.fixture(scope="module")
def ref():
    return dict(np.load(REF))


def _rel(a, b):
    """Max-norm relative difference ``max|a − b| / max|b|``."""
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _cont(x, sigma, conv=None, oversampling=10):
    """eqntk's continuum kernel of lift(L1) → σ → [conv(L2) → σ] → pool → Dense (W = 1, no bias)."""
    L1 = 6 if conv is None else 3
    layers = [stax.S2ConvSO3(1, L1), sigma()]
    if conv is not None:
        layers += [stax.SO3ConvSO3(1, conv, oversampling=oversampling), sigma()]
    layers += [stax.SO3Pool(oversampling=oversampling), stax.Dense(1)]
    k = stax.serial(*layers)[2](x, None, ("nngp", "ntk"))
    return np.asarray(k.nngp), np.asarray(k.ntk)


# Networks of the reference groups, read from their config strings (checked below):
# lift bandlimit (6 or 7 on bandlimit-6 signals: the same), DH grid of each layer's output.
NETS = {
    0: dict(lift=6, grids=(6,), convs=(), sigma="erf"),
    1: dict(lift=7, grids=(7,), convs=(), sigma="erf"),
    2: dict(lift=8, grids=(8,), convs=(), sigma="erf"),
    3: dict(lift=7, grids=(7,), convs=(), sigma="relu"),
    4: dict(lift=3, grids=(3, 3), convs=(3,), sigma="erf"),
    5: dict(lift=3, grids=(3, 3), convs=(3,), sigma="relu"),
}
MAPS = {"erf": ErfMap, "relu": ReluMap}
LAYERS = {"erf": stax.Erf, "relu": stax.Relu}


def _net(i, **kw):
    c = NETS[i]
    return DenseSO3Net(min(c["lift"], 6), c["grids"], c["convs"], MAPS[c["sigma"]](), **kw)


@functools.lru_cache(maxsize=None)
def _dense_full(i, b):
    """Emulation of the full network of group i on grids (b, b), all pairs of the reference inputs."""
    x = np.load(REF)[f"so3_{i}_coeffs"]
    return dense_kernel(DenseSO3Net(3, (b, b), (3,), MAPS[NETS[i]["sigma"]]()), x)


def test_configs_are_the_networks_emulated(ref):
    for i, c in NETS.items():
        cfg = str(ref[f"so3_{i}_config"])
        assert cfg.startswith({"erf": "lift_erf_pool" if not c["convs"] else "full_erf",
                               "relu": "lift_relu_pool" if not c["convs"] else "full_relu"}[c["sigma"]])
        assert f"S2ConvSO3(bw=({6 if c['convs'] else c['lift']},{c['grids'][0]}))" in cfg
        assert ("Erf" if c["sigma"] == "erf" else "Relu") in cfg
        for L in c["convs"]:
            assert f"SO3ConvSO3(bw=({c['grids'][0]},{L}))" in cfg
        assert ref[f"so3_{i}_coeffs"].shape == (3, 36, 2)
        np.testing.assert_array_equal(ref[f"so3_{i}_coeffs"], ref["so3_0_coeffs"])


# ------------------------------------------------------------ 1, 2: continuum vs references


@pytest.fixture(scope="module")
def cont_lift(ref):
    x = ref["so3_0_coeffs"]
    return {"erf": _cont(x, stax.Erf), "relu": _cont(x, stax.Relu)}


def test_lift_erf_pool_sits_at_the_end_of_the_references_convergence(ref, cont_lift):
    """Grids b = 6, 7, 8 of the authors' code converge towards eqntk's value.

    Entrywise |ours − ref_8| ≤ 2 |ref_8 − ref_7|, ours is closer to ref_8 than to ref_6, and the
    relative difference to ref_8 is below 5e-4 (NNGP) / 2e-3 (NTK: its integrand E[σ'σ']·Θ is
    rougher near u = e and converges more slowly, as the references' own steps show).
    """
    for k, (name, tol) in enumerate([("nngp", 5e-4), ("ntk", 2e-3)]):
        ours = cont_lift["erf"][k]
        r6, r7, r8 = (ref[f"so3_{i}_{name}_reference"] for i in (0, 1, 2))
        assert np.all(np.abs(ours - r8) <= 2 * np.abs(r8 - r7) + 1e-9), name
        assert np.all(np.abs(ours - r8) < np.abs(ours - r6)), name
        # the references converge: steps shrink (else "the end of the convergence" means nothing)
        assert _rel(r8, r7) < _rel(r7, r6), name
        assert _rel(ours, r8) < tol, name


def test_lift_relu_pool(ref, cont_lift):
    for k, name in enumerate(("nngp", "ntk")):
        assert _rel(cont_lift["relu"][k], ref[f"so3_3_{name}_reference"]) < 1e-3, name


# ------------------------------------------------ 3: the dense emulation reproduces them


@pytest.mark.parametrize("i", [0, 1, 2, 3, 4, 5])
def test_dense_emulation_reproduces_references(ref, i):
    """The emulation on the authors' DH grid (2b − 1 azimuths) reproduces NNGP and NTK.

    For time, the grids b = 7, 8 of so3_1 and so3_2 (2366 and 3600 points, |G|² values per pair)
    are checked on one off-diagonal pair (all entries match the same way).
    ReLU's NTK is reproduced to ~1e-11 only: E[σ'σ'] = (π − θ)/(2π) with θ = arccos of a correlation
    that is 1 on the diagonal pairs, where θ loses half the digits.
    """
    x = ref[f"so3_{i}_coeffs"]
    rows, cols = (slice(0, 1), slice(2, 3)) if i in (1, 2) else (slice(None), slice(None))
    if i in (4, 5):
        n, t = _dense_full(i, 3)
    else:
        n, t = dense_kernel(_net(i), x[rows], None if i not in (1, 2) else x[cols])
    np.testing.assert_allclose(n, ref[f"so3_{i}_nngp_reference"][rows, cols], rtol=1e-12, atol=0)
    np.testing.assert_allclose(t, ref[f"so3_{i}_ntk_reference"][rows, cols], rtol=1e-9 if i in (3, 5) else 1e-12,
                               atol=0)


def test_textbook_dh_grid_does_not_reproduce_references(ref):
    """With 2b azimuths (8b³ points) the emulation misses by far more than its own precision:
    the reproduction above identifies the authors' grid, it is not a tautology."""
    for i in (4,):
        n, t = dense_kernel(_net(i, grid_kind="soft"), ref[f"so3_{i}_coeffs"])
        assert _rel(n, ref[f"so3_{i}_nngp_reference"]) > 1e-4
        assert _rel(t, ref[f"so3_{i}_ntk_reference"]) > 1e-4


# ------------------------------------------- 4: full networks: the gap is the grid's aliasing


@pytest.mark.parametrize("i", [4, 5])
def test_full_network_gap_is_discretisation_and_closes_under_refinement(ref, i):
    """full_erf / full_relu: lift 6→3, σ, conv 3→3, σ, pool on the authors' grid b = 3.

    The references differ from eqntk by ~0.75% (< 2% asserted). The emulation reproduces them on
    b = 3 (test above); refining its grids (b = 3, 4, 6 for both σ; signals and filters keep
    bandlimit 3) shrinks its distance to eqntk's continuum kernel monotonically, by more than
    20× over these steps (Erf: 7e-3 → 6e-4 → 9e-6; ReLU, whose kink converges algebraically:
    8e-3 → 4e-4 → 2e-5 NNGP, 6e-3 → 8e-4 → 1e-4 NTK; b = 8, 10 continue the trend, Erf 1e-8).
    At b = 3 the gap equals the references' gap.
    """
    c = NETS[i]
    x = ref[f"so3_{i}_coeffs"]
    cont = _cont(x, LAYERS[c["sigma"]], conv=3)
    refs = (ref[f"so3_{i}_nngp_reference"], ref[f"so3_{i}_ntk_reference"])
    for k in range(2):
        assert 1e-4 < _rel(refs[k], cont[k]) < 2e-2
    gaps = []
    for b in (3, 4, 6):
        n, t = _dense_full(i, b)
        gaps.append((_rel(n, cont[0]), _rel(t, cont[1])))
    gaps = np.array(gaps)
    # rtol 1e-7 of a ~4e-3 gap: the ReLU NTK reproduces the references only to ~1e-10 relative
    # (its angle loses half its digits on self pairs), see the reproduction test above
    np.testing.assert_allclose(gaps[0], [_rel(refs[0], cont[0]), _rel(refs[1], cont[1])], rtol=1e-7)
    assert np.all(np.diff(gaps, axis=0) < 0), gaps
    assert np.all(gaps[-1] < gaps[0] / 20), gaps


# ------------------------------------------ 5: exact agreement where both are exact


def _signals(n, L, C, seed):
    rng = np.random.default_rng(seed)
    d = np.repeat(1.0 / (1.0 + np.arange(L)), 2 * np.arange(L) + 1)
    return 0.6 * rng.normal(size=(n, L * L, C)) * d[None, :, None]


def _quad(t):
    return t + t**2 / 2


def _ident(t):
    return t


@pytest.mark.parametrize("fn", [_ident, _quad], ids=["linear", "quadratic"])
def test_dense_equals_continuum_where_both_are_exact(fn):
    """σ = identity (a linear network) or t + t²/2, lift 3 → σ → conv 2 → σ → pool → Dense, with
    W ≠ 1 and bias. The emulation's quadratures are exact when the lift grid integrates
    σ(K_1) D^l of degree 2(L1 − 1) + (L2 − 1) (b1 ≥ L1 + (L2 − 1)/2 = 3.5 → 4) and the pooling
    integrates σ(K_2) (b2 ≥ L2); eqntk's engine is exact for polynomial σ of degree ≤ its
    oversampling. Both then compute the same number: 1e-10. On b1 = 3 the quadratic case is not
    exact and the two differ (the test can tell). Gauss–Hermite with 4 nodes per dimension is
    exact for these σ (E[σ(a)σ(b)], E[σ'(a)σ'(b)] have degree ≤ 2 in each variable)."""
    W, bstd = 1.3, 0.4
    L1, L2 = 3, 2
    x = _signals(3, L1, 2, seed=7)
    layers = [stax.S2ConvSO3(1, L1, W, bstd)]
    if fn is _quad:
        layers.append(stax.Elementwise(fn, n_quadrature=4))
    layers.append(stax.SO3ConvSO3(1, L2, W, bstd))
    if fn is _quad:
        layers.append(stax.Elementwise(fn, n_quadrature=4))
    layers += [stax.SO3Pool(), stax.Dense(1, W, bstd)]
    k = stax.serial(*layers)[2](x, None, ("nngp", "ntk"))
    m = ElementwiseMap(fn, n=4)
    n, t = dense_kernel(DenseSO3Net(L1, (4, 2), (L2,), m, W_std=W, b_std=bstd), x)
    np.testing.assert_allclose(n, k.nngp, rtol=1e-10, atol=0)
    np.testing.assert_allclose(t, k.ntk, rtol=1e-10, atol=0)
    if fn is _quad:
        n3, _ = dense_kernel(DenseSO3Net(L1, (3, 2), (L2,), m, W_std=W, b_std=bstd), x, with_ntk=False)
        assert _rel(n3, np.asarray(k.nngp)) > 1e-8


# -------------------------------------------------------------- the grid itself


@pytest.mark.parametrize("kind", ["authors", "soft"])
def test_dh_grid_integrates_products_of_bandlimit_b_functions(kind):
    """Σ_g w_g D^l(g)_mn D^l'(g)_m'n' = δ δ δ / (2l+1) for l, l' < b (Peter–Weyl), and the
    weights sum to 1; degree 2b − 1 (authors) / 2b (soft) is where exactness ends."""
    b = 3
    g = dh_so3_grid(b, kind)
    n_ang = 2 * b - (1 if kind == "authors" else 0)
    assert g.size == 2 * b * n_ang**2
    assert abs(g.weights.sum() - 1) < 1e-14
    D = np.asarray(wigner_D_padded(b, g.alpha, g.beta, g.gamma))  # (N, b, P, P)
    F = D.reshape(g.size, -1)
    gram = F.T @ (g.weights[:, None] * F)
    l = np.repeat(np.arange(b), (2 * b - 1) ** 2)
    nonzero = np.abs(np.einsum("gi,gi->i", F, F)) > 0
    expected = np.diag(np.where(nonzero, 1.0 / (2 * l + 1), 0.0))
    np.testing.assert_allclose(gram, expected, atol=1e-13)
    # beyond: the integral of D^J_{JJ}-type functions of degree 2b-1 (authors: α frequency 2b-1 aliases)
    J = 2 * b - 1 if kind == "authors" else 2 * b
    DJ = np.asarray(wigner_D_padded(J + 1, g.alpha, g.beta, g.gamma))[:, J]
    assert np.max(np.abs(np.einsum("g,gmn->mn", g.weights, DJ))) > 1e-3
