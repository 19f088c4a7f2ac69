"""Exact SO(3) quadrature and the separable grid ↔ Wigner-D transforms."""

import numpy as np
import jax.numpy as jnp
import pytest

from eqntk.so3 import transform as T
from eqntk.so3 import wigner as W
from eqntk.so3.quadrature import grid_bandlimit_for, so3_grid


def _integrals(B, J):
    """∫ D^l_mn over SO(3) by the grid of bandlimit B, for all l ≤ J: padded (J+1, 2J+1, 2J+1)."""
    g = so3_grid(B)
    a, b, c = g.euler_angles()
    D = np.asarray(W.wigner_D_padded(J + 1, a, b, c))
    return np.einsum("abc,abclmn->lmn", g.weights(), D)


@pytest.mark.parametrize("B", [3, 6])
def test_exact_up_to_stated_degree_and_not_beyond(B):
    g = so3_grid(B)
    assert abs(g.weights().sum() - 1) < 1e-14
    J = g.exact_degree
    I = _integrals(B, J + 1)
    ref = np.zeros_like(I)
    ref[0, J + 1, J + 1] = 1.0  # only D^0 = 1 has a non-zero mean
    np.testing.assert_allclose(I[: J + 1], ref[: J + 1], atol=1e-13)
    assert np.abs(I[J + 1]).max() > 1e-3  # degree 2B-1 is aliased


def test_products_of_bandlimit_B_functions_are_exact():
    B = 5
    g = so3_grid(B)
    a, b, c = g.euler_angles()
    D = np.asarray(W.wigner_D_padded(B, a, b, c))
    G = np.einsum("abc,abclmn,abcpqr->lmnpqr", g.weights(), D, D)
    ref = np.zeros_like(G)
    for l in range(B):
        for m in range(-l, l + 1):
            for n in range(-l, l + 1):
                ref[l, m + B - 1, n + B - 1, l, m + B - 1, n + B - 1] = 1 / (2 * l + 1)
    np.testing.assert_allclose(G, ref, atol=1e-13)


def _random_blocks(L, lead=(3,), seed=0):
    rng = np.random.default_rng(seed)
    return W.pad_blocks(jnp.asarray(rng.normal(size=lead + (W.num_block_coeffs(L),))))


@pytest.mark.parametrize("L,B", [(1, 1), (4, 4), (5, 9)])
def test_synthesis_matches_direct_evaluation(L, B):
    blk = _random_blocks(L)
    g = so3_grid(B)
    a, b, c = g.euler_angles()
    direct = jnp.einsum("plmn,abclmn->pabc", blk, W.wigner_D_padded(L, a, b, c))
    np.testing.assert_allclose(T.to_grid(blk, B), direct, atol=1e-12)


@pytest.mark.parametrize("L,B,L_out", [(4, 4, 4), (5, 8, 3), (3, 6, 5)])
def test_round_trip_and_projection(L, B, L_out):
    blk = _random_blocks(L, seed=1)
    back = T.from_grid(T.to_grid(blk, B), B, L_out)
    k = min(L, L_out)
    ref = jnp.zeros_like(back)
    c0, c1 = L - k, L_out - k
    ref = ref.at[..., :k, c1 : c1 + 2 * k - 1, c1 : c1 + 2 * k - 1].set(
        blk[..., :k, c0 : c0 + 2 * k - 1, c0 : c0 + 2 * k - 1])
    np.testing.assert_allclose(back, ref, atol=1e-12)


def test_grid_rule():
    # linear maps need only the exact degree (L_in - 1) + (L_out - 1)
    assert grid_bandlimit_for(6, 1, 5.0, nonlinear=False) == 6
    B = grid_bandlimit_for(6, 3, 2.0, nonlinear=True)
    assert 2 * B - 2 >= 2 * 5 + 2
    with pytest.raises(ValueError):
        T.transform_tables(3, 4)


