"""Accuracy and cost of the energy–force kernel blocks against the SO3Pool quadrature oversampling.

    python benchmarks/md17_force_kernel_accuracy.py --oversampling 4 6 8 --reference 12 \\
        --out benchmarks/results/md17_force_kernel_accuracy.json

For pairs of conformations of the embedded MD17 ethanol subset (``eqntk.data.load_md17()``), the
blocks of :func:`eqntk.forces.energy_force_kernel` (``k``, ``−∂k/∂R'``, ``−∂k/∂R``, ``∂²k/∂R∂R'``) of
the `eqntk qm9` default SO(3) NTK (float64), each at several oversamplings of the pool's quadrature,
against a finer reference. Prints, per oversampling, the largest error of each block relative to
that block's largest reference entry (max over the pairs), and the seconds per pair of one compiled
program (the median of ``--repeats`` calls after compilation). The force–force block is the one the
quadrature hurts most: each derivative of the pooled integrand raises its degree.
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

import eqntk.data as D  # noqa: E402
from eqntk.experiments import qm9  # noqa: E402
from eqntk.forces import conformation_kernel, energy_force_kernel  # noqa: E402

BLOCKS = ("ee", "ef", "fe", "ff")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--oversampling", type=float, nargs="+", default=[4.0, 6.0, 8.0])
    p.add_argument("--reference", type=float, default=12.0)
    p.add_argument("--pairs", type=int, default=3, help="random pairs of conformations")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default="benchmarks/results/md17_force_kernel_accuracy.json")
    args = p.parse_args(argv)

    d = D.load_md17()
    z, R = d["z"], d["R"]
    spec = qm9.QM9Config().environment_spec()
    env0 = D.environment_fn(z, spec)
    ms = D.MoleculeSet.from_counts(np.full(50, z.size), np.tile(z, 50), R[:50].reshape(-1, 3))
    env_scale = 1.0 / np.sqrt(qm9.lift_variance(D.atomic_environments(ms, spec)))

    def environment(Rm):
        return env0(Rm) * env_scale

    pairs = np.random.default_rng(0).choice(len(R), size=(args.pairs, 2), replace=False)
    values, seconds = {}, {}
    for o in [*args.oversampling, args.reference]:
        kf = qm9.networks(qm9.QM9Config(oversampling=float(o)), 0)["so3"][0]
        f = jax.jit(energy_force_kernel(conformation_kernel(kf, z, environment, get="ntk")))
        jax.block_until_ready(f(R[0], R[1]))  # compile
        values[o] = [[np.asarray(v) for v in f(R[i], R[j])] for i, j in pairs]
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            jax.block_until_ready(f(R[2], R[3]))
            times.append(time.perf_counter() - t)
        seconds[o] = float(np.median(times))
    rows = []
    print(f"{'oversampling':>12} " + " ".join(f"{b:>10}" for b in BLOCKS) + "   s/pair")
    for o in args.oversampling:
        err = {b: max(float(np.max(np.abs(a[n] - r[n])) / np.max(np.abs(r[n])))
                      for a, r in zip(values[o], values[args.reference]))
               for n, b in enumerate(BLOCKS)}
        rows.append({"oversampling": o, "relative_error": err, "seconds_per_pair": seconds[o]})
        print(f"{o:12g} " + " ".join(f"{err[b]:10.1e}" for b in BLOCKS) + f"   {seconds[o]:.3f}")
    harness.write_result(args.out, {
        "experiment": "md17_force_kernel_accuracy", "args": vars(args),
        "network": "eqntk qm9 default SO(3) NTK (S2ConvSO3 -> Rbf(0.5) -> SO3Pool -> Dense), float64",
        "blocks": "ee = k, ef = -dk/dR', fe = -dk/dR, ff = d2k/dRdR' (one conformation pair, single program)",
        "reference_oversampling": args.reference, "reference_seconds_per_pair": seconds[args.reference],
        "rows": rows, "load_average": harness.load_average(), "python": harness.python_version()})


if __name__ == "__main__":
    main()
