"""The energy-force kernel blocks by Fourier-side derivatives against autodiff: agreement and speed.

    python benchmarks/md17_force_kernel_fourier.py [--osf 8 6] [--kinds nngp ntk] [--reps 3] [--batch 4] \\
        [--out benchmarks/results/md17_force_kernel_fourier.json]

For the `eqntk qm9` network (S2ConvSO3 -> Rbf -> SO3Pool -> Dense) on MD17 ethanol (the embedded
conformations, float64), it computes the blocks (ee, ef, fe, ff) of a batch x batch tile of conformation
pairs by both routes of eqntk.forces.energy_force_gram:

* ``autodiff``: forward-over-reverse differentiation of the conformation kernel (27 tangents through a
  reverse pass, every tangent through every point of the pool's quadrature);
* ``fourier``: :mod:`eqntk.so3.derivatives` (each pointwise derivative analysed once per atom pair,
  then tangent algebra on the 84 Wigner coefficients of the lift),

checks that they agree (max |difference| / max |entry| per block) and times both, interleaved in one
process. The flops of each compiled tile (XLA's cost analysis) over its time, against the machine's
float64 matmul peak measured in the same run, give the fraction of the machine each route reaches (XLA
counts a loop's body once: the Fourier tile's flops are counted on a copy without its chunk loop, and a
count that still has a loop is flagged ``flops_lower_bound``). ``md17_force_kernel_fourier_prototype.json`` holds the measurements of the prototype this
replaced (stop 27), including a closed-form Rbf variant that was not carried into the library.
"""
import argparse
import math
import os
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

import eqntk.data as D  # noqa: E402
from eqntk.experiments import qm9  # noqa: E402
from eqntk.experiments.common import environment_info, write_json  # noqa: E402
from eqntk.forces import _tile_program, conformation_kernel  # noqa: E402
from eqntk.so3 import derivatives as dv  # noqa: E402
from eqntk.so3.derivatives import pooled_lift  # noqa: E402

GAMMA, W_STD = 0.5, 1.0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--osf", type=float, nargs="+", default=[8.0, 6.0])
    ap.add_argument("--kinds", nargs="+", choices=["nngp", "ntk"], default=["nngp", "ntk"])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=4, help="conformations per tile side")
    ap.add_argument("--out", default="benchmarks/results/md17_force_kernel_fourier.json")
    args = ap.parse_args(argv)
    d = D.load_md17()
    z, R = d["z"], np.asarray(d["R"], np.float64)
    env0 = D.environment_fn(z, qm9.QM9Config().environment_spec())
    scale = 1.0 / math.sqrt(qm9.lift_variance(np.concatenate([np.asarray(env0(r)) for r in R[:20]])))

    def env(r):
        return env0(r) * scale

    b = args.batch
    R1, R2 = R[:b], R[b:2 * b]
    peak = harness.matmul_peak("float64")
    print(f"float64 matmul peak {peak / 1e9:.1f} GFLOP/s", flush=True)
    rows = []
    for osf in args.osf:
        kf = qm9.networks(qm9.QM9Config(oversampling=osf, kernels=("so3",), gamma=GAMMA, w_std=W_STD), 0)["so3"][0]
        points = pooled_lift(kf).quadrature()[1].shape[0]
        for kind in args.kinds:
            k = conformation_kernel(kf, z, env, get=kind)
            progs, out = {}, {}
            for method in ("autodiff", "fourier"):
                progs[method] = _tile_program(k, method)
                t0 = time.perf_counter()
                out[method] = [np.asarray(v) for v in jax.block_until_ready(progs[method](R1, R2))]
                print(f"oversampling {osf} {kind} {method}: compile + first run {time.perf_counter() - t0:.1f} s",
                      flush=True)
            rel = {name: float(np.max(np.abs(a - f)) / np.max(np.abs(a)))
                   for name, a, f in zip(("ee", "ef", "fe", "ff"), out["autodiff"], out["fourier"])}
            times = {m: [] for m in progs}
            for _ in range(args.reps):  # interleaved
                for m, f in progs.items():
                    t0 = time.perf_counter()
                    jax.block_until_ready(f(R1, R2))
                    times[m].append(time.perf_counter() - t0)
            ms = {m: 1e3 * float(np.median(t)) / (b * b) for m, t in times.items()}
            counted = {m: tile_flops(k, m, R1, R2) for m in progs}
            flops = {m: v[0] for m, v in counted.items()}
            frac = {m: flops[m] / (1e-3 * ms[m] * b * b) / peak for m in progs}
            row = {"oversampling": osf, "kind": kind, "quadrature_points": points, "max_rel_diff": rel,
                   "ms_per_pair": ms, "speedup": ms["autodiff"] / ms["fourier"], "gflop_per_tile":
                   {m: v / 1e9 for m, v in flops.items()}, "fraction_of_matmul_peak": frac,
                   "flops_lower_bound": {m: v[1] for m, v in counted.items()},
                   "runs_ms_per_pair": {m: [1e3 * x / (b * b) for x in t] for m, t in times.items()},
                   "load_average": harness.load_average()}
            rows.append(row)
            print(f"  max rel diff {max(rel.values()):.1e}; autodiff {ms['autodiff']:.1f} ms/pair, fourier "
                  f"{ms['fourier']:.1f} ms/pair: {row['speedup']:.1f}x (load {row['load_average']}); "
                  f"fraction of the matmul peak: autodiff {frac['autodiff']:.2f}, fourier {frac['fourier']:.2f}",
                  flush=True)
            write_json(args.out, {"experiment": "md17_force_kernel_fourier", "args": vars(args),
                                  "float64_matmul_peak_gflops": peak / 1e9,
                                  "tile": f"R[:{b}] x R[{b}:{2 * b}] of the embedded MD17 ethanol conformations, float64",
                                  "results": rows, "environment": environment_info()})
    print(f"wrote {args.out}")


def tile_flops(k, method: str, R1, R2) -> tuple[float, bool]:
    """``(flops, lower_bound)`` of one tile of ``method``, by XLA's cost analysis (``harness.xla_flops``).

    XLA counts a loop's body once. The Fourier tile maps its atom pairs in chunks of ``PAIR_CHUNK`` (a loop), so
    its flops are counted on a copy compiled with one chunk holding every pair of the tile (the same
    arithmetic, no loop); a program that still has a loop gives a lower bound."""
    if method != "fourier":
        return harness.xla_flops(_tile_program(k, method), R1, R2)
    pairs = sum(int(np.sum(k.Z == e)) ** 2 for e in np.unique(k.Z)) * len(R1) * len(R2)
    return harness.xla_flops(dv.energy_force_tile(pooled_lift(k.kernel_fn), k.Z, k.environment, k.get,
                                                  pair_chunk=pairs), R1, R2)


if __name__ == "__main__":
    sys.exit(main())
