"""Monte Carlo over finite networks: the empirical NNGP of an ensemble and the acceptance rule (test oracle).

Shared by the residual, SO(3)-residual, readout-layer and example-group tests.
"""

import jax
import numpy as np


def ensemble_nngp(body, x, n_seeds: int, W: float, B: float, seed: int = 0) -> np.ndarray:
    """Per-seed NNGP of ``serial(body, Dense(k, W, B))`` given the random ``body``: ``(n_seeds, N, N)``.

    The readout is integrated exactly, ``W² g(x)·g(x')/n + B²`` for the body's features ``g (N, n)``;
    what is left is the randomness of the body (residual blocks included).
    """
    keys = jax.random.split(jax.random.PRNGKey(seed), n_seeds)

    def one(key):
        _, params = body.init_fn(key, x.shape)
        g = body.apply_fn(params, x)
        return W**2 * g @ g.T / g.shape[-1] + B**2

    return np.asarray(jax.jit(jax.vmap(one))(keys))


def mean_empirical(kernel, network, x, n_networks: int, seed: int, batch_size=None) -> np.ndarray:
    """Mean over ``n_networks`` random draws of ``network = (init_fn, apply_fn, _)`` of ``kernel(apply_fn, params, x)``
    (e.g. :func:`eqntk.core.empirical.empirical_nngp` or ``empirical_ntk``): ``(N, N)``; ``batch_size`` networks at a
    time (``jax.lax.map``)."""
    init_fn, apply_fn, _ = network

    def one(key):
        _, params = init_fn(key, x.shape)
        return kernel(apply_fn, params, x)

    keys = jax.random.split(jax.random.PRNGKey(seed), n_networks)
    return np.asarray(jax.lax.map(one, keys, batch_size=batch_size).mean(0))


def check_ensemble(emp, kernel, wrong, width: int, n_se: float = 5.0, bias: float = 2.0) -> None:
    """The seeds' mean is within ``n_se`` standard errors plus a finite-width bias allowance (``bias/width``
    of the kernel's scale) of ``kernel``; ``wrong`` (another network: no skip, another readout) is outside
    1.5 times that tolerance somewhere, so the check can fail."""
    mean = emp.mean(axis=0)
    se = emp.std(axis=0, ddof=1) / np.sqrt(emp.shape[0])
    tol = n_se * se + bias / width * np.abs(kernel).max()
    err = np.abs(mean - kernel)
    assert np.all(err <= tol), (err.max(), (err / tol).max())
    assert np.any(np.abs(mean - wrong) > 1.5 * tol), (np.abs(mean - wrong).max(), tol.max())
