"""MD17 ethanol: per-atom force vectors predicted directly by the equivariant (l = 1) matrix kernel.

    python benchmarks/md17_vector_forces.py --data PATH/md17_ethanol_2000.npz --n-train 50 100 200 500 \\
        --n-val 200 --n-test 500 --seeds 0 --out benchmarks/results/md17_vector_forces.json

Variant (c) of issue 14. The network is the `eqntk qm9` default's lift and nonlinearity ending in a
group convolution instead of a pool, ``S2ConvSO3(·, 4) → Rbf(0.5) → SO3ConvSO3(·, 2)``; the
degree-1 blocks of its kernel between two atoms' environments are a 3 × 3 matrix kernel
``K(a, a')`` with ``K(R a, R' a') = R K(a, a') R'ᵀ`` (:mod:`eqntk.so3.vector`). Each atom's
force is regressed on the atoms of the same element in the training conformations (kernel ridge
regression on the ``(3n, 3n)`` block matrix, one per element, the relative ridge chosen per
element on the validation conformations' forces). No energies are used and the predicted force
field is not a gradient (not conservative).

Splits as in ``benchmarks/md17_forces.py`` (the same test conformations for the same
``--test-seed``; per seed a validation set and nested training sets). MAE per Cartesian force
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
from eqntk import stax  # noqa: E402
from eqntk.experiments import qm9  # noqa: E402
from eqntk.experiments.common import (DEFAULT_RIDGES, environment_info, fit_predict, psd_tolerance,  # noqa: E402
                                      select_ridge, write_json)
from eqntk.so3.vector import as_block_matrix, vector_blocks  # noqa: E402
from md17_forces import ANCHORS, KCAL_MOL_IN_MEV, summarise  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="md17_ethanol_2000.npz (z, R, E, F)")
    p.add_argument("--n-train", type=int, nargs="+", default=[50, 100, 200, 500])
    p.add_argument("--n-val", type=int, default=200)
    p.add_argument("--n-test", type=int, default=500)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--test-seed", type=int, default=0)
    p.add_argument("--oversampling", type=float, default=None, help="of the SO3ConvSO3 (default: the qm9 default's)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="of the kernel computation")
    p.add_argument("--out", default="benchmarks/results/md17_vector_forces.json")
    args = p.parse_args(argv)

    d = np.load(args.data)
    z, R, F = d["z"], d["R"], d["F"]
    n_conf, n_at = R.shape[0], z.size
    if args.n_test + args.n_val + max(args.n_train) > n_conf:
        raise SystemExit(f"{n_conf} conformations: fewer than test + validation + largest training set")
    test_idx = np.random.default_rng(args.test_seed).permutation(n_conf)[: args.n_test]
    rest = np.setdiff1d(np.arange(n_conf), test_idx)
    cfg = qm9.QM9Config()
    _, _, kf = stax.serial(stax.S2ConvSO3(256, cfg.bandlimit, W_std=cfg.w_std), cfg.nonlinearity_layer(),
                           stax.SO3ConvSO3(256, 2, oversampling=args.oversampling or cfg.oversampling))
    ms = D.MoleculeSet.from_counts(np.full(n_conf, n_at), np.tile(z, n_conf), R.reshape(-1, 3))
    x_all = D.atomic_environments(ms, cfg.environment_spec())  # (n_conf * 9, L², C)
    atoms = lambda idx: (idx[:, None] * n_at + np.arange(n_at)[None, :]).ravel()  # noqa: E731
    mae = lambda a, b: float(np.mean(np.abs(a - b)))  # noqa: E731
    rows, seconds = [], {}
    for seed in args.seeds:
        perm = np.random.default_rng(1000 + seed).permutation(rest)
        val, train = perm[: args.n_val], perm[args.n_val: args.n_val + max(args.n_train)]
        pool = np.concatenate([val, train])
        scale = 1.0 / np.sqrt(qm9.lift_variance(x_all[atoms(pool)]))  # from training/validation data only
        # per element: the pool's and the test conformations' atoms of that element, conformation-major
        kernels, t0 = {}, time.perf_counter()
        for e in np.unique(z):
            ia = np.nonzero(z == e)[0]
            xp = (x_all[(pool[:, None] * n_at + ia).ravel()] * scale).astype(args.dtype)
            xt = (x_all[(test_idx[:, None] * n_at + ia).ravel()] * scale).astype(args.dtype)
            kp = kf(xp, None, ("nngp", "ntk"), tile_size=128, progress=True)
            kt = kf(xt, xp, ("nngp", "ntk"), tile_size=128, progress=True)
            kernels[int(e)] = (ia, {k: vector_blocks(getattr(kp, k)) for k in ("nngp", "ntk")},
                               {k: vector_blocks(getattr(kt, k)) for k in ("nngp", "ntk")})
            print(f"seed {seed} element {int(e)}: {len(xp)} x {len(xp)} and {len(xt)} x {len(xp)} atom pairs "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
        seconds[f"kernels_seed{seed}"] = time.perf_counter() - t0
        n_v = len(val)
        for n in args.n_train:
            for kind in ("ntk", "nngp"):
                pred = np.zeros((args.n_test, n_at, 3))
                ridges = {}
                for e, (ia, kp, kt) in kernels.items():
                    k_e = len(ia)
                    tr = (n_v + np.arange(n))[:, None] * k_e + np.arange(k_e)  # rows of the training atoms
                    va = np.arange(n_v)[:, None] * k_e + np.arange(k_e)
                    tr, va = tr.ravel(), va.ravel()
                    K = kp[kind]
                    k_tr = as_block_matrix(K[np.ix_(tr, tr)])
                    k_va = as_block_matrix(K[np.ix_(va, tr)])
                    y_tr = F[pool[n_v + np.arange(n)]][:, ia].reshape(-1)  # (n k_e 3,), atom-major
                    y_va = F[val][:, ia].reshape(-1)
                    ridge, _, _ = select_ridge(k_tr, y_tr, k_va, y_va, mae, DEFAULT_RIDGES,
                                               psd_rtol=psd_tolerance(args.dtype, atoms=True))
                    k_te = as_block_matrix(kt[kind][:, tr])
                    pred[:, ia] = fit_predict(k_tr, y_tr, k_te, ridge,
                                              psd_rtol=psd_tolerance(args.dtype, atoms=True)).reshape(args.n_test, k_e, 3)
                    ridges[int(e)] = ridge
                f_mae = mae(pred, F[test_idx])
                row = {"kernel": f"so3_l1_{kind}", "variant": "force vectors (l = 1 matrix kernel)", "n_train": n,
                       "seed": seed, "ridge_rel_by_element": ridges, "force_mae_kcal_mol_A": f_mae,
                       "force_mae_meV_A": f_mae * KCAL_MOL_IN_MEV}
                rows.append(row)
                print(f"seed {seed} N = {n:5d} {kind}: force MAE {row['force_mae_meV_A']:7.1f} meV/Å "
                      f"(ridges {ridges})", flush=True)
            write_json(args.out, _result(args, rows, seconds, cfg))
    write_json(args.out, _result(args, rows, seconds, cfg))
    print(f"wrote {args.out}")


def _result(args, rows, seconds, cfg) -> dict:
    summary = summarise(rows, args.n_train, ("force_mae_meV_A",))
    return {"experiment": "md17_vector_forces", "args": {**vars(args), "data": os.path.basename(args.data)},
            "network": (f"S2ConvSO3(256, 4) -> Rbf -> SO3ConvSO3(256, 2, oversampling="
                        f"{args.oversampling or cfg.oversampling}), {args.dtype}, on " + repr(cfg.environment_spec())),
            "results": summary, "per_seed": rows, "anchors": ANCHORS, "seconds": seconds,
            "load_average_end": harness.load_average(), "environment": environment_info()}


if __name__ == "__main__":
    sys.exit(main())
