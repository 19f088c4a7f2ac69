"""Is the QM9 fit limited by the kernels' precision? float32 vs float64 Grams, ridge by ridge.

    python benchmarks/qm9_precision.py --data PATH/qm9_subset10k_hartree.npz --pool 800 --n-train 400 \\
        --n-test 1000 --store STORE --out benchmarks/results/qm9_precision.json

The pool and splits of ``qm9_experiment.py select`` (validation molecules only; the curve's
test molecules are set aside). The SO(3) Grams of one configuration (``--set``, default: the
``eqntk qm9`` network) in float32 and in float64; reported: their difference relative to the
mean diagonal, the smallest eigenvalue of each training Gram relative to its mean diagonal, and
for every ridge of the grid the validation MAE with either Gram (mean over splits). If the
float32 MAE parts from the float64 MAE at the small ridges the selection picks, float32 is
what limits the fit there.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import qm9_experiment as qx  # noqa: E402

from eqntk.experiments import qm9  # noqa: E402
from eqntk.experiments.common import DEFAULT_RIDGES, environment_info, fit_predict, psd_tolerance, write_json  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None)
    p.add_argument("--test-seed", type=int, default=0)
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--pool", type=int, default=800)
    p.add_argument("--n-train", type=int, default=400)
    p.add_argument("--n-test", type=int, default=1000, help="the curve's test molecules, set aside (never used)")
    p.add_argument("--splits", type=int, default=6)
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=V")
    p.add_argument("--store", default=None)
    p.add_argument("--out", default="benchmarks/results/qm9_precision.json")
    args = p.parse_args(argv)
    ms, y, _, pool_idx = qx._data(args, args.pool, args.n_test)
    pool = ms.subset(pool_idx)
    yp, c = y[pool_idx], qm9.element_counts(pool)
    cfg = qx._config(argparse.Namespace(set=args.set, kernels=["so3"]))
    cfg.validate()
    grams = {}
    for dt in (np.float32, np.float64):
        name = np.dtype(dt).name
        # float32: the store of `qm9_experiment.py select` (its Grams are reused); float64 beside it
        st = None if args.store is None else (args.store if dt is np.float32 else os.path.join(args.store, name))
        gp, _, secs = qx._grams(cfg, pool, None, dt, st, print)["so3"]
        grams[name] = (gp, secs)
    rows = {"load_average": harness.load_average(), "config": qx._tag(cfg)}
    for kind in ("ntk", "nngp"):
        k32, k64 = grams["float32"][0][kind], grams["float64"][0][kind]
        scale = float(np.mean(np.diag(k64)))
        out = {"max_abs_diff_rel_mean_diag": float(np.abs(k32 - k64).max() / scale), "per_ridge": []}
        mae = {32: {r: [] for r in DEFAULT_RIDGES}, 64: {r: [] for r in DEFAULT_RIDGES}}
        eig = {32: [], 64: []}
        for split in range(args.splits):
            perm = np.random.default_rng(100 + split).permutation(args.pool)
            tr, val = perm[: args.n_train], perm[args.n_train:]
            res = yp - qm9.element_baseline(c[tr], yp[tr])(c)
            for bits, K in ((32, k32), (64, k64)):
                Ktr = K[np.ix_(tr, tr)]
                eig[bits].append(float(np.linalg.eigvalsh(0.5 * (Ktr + Ktr.T))[0] / np.mean(np.diag(Ktr))))
                for r in DEFAULT_RIDGES:
                    pred = fit_predict(Ktr, res[tr], K[np.ix_(val, tr)], r, psd_rtol=psd_tolerance("float32"))
                    mae[bits][r].append(1e3 * float(np.mean(np.abs(pred - res[val]))))
        for r in DEFAULT_RIDGES:
            out["per_ridge"].append({"ridge_rel": r, "val_mae_meV_float32": float(np.mean(mae[32][r])),
                                     "val_mae_meV_float64": float(np.mean(mae[64][r]))})
        out["min_eig_rel_float32"] = float(np.min(eig[32]))
        out["min_eig_rel_float64"] = float(np.min(eig[64]))
        rows[kind] = out
        print(f"{kind}: |K32 − K64| ≤ {out['max_abs_diff_rel_mean_diag']:.1e} × mean diag; min eigenvalue / mean "
              f"diag: float32 {out['min_eig_rel_float32']:.1e}, float64 {out['min_eig_rel_float64']:.1e}")
        for row in out["per_ridge"]:
            print(f"   ridge {row['ridge_rel']:7.0e}: val MAE float32 {row['val_mae_meV_float32']:7.1f}  "
                  f"float64 {row['val_mae_meV_float64']:7.1f} meV")
    rows["seconds"] = {k: v[1] for k, v in grams.items()}
    write_json(args.out, {"experiment": "qm9_precision", "args": vars(args), "results": rows,
                          "environment": environment_info()})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