@pytest.mark.parametrize("L,B,L_out", [(3, 4, 2), (5, 7, 5)])
def test_dense_and_separable_slice_routes_agree(L, B, L_out):
    import jax

    blk = _random_blocks(L, lead=(2, 3), seed=2)
    out = {}
    for route in ("dense", "separable"):
        xs, synth = T.slice_plan(B, L, route).synthesiser(blk)
        xa, analyse, finish = T.slice_plan(B, L_out, route).analyser(blk.dtype)
        vals = jax.lax.map(synth, xs)  # (nβ, 2, 3, nα, nγ)
        partial = jax.lax.map(lambda t: analyse(t[0] ** 2, t[1]), (vals, xa))
        out[route] = (jnp.moveaxis(vals, 0, -2), finish(partial))
    np.testing.assert_allclose(out["dense"][0], out["separable"][0], atol=1e-12)
    np.testing.assert_allclose(out["dense"][0], T.to_grid(blk, B), atol=1e-12)
    np.testing.assert_allclose(out["dense"][1], out["separable"][1], atol=1e-12)


# ------------------------------------------------------------------ point rules

from math import prod  # noqa: E402

from eqntk.so3.quadrature import SO3Rule, pool_rule, so3_rule, stored_rule_degrees  # noqa: E402


def _double_factorial(n):
    return prod(range(n, 0, -2)) if n > 0 else 1


@pytest.mark.parametrize("t", stored_rule_degrees())
def test_rule_is_exact_to_its_degree_and_positive(t):
    rule = so3_rule(t)
    assert isinstance(rule, SO3Rule) and rule.degree == t
    assert np.all(rule.weights > 0) and abs(rule.weights.sum() - 1) < 1e-13
    a, b, c = rule.euler.T
    D = np.asarray(W.wigner_D_padded(t + 1, a, b, c, dtype=np.float64, xp=np))
    I = np.einsum("p,plmn->lmn", rule.weights, D)
    ref = np.zeros_like(I)
    ref[0, t, t] = 1.0
    np.testing.assert_allclose(I, ref, atol=1e-12)
    # fewer points than the product grid of the same exact degree (the reason to ship it)
    assert rule.size < so3_grid(t // 2 + 1).size


@pytest.mark.parametrize("t", stored_rule_degrees())
def test_rule_integrates_rotation_matrix_monomials_in_closed_form(t):
    """Independent of the Wigner code: each column of a Haar rotation is uniform on S², so
    ∫ R_1j^a R_2j^b R_3j^c = (a-1)!!(b-1)!!(c-1)!!/(a+b+c+1)!! for even a, b, c (0 if any is odd);
    a monomial of degree a+b+c in the entries of R has Wigner degree ≤ a+b+c."""
    rule = so3_rule(t)
    R = np.asarray(W.matrix_from_euler(*[jnp.asarray(v) for v in rule.euler.T]))  # (N, 3, 3)
    rng = np.random.default_rng(t)
    for _ in range(12):
        e = rng.multinomial(rng.integers(1, t + 1), [1 / 3] * 3)  # a + b + c ≤ t
        j = rng.integers(3)
        col = R[:, :, j]
        got = rule.weights @ np.prod(col ** e[None, :], axis=1)
        ref = 0.0 if np.any(e % 2) else (prod(_double_factorial(k - 1) for k in e)
                                          / _double_factorial(int(e.sum()) + 1))
        assert abs(got - ref) < 1e-12, (e, got, ref)


def test_pool_rule_replaces_the_grid_of_the_same_exact_degree():
    for l_in, s, nonlinear in ((4, 4.0, True), (4, 3.0, True), (4, 1.0, False), (2, 3.0, True)):
        B = grid_bandlimit_for(l_in, 1, s, nonlinear)
        rule = pool_rule(l_in, s, nonlinear)
        if rule is not None:
            assert rule.degree == 2 * B - 2 and rule.size < so3_grid(B).size
    assert pool_rule(12, 24.0, True) is None  # no stored rule that exact: the product grid
