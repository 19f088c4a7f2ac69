"""``eqntk.core.fusion.apart``: the same values as the function, also where its predicate is false (NaN)."""

import numpy as np
import jax
import jax.numpy as jnp

from eqntk.core.fusion import apart


def _f(a, b, c):
    return jnp.sqrt(jnp.abs(a)) * b + 1.0, (None if c is None else c * 2)


def test_apart_returns_what_the_function_returns():
    jax.config.update("jax_enable_x64", True)
    rng = np.random.default_rng(0)
    a, b, c = (jnp.asarray(rng.normal(size=(3, 4))) for _ in range(3))
    got = jax.jit(lambda a, b, c: apart(_f, a, b, c))(a, b, c)
    want = _f(a, b, c)
    for g, w in zip(got, want):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-14)
    got = jax.jit(lambda a, b: apart(_f, a, b, None))(a, b)
    assert got[1] is None
    np.testing.assert_allclose(np.asarray(got[0]), np.asarray(_f(a, b, None)[0]), rtol=1e-14)


def test_apart_with_a_nan_first_element_takes_the_other_branch_to_the_same_values():
    a = jnp.asarray([[np.nan, 4.0], [9.0, 16.0]])
    b = jnp.ones((2, 2))
    got = jax.jit(lambda a, b: apart(_f, a, b, b))(a, b)
    want = _f(a, b, b)
    for g, w in zip(got, want):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-14)


def test_apart_is_a_conditional_in_the_compiled_program():
    # the fusion boundary is the conditional: if XLA folded it away the layers would fuse again
    x = jnp.ones((8, 8))
    hlo = jax.jit(lambda x: apart(lambda y: (jnp.sqrt(y) + 1.0,), x)[0] * 2).lower(x).compile().as_text()
    assert "conditional" in hlo
