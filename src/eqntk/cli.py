"""The ``eqntk`` command.

``eqntk demo`` computes the exact SO(3) GCNN NNGP/NTK of a small embedded set
of spherical signals and checks its rotation invariance.
"""

from __future__ import annotations

import argparse
import sys
import time


def _enable_dtype(dtype: str):
    import jax

    jax.config.update("jax_enable_x64", dtype == "float64")


def cmd_demo(args) -> int:
    _enable_dtype(args.dtype)
    import numpy as np
    import jax
    import jax.numpy as jnp

    from . import stax
    from .so3.wigner import random_rotation, rotate_coeffs

    L = args.bandlimit
    rng = np.random.default_rng(0)
    n, C = args.n, 2
    # smooth random spherical signals: coefficient variance decaying with degree
    decay = np.repeat(1.0 / (1.0 + np.arange(L)) ** 1.5, 2 * np.arange(L) + 1)
    x = rng.normal(size=(n, L * L, C)) * decay[None, :, None]
    dt = jnp.float64 if args.dtype == "float64" else jnp.float32
    x = jnp.asarray(x, dt)

    _, _, kernel_fn = stax.serial(
        stax.S2ConvSO3(64, L), stax.Erf(), stax.SO3ConvSO3(64, max(L // 2, 1)), stax.Erf(),
        stax.SO3Pool(), stax.Dense(1),
    )
    print(f"eqntk demo: {n} spherical signals, bandlimit {L}, {C} channels, dtype {args.dtype}")
    print("network: S2ConvSO3 → Erf → SO3ConvSO3 → Erf → SO3Pool → Dense")
    t0 = time.perf_counter()
    k = kernel_fn(x)
    k.ntk.block_until_ready()
    t1 = time.perf_counter()
    a, b, g = random_rotation(jax.random.PRNGKey(1), (n,), dtype=dt)
    kr = kernel_fn(rotate_coeffs(x, a, b, g))
    dev = float(jnp.max(jnp.abs(kr.ntk - k.ntk)) / jnp.max(jnp.abs(k.ntk)))
    ev = np.linalg.eigvalsh(np.asarray(k.ntk, np.float64))
    print(f"{'quantity':<36}{'value':>14}")
    print(f"{'Gram size':<36}{f'{n} x {n}':>14}")
    print(f"{'time (incl. compile) [s]':<36}{t1 - t0:>14.2f}")
    print(f"{'mean NNGP diagonal':<36}{float(jnp.mean(jnp.diag(k.nngp))):>14.5f}")
    print(f"{'mean NTK diagonal':<36}{float(jnp.mean(jnp.diag(k.ntk))):>14.5f}")
    print(f"{'NTK eigenvalues min / max':<36}{f'{ev[0]:.2e} / {ev[-1]:.2e}':>14}")
    print(f"{'rotation invariance (rel. dev.)':<36}{dev:>14.1e}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="eqntk",
        description="Exact infinite-width kernels (NNGP, NTK) of group-convolutional networks.",
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="SO(3) GCNN kernel of embedded spherical signals, with an invariance check")
    d.add_argument("--n", type=int, default=32, help="number of signals (default 32)")
    d.add_argument("--bandlimit", type=int, default=6, help="input and lift bandlimit L (default 6)")
    d.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    d.set_defaults(func=cmd_demo)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
