"""Where the time of the Fourier-side energy-force tile goes, by the lift's bandlimit L.

    python benchmarks/md17_force_tile_bandlimit.py [--bandlimits 4 5 6] [--reps 3] [--batch 4] \\
        [--out benchmarks/results/md17_force_tile_bandlimit.json]

On MD17 ethanol (the embedded conformations, float64, NTK, the `eqntk qm9` network with bandlimit L,
SO3Pool oversampling 8 as for training on forces), for each L:

* the whole tile (``eqntk.so3.derivatives.energy_force_tile``) of ``batch x batch`` conformation pairs,
  in ms per conformation pair, and its flops (XLA's count, on a copy without the chunk loop) as a fraction
  of the float64 matmul peak measured in the same run;
* its stages (the tile's own functions), each jitted alone on one chunk of ``PAIR_CHUNK`` atom pairs and scaled to the tile's
  same-element atom pairs: the lift values on the quadrature points (by the separable synthesis the
  tile uses, and by the dense product with the Wigner table it used before, interleaved; their largest
  difference), the eight pointwise derivatives, their quadrature sums, their analyses (three to the lift's
  N_L coefficients, one to the N_2L-1 of ``Φ``), and ``Φ`` from the Clebsch-Gordan factors.

The stages do not add up to the tile exactly (the tile also computes the environments and their
Jacobians and the tangent algebra, and XLA fuses across stages). The model selection on MD17
(docs/forces.md) found L = 6 lowers the validation force error by 17% at N = 100; this says what it costs.
"""
import argparse
import math
import os
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from md17_force_kernel_fourier import tile_flops  # noqa: E402

import eqntk.data as D  # noqa: E402
from eqntk.experiments import qm9  # noqa: E402
from eqntk.experiments.common import environment_info, write_json  # noqa: E402
from eqntk.forces import _tile_program, conformation_kernel  # noqa: E402
from eqntk.so3 import derivatives as dv  # noqa: E402
from eqntk.so3.wigner import num_block_coeffs  # noqa: E402

#: the angular width chosen with each bandlimit on MD17 validation conformations (md17_energy_forces_selection.json)
WIDTH = {4: 0.5, 5: 0.4, 6: 0.35}


