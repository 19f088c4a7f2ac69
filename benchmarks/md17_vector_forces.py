"""MD17 ethanol: per-atom force vectors predicted directly by the equivariant (l = 1) matrix kernel.

    python benchmarks/md17_vector_forces.py --data PATH/md17_ethanol_2000.npz --n-train 50 100 200 500 \\
        --n-val 200 --n-test 500 --seeds 0 [--store DIR] --out benchmarks/results/md17_vector_forces.json

Variant (c) of issue 14. The network is the `eqntk qm9` default's lift and nonlinearity ending in a
group convolution instead of a pool, ``S2ConvSO3(·, 4) → Rbf(0.5) → SO3ConvSO3(·, 2)``; the
degree-1 blocks of its kernel between two atoms' environments are a 3 × 3 matrix kernel
``K(a, a')`` with ``K(R a, R' a') = R K(a, a') R'ᵀ`` (:mod:`eqntk.so3.vector`). Each atom's
force is regressed on the atoms of the same element in the training conformations (kernel ridge
regression on the ``(3n, 3n)`` block matrix, one per element, the relative ridge chosen per
element on the validation conformations' forces). No energies are used and the predicted force
field is not a gradient (not conservative).

The model and splits are those of ``eqntk md17`` (:mod:`eqntk.experiments.md17`; the same test
conformations as ``benchmarks/md17_forces.py`` for the same ``--test-seed``; per seed a validation
set and nested training sets); this script runs several seeds and records them. MAE per Cartesian force
component over all atoms of the test conformations, kcal/mol/Å and meV/Å.
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
from eqntk.experiments import md17, qm9  # noqa: E402
from eqntk.experiments.common import DEFAULT_RIDGES, environment_info, psd_tolerance, write_json  # noqa: E402
from md17_forces import ANCHORS, summarise  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="md17_ethanol_2000.npz (z, R, E, F)")
    p.add_argument("--n-train", type=int, nargs="+", default=[50, 100, 200, 500])
    p.add_argument("--n-val", type=int, default=200)
    p.add_argument("--n-test", type=int, default=500)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--test-seed", type=int, default=0)
    p.add_argument("--oversampling", type=float, default=6.0, help="of the SO3ConvSO3")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float64", help="of the kernel computation")
    p.add_argument("--ridges", choices=["default", "md17"], default="md17",
                   help="relative ridge grid: the experiments' DEFAULT_RIDGES (1e-7...1e-1) or md17.RIDGES (from 1e-9)")
    p.add_argument("--store", default=None, help="a directory: each kernel keeps its finished tiles in "
                   "<store>/seed<seed>/Z<element>_{pool,test}, and a rerun resumes where it stopped")
    p.add_argument("--out", default="benchmarks/results/md17_vector_forces.json")
    args = p.parse_args(argv)

    d = D.load_md17(args.data)
    z, R, F = d["z"], d["R"], d["F"]
    n_conf, n_at = R.shape[0], z.size
    cfg = md17.MD17Config(source=args.data, n_train=tuple(args.n_train), n_val=args.n_val, n_test=args.n_test,
                          test_seed=args.test_seed, oversampling=args.oversampling, dtype=args.dtype)
    ridge_grid = DEFAULT_RIDGES if args.ridges == "default" else md17.RIDGES
    kf, spec = md17.network(cfg)
    ms = D.MoleculeSet.from_counts(np.full(n_conf, n_at), np.tile(z, n_conf), R.reshape(-1, 3))
    x_all = D.atomic_environments(ms, spec)  # (n_conf * 9, L², C)
    rows, seconds = [], {}
    for seed in args.seeds:
        test_idx, val, train = md17.split(n_conf, args.n_test, args.n_val, max(args.n_train), seed, args.test_seed)
        pool = np.concatenate([val, train])
        rows_pool = (pool[:, None] * n_at + np.arange(n_at)).ravel()
        scale = 1.0 / np.sqrt(qm9.lift_variance(x_all[rows_pool]))  # from training/validation data only
        t0 = time.perf_counter()
        kernels = md17.element_kernels(kf, (x_all * scale).astype(args.dtype), z, pool, test_idx, tile=128,
                                       progress=True, log=lambda m: print(f"seed {seed}{m}", flush=True),
                                       store=None if args.store is None else os.path.join(args.store, f"seed{seed}"))
        seconds[f"kernels_seed{seed}"] = time.perf_counter() - t0
        for n in args.n_train:
            for kind in ("ntk", "nngp"):
                pred, ridges, val_mae = md17.fit_forces(kernels, F[pool], F[test_idx].shape, args.n_val, n, kind,
                                                        ridge_grid, psd_tolerance(args.dtype, atoms=True))
                f_mae = float(np.mean(np.abs(pred - F[test_idx])))
                row = {"kernel": f"so3_l1_{kind}", "variant": "force vectors (l = 1 matrix kernel)", "n_train": n,
                       "seed": seed, "ridge_rel_by_element": ridges, "force_mae_kcal_mol_A": f_mae,
                       "force_mae_meV_A": f_mae * md17.KCAL_MOL_IN_MEV,
                       "val_force_mae_meV_A": val_mae * md17.KCAL_MOL_IN_MEV}
                rows.append(row)
                print(f"seed {seed} N = {n:5d} {kind}: force MAE {row['force_mae_meV_A']:7.1f} meV/Å "
                      f"(ridges {ridges})", flush=True)
            write_json(args.out, _result(args, rows, seconds, cfg, spec))
    write_json(args.out, _result(args, rows, seconds, cfg, spec))
    print(f"wrote {args.out}")


def _result(args, rows, seconds, cfg, spec) -> dict:
    summary = summarise(rows, args.n_train, ("force_mae_meV_A",))
    return {"experiment": "md17_vector_forces", "args": {**vars(args), "data": os.path.basename(args.data)},
            "network": (f"S2ConvSO3(256, 4) -> Rbf -> SO3ConvSO3(256, 2, oversampling={cfg.oversampling}), "
                        f"{args.dtype}, on " + repr(spec)),
            "results": summary, "per_seed": rows, "anchors": ANCHORS, "seconds": seconds,
            "load_average_end": harness.load_average(), "environment": environment_info()}


if __name__ == "__main__":
    sys.exit(main())
