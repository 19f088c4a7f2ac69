"""SO(3) quadrature accuracy, estimated and true, along the oversampling ladder of ``choose_oversampling``.

    python benchmarks/accuracy_ladder.py --out benchmarks/results/accuracy_ladder.json

For ``S2ConvSO3(·, L) → σ → SO3Pool(o) → Dense(1)`` on random signals of several scales (the
pre-activation variance grows as scale²) and σ ∈ {Erf, Rbf(0.5), ReLU}: at every level ``o`` of the
ladder, the a-posteriori estimate ``δ_o = max|K_o − K_next| / max|K_next|`` that
:func:`eqntk.core.accuracy.choose_oversampling` uses, and the true error against oversampling 24
(max over NNGP and NTK), float64. Also the level chosen for rtol 1e-4 and 1e-6, and at every
level the true error of the Euler product grid of the same exact degree (``SO3Pool(rule=False)``)
beside that of the point rule the pool uses by default.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

from eqntk import stax  # noqa: E402
from eqntk.core.accuracy import DEFAULT_LEVELS, choose_oversampling  # noqa: E402
from eqntk.so3.quadrature import grid_bandlimit_for, pool_rule, so3_grid  # noqa: E402
from eqntk.experiments.common import environment_info, write_json  # noqa: E402

NONLINEARITIES = {"erf": stax.Erf, "rbf0.5": lambda: stax.Rbf(0.5), "relu": stax.Relu}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bandlimit", type=int, default=4)
    p.add_argument("--channels", type=int, default=2)
    p.add_argument("--n", type=int, default=12, help="signals (all pairs)")
    p.add_argument("--scales", type=float, nargs="+", default=[0.3, 1.0, 3.0])
    p.add_argument("--reference", type=float, default=24.0)
    p.add_argument("--out", default="benchmarks/results/accuracy_ladder.json")
    a = p.parse_args(argv)
    L = a.bandlimit
    rows = []
    t0 = time.perf_counter()
    for name, nl in NONLINEARITIES.items():
        def build(o, nl=nl, rule=True):
            return stax.serial(stax.S2ConvSO3(1, L), nl(), stax.SO3Pool(oversampling=o, rule=rule), stax.Dense(1))[2]

        for scale in a.scales:
            x = scale * np.random.default_rng(0).normal(size=(a.n, L * L, a.channels))
            ks = {o: build(o)(x, None, ("nngp", "ntk")) for o in (*DEFAULT_LEVELS, a.reference)}
            grid = {o: build(o, rule=False)(x, None, ("nngp", "ntk")) for o in DEFAULT_LEVELS}  # Euler product grid
            ref = ks[a.reference]

            def rel(k1, k2):
                return max(float(np.max(np.abs(np.asarray(getattr(k1, f)) - np.asarray(getattr(k2, f))))
                                 / np.max(np.abs(np.asarray(getattr(k2, f))))) for f in ("nngp", "ntk"))

            def points(o):
                # the pool uses its point rule only after maps that take the weights (Rbf; not Erf,
                # ReLU): identical values to the grid's mean the grid was used
                same = all(np.array_equal(np.asarray(getattr(ks[o], f)), np.asarray(getattr(grid[o], f)))
                           for f in ("nngp", "ntk"))
                rule = None if same else pool_rule(L, o, True)
                return {"quadrature": "grid" if rule is None else f"rule t={rule.degree}",
                        "points": so3_grid(grid_bandlimit_for(L, 1, o, True)).size if rule is None else rule.size,
                        "grid_points": so3_grid(grid_bandlimit_for(L, 1, o, True)).size,
                        "true_error_grid": rel(grid[o], ref)}

            ladder = [{"oversampling": o, "estimate": rel(ks[o], ks[nxt]), "true_error": rel(ks[o], ref), **points(o)}
                      for o, nxt in zip(DEFAULT_LEVELS, DEFAULT_LEVELS[1:])]
            ladder.append({"oversampling": DEFAULT_LEVELS[-1], "estimate": None,
                           "true_error": rel(ks[DEFAULT_LEVELS[-1]], ref), **points(DEFAULT_LEVELS[-1])})
            chosen = {}
            for rtol in (1e-4, 1e-6):
                try:
                    c = choose_oversampling(build, x, rtol, n_sample=a.n)
                    chosen[f"{rtol:g}"] = {"oversampling": c.oversampling, "estimate": c.estimate,
                                           "true_error": rel(ks[c.oversampling], ref)}
                except ValueError as err:
                    chosen[f"{rtol:g}"] = {"error": str(err)}
            var = float(np.mean(np.sum(x**2, axis=(1, 2)))) / (4 * np.pi * a.channels)
            rows.append({"nonlinearity": name, "scale": scale, "preactivation_variance": var, "ladder": ladder,
                         "chosen": chosen})
            print(f"{name:7s} scale {scale:4.1f} (variance {var:6.2f}): "
                  + "  ".join(f"o={r['oversampling']:g} est {r['estimate'] if r['estimate'] is not None else float('nan'):.1e}"
                              f" true {r['true_error']:.1e} ({r['points']} pts; grid {r['true_error_grid']:.1e},"
                              f" {r['grid_points']} pts)" for r in ladder), flush=True)
            print("        chosen: " + ", ".join(f"rtol {k}: " + (f"o={v['oversampling']:g} (true {v['true_error']:.1e})"
                                                                   if "oversampling" in v else "not reached")
                                               for k, v in chosen.items()), flush=True)
    write_json(a.out, {"experiment": "accuracy_ladder", "args": vars(a), "results": rows,
                       "seconds": time.perf_counter() - t0, "load_average_end": harness.load_average(),
                       "environment": environment_info()})
    print(f"wrote {a.out}")


if __name__ == "__main__":
    sys.exit(main())