def best_of(f, *a, reps: int) -> float:
    jax.block_until_ready(f(*a))
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(f(*a))
        ts.append(time.perf_counter() - t0)
    return min(ts)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bandlimits", type=int, nargs="+", default=[4, 5, 6])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=4, help="conformations per tile side")
    ap.add_argument("--out", default="benchmarks/results/md17_force_tile_bandlimit.json")
    args = ap.parse_args(argv)
    d = D.load_md17()
    z, R = d["z"], np.asarray(d["R"], np.float64)
    b = args.batch
    R1, R2 = R[:b], R[b:2 * b]
    same_element_pairs = sum(int(np.sum(z == e)) ** 2 for e in np.unique(z)) * b * b
    C = dv.PAIR_CHUNK
    per = same_element_pairs / C / (b * b)  # chunks per conformation pair
    peak = harness.matmul_peak("float64")
    print(f"float64 matmul peak {peak / 1e9:.1f} GFLOP/s", flush=True)
    rows = []
    for L in args.bandlimits:
        cfg = qm9.QM9Config(oversampling=8.0, kernels=("so3",), bandlimit=L, width=WIDTH.get(L, 0.5))
        env0 = D.environment_fn(z, cfg.environment_spec())
        scale = 1.0 / math.sqrt(qm9.lift_variance(np.concatenate([np.asarray(env0(r)) for r in R[:20]])))
        kf = qm9.networks(cfg, 0)["so3"][0]
        k = conformation_kernel(kf, z, lambda r, env0=env0, scale=scale: env0(r) * scale, get="ntk")
        tile = _tile_program(k, "fourier")
        t0 = time.perf_counter()
        jax.block_until_ready(tile(R1, R2))
        compile_s = time.perf_counter() - t0
        tile_ms = 1e3 * best_of(tile, R1, R2, reps=args.reps) / (b * b)
        flops, lower_bound = tile_flops(k, "fourier", R1, R2)

        chain = dv.pooled_lift(kf)
        grid, euler, w = chain.quadrature()
        L2 = 2 * L - 1
        N, N2 = num_block_coeffs(L), num_block_coeffs(L2)
        D2 = jnp.asarray(dv._packed_wigner(L2, euler))
        Dj, w = D2[:, :N], jnp.asarray(w)
        der = dv._pointwise_derivatives(chain.psi("ntk"))

        M = jnp.asarray(np.random.default_rng(0).normal(size=(C, N)) * 0.1)
        q = jnp.ones((C, 1))
        # the tile's own lift values (dv._lift_values); without the grid, the dense product it used before
        dense = jax.jit(lambda M, Dj=Dj, L=L: dv._lift_values(M, None, Dj, L) + 0.1)
        separable = jax.jit(lambda M, grid=grid, Dj=Dj, L=L: dv._lift_values(M, grid, Dj, L) + 0.1)
        lift_diff = float(jnp.max(jnp.abs(dense(M) - separable(M))))
        lift = {"dense": [], "separable": []}
        for _ in range(args.reps):  # interleaved
            lift["dense"].append(best_of(dense, M, reps=1))
            lift["separable"].append(best_of(separable, M, reps=1))
        B = separable(M)
        derivs = jax.jit(lambda B, q=q: der(B, q, q))
        v = derivs(B)
        x3 = jnp.concatenate([v[key] for key in ("B", "Bqp", "qB")])
        analyse2 = jax.jit(lambda x, g=grid, L2=L2, D2=D2, w=w: dv._analyse(x, g, L2, D2, w))
        stages = {
            "lift values, dense product (before)": min(lift["dense"]),
            "lift values, separable synthesis": min(lift["separable"]),
            "pointwise derivatives": best_of(derivs, B, reps=args.reps),
            "quadrature sums": best_of(jax.jit(lambda v, w=w: jnp.stack([v[key] @ w for key in ("psi", "q", "qp", "qqp")])),
                                       v, reps=args.reps),
            "analyses to N_L (three)": best_of(jax.jit(lambda x, g=grid, L=L, D2=D2, w=w: dv._analyse(x, g, L, D2, w)),
                                               x3, reps=args.reps),
            "analysis to N_2L-1": best_of(analyse2, v["BB"], reps=args.reps),
        }
        A2 = analyse2(v["BB"])
        stages["Phi from Clebsch-Gordan factors"] = best_of(jax.jit(lambda A, L=L: dv._phi(A, L)), A2, reps=args.reps)
        stages_ms = {key: 1e3 * t * per for key, t in stages.items()}
        row = {"bandlimit": L, "width": cfg.width, "quadrature_points": int(euler.shape[0]),
               "grid": list(grid.shape), "N_L": N, "N_2L-1": N2, "compile_s": compile_s,
               "tile_ms_per_pair": tile_ms, "tile_gflop": flops / 1e9, "flops_lower_bound": lower_bound,
               "fraction_of_matmul_peak": flops / (1e-3 * tile_ms * b * b) / peak, "stages_ms_per_pair": stages_ms,
               "lift_dense_over_separable": min(lift["dense"]) / min(lift["separable"]),
               "lift_max_abs_difference": lift_diff, "load_average": harness.load_average()}
        rows.append(row)
        print(f"L = {L}: {row['quadrature_points']} points, N_L {N}, N_2L-1 {N2}; tile {tile_ms:.1f} ms per "
              f"conformation pair, {row['fraction_of_matmul_peak']:.2f} of the matmul peak (compile {compile_s:.0f} s; "
              f"load {row['load_average']})", flush=True)
        for key, ms in stages_ms.items():
            print(f"    {key:40s} {ms:8.2f} ms per conformation pair", flush=True)
        write_json(args.out, {"experiment": "md17_force_tile_bandlimit", "args": vars(args),
                              "tile": f"R[:{b}] x R[{b}:{2 * b}] of the embedded MD17 ethanol conformations, float64, NTK",
                              "same_element_atom_pairs_per_conformation_pair": same_element_pairs // (b * b),
                              "pair_chunk": C, "float64_matmul_peak_gflops": peak / 1e9, "results": rows, "environment": environment_info()})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
