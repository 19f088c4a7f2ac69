"""MD17 ethanol: energy-trained SO(3) kernel models, their energies and their forces −∂E/∂R.

    python benchmarks/md17_forces.py --data PATH/md17_ethanol_2000.npz --n-train 50 100 200 500 1000 \\
        --n-val 200 --n-test 500 --seeds 0 1 2 --out benchmarks/results/md17_forces.json

Variant (a) of issue 14: the models are trained on energies only (kernel ridge regression with
the molecular same-element kernel of the `eqntk qm9` default SO(3) network; the ridge chosen on
the validation conformations' energies), and the forces are the negative gradient of the
predicted energy, by automatic differentiation through the environments and the kernel
(:mod:`eqntk.forces`). Per seed: ``--n-test`` test conformations (fixed across seeds by
``--test-seed``; never used for a choice), ``--n-val`` validation conformations and nested
training sets from the rest. Forces are evaluated on the first ``--n-force-test`` test
conformations. MAEs: energy per conformation, forces per Cartesian component (the MD17
convention), in kcal/mol (/Å) and meV (/Å).

The data file is the shared ``md17_ethanol_2000.npz`` (2,000 conformations of the original
MD17: ``z (9,)``, ``R (2000, 9, 3)`` Å, ``E`` kcal/mol, ``F`` kcal/mol/Å).
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
from eqntk.experiments.md17 import KCAL_MOL_IN_MEV  # noqa: E402
from eqntk.experiments.common import (DEFAULT_RIDGES, environment_info, psd_tolerance,  # noqa: E402
                                      select_ridge, write_json)
from eqntk.forces import energies_and_forces, energy_fn, reference_weights  # noqa: E402

#: anchors (issue 14): original MD17 ethanol, N = 1,000, trained on forces (sGDML)
ANCHORS = {"sGDML (forces), N = 1,000": {"energy_meV": 3.0, "force_meV_per_A": 14.3}}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="md17_ethanol_2000.npz (z, R, E, F)")
    p.add_argument("--n-train", type=int, nargs="+", default=[50, 100, 200, 500, 1000])
    p.add_argument("--n-val", type=int, default=200)
    p.add_argument("--n-test", type=int, default=500)
    p.add_argument("--n-force-test", type=int, default=200)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--test-seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results/md17_forces.json")
    args = p.parse_args(argv)

    d = np.load(args.data)
    z, R, E, F = d["z"], d["R"], d["E"], d["F"]
    n_conf = R.shape[0]
    if args.n_test + args.n_val + max(args.n_train) > n_conf:
        raise SystemExit(f"{n_conf} conformations: fewer than test + validation + largest training set")
    test_idx = np.random.default_rng(args.test_seed).permutation(n_conf)[: args.n_test]
    rest = np.setdiff1d(np.arange(n_conf), test_idx)
    cfg = qm9.QM9Config()
    spec = cfg.environment_spec()
    kf, _ = qm9.networks(cfg, 0)["so3"]
    ms = D.MoleculeSet.from_counts(np.full(n_conf, z.size), np.tile(z, n_conf), R.reshape(-1, 3))
    x_all = D.atomic_environments(ms, spec)  # (n_conf * 9, L², C), float64
    env0 = D.environment_fn(z, spec)
    rows, seconds = [], {}
    for seed in args.seeds:
        perm = np.random.default_rng(1000 + seed).permutation(rest)
        val, train = perm[: args.n_val], perm[args.n_val: args.n_val + max(args.n_train)]
        pool = np.concatenate([val, train])
        atoms = lambda idx: (idx[:, None] * z.size + np.arange(z.size)[None, :]).ravel()  # noqa: E731
        scale = 1.0 / np.sqrt(qm9.lift_variance(x_all[atoms(pool)]))  # from training/validation data only
        x_pool = (x_all[atoms(pool)] * scale).astype(np.float32)
        x_test = (x_all[atoms(test_idx)] * scale).astype(np.float32)
        m_pool, m_test = ms.subset(pool), ms.subset(test_idx)
        t0 = time.perf_counter()
        gp = qm9.molecular_grams(kf, x_pool, m_pool, tile=cfg.tile, progress=True, label="pool x pool, ")
        gt = qm9.molecular_grams(kf, x_test, m_test, x_pool, m_pool, tile=cfg.tile, progress=True,
                                 label="test x pool, ")
        seconds[f"grams_seed{seed}"] = time.perf_counter() - t0
        n_v = len(val)
        env = lambda Rm: env0(Rm) * scale  # noqa: E731
        Rf, Ff = R[test_idx[: args.n_force_test]], F[test_idx[: args.n_force_test]]
        for n in args.n_train:
            tr = n_v + np.arange(n)
            y_mean = float(np.mean(E[pool[tr]]))
            y_tr, y_val, y_te = E[pool[tr]] - y_mean, E[val] - y_mean, E[test_idx] - y_mean
            for kind in ("ntk", "nngp"):
                K = gp[kind]
                k_tr, k_val = K[np.ix_(tr, tr)], K[np.ix_(np.arange(n_v), tr)]
                mae = lambda a, b: float(np.mean(np.abs(a - b)))  # noqa: E731
                ridge, val_mae, _, alpha = select_ridge(k_tr, y_tr, k_val, y_val, mae, DEFAULT_RIDGES,
                                                        psd_rtol=psd_tolerance("float32"), with_coef=True)
                e_mae = mae(gt[kind][:, tr] @ alpha, y_te)
                t1 = time.perf_counter()
                train_ms = ms.subset(pool[tr])
                efn = energy_fn(kf, (x_all[atoms(pool[tr])] * scale), train_ms.Z, reference_weights(train_ms, alpha),
                                z, env, get=kind, block=512)
                _, f_pred = energies_and_forces(efn, Rf, batch=8)
                f_mae = mae(f_pred, Ff)
                seconds[f"forces_seed{seed}_{kind}_{n}"] = time.perf_counter() - t1
                row = {"kernel": f"so3_{kind}", "variant": "energy-trained", "n_train": n, "seed": seed,
                       "ridge_rel": ridge, "val_energy_mae_kcal_mol": val_mae,
                       "energy_mae_kcal_mol": e_mae, "energy_mae_meV": e_mae * KCAL_MOL_IN_MEV,
                       "force_mae_kcal_mol_A": f_mae, "force_mae_meV_A": f_mae * KCAL_MOL_IN_MEV}
                rows.append(row)
                print(f"seed {seed} N = {n:5d} {kind}: energy MAE {row['energy_mae_meV']:7.1f} meV, force MAE "
                      f"{row['force_mae_meV_A']:7.1f} meV/Å (ridge {ridge:g}, forces {seconds[f'forces_seed{seed}_{kind}_{n}']:.0f} s)",
                      flush=True)
        write_json(args.out, _result(args, rows, seconds, cfg))
    write_json(args.out, _result(args, rows, seconds, cfg))
    print(f"wrote {args.out}")


def summarise(rows, n_train, keys) -> list:
    """Mean and std over splits of each ``keys`` column, per kernel and training size."""
    summary = []
    for kind in sorted({r["kernel"] for r in rows}):
        for n in n_train:
            rs = [r for r in rows if r["kernel"] == kind and r["n_train"] == n]
            if rs:
                summary.append({"kernel": kind, "n_train": n, "n_splits": len(rs),
                                **{k: float(np.mean([r[k] for r in rs])) for k in keys},
                                **{k + "_std": float(np.std([r[k] for r in rs])) for k in keys}})
    return summary


def _result(args, rows, seconds, cfg) -> dict:
    summary = summarise(rows, args.n_train, ("energy_mae_meV", "force_mae_meV_A"))
    return {"experiment": "md17_forces", "args": {**vars(args), "data": os.path.basename(args.data)},
            "network": "eqntk qm9 default: " + repr(cfg.environment_spec()), "results": summary, "per_seed": rows,
            "anchors": ANCHORS, "seconds": seconds, "load_average_end": harness.load_average(),
            "environment": environment_info()}


if __name__ == "__main__":
    sys.exit(main())
