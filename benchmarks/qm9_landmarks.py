"""Landmark (Nyström) regression against the exact SO(3) kernel on the same QM9 split, in one run.

    python benchmarks/qm9_landmarks.py --data PATH/qm9_subset10k_hartree.npz --pool 5500 --n-val 500 \\
        --n-test 1000 --n-train 1000 2000 5000 --landmarks 1000 2000 4000 --set oversampling=4 \\
        --store STORE --out benchmarks/results/qm9_landmarks.json

The split is that of ``qm9_fchl19.py`` / ``qm9_experiment.py curve`` (same ``--test-seed``,
``--split-seed`` and per-seed permutation), so with the same ``--store`` the exact Grams are read
from the tiles that run left. For each seed, landmark atoms are drawn (stratified by element,
:func:`eqntk.data.landmark_atoms`) from the atoms of that seed's largest training set only; the
pool × landmark, test × landmark and landmark × landmark kernels are computed; for each N the
ridge is chosen on the validation molecules for both methods alike. Reported per (M, N): test MAE
of the exact and the landmark regression, the Nyström training Gram's error
``‖K̃ − K‖_F / ‖K‖_F`` and ``max|K̃ − K| / mean diag K``, and the kernel times.
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
import qm9_experiment as qx  # noqa: E402

import eqntk.data as D  # noqa: E402
from eqntk.experiments import qm9  # noqa: E402
from eqntk.experiments.common import DEFAULT_RIDGES, environment_info, psd_tolerance, write_json  # noqa: E402
from eqntk.landmarks import landmark_model  # noqa: E402


def nystrom_error(k_nm, k_mm, k_exact, psd_rtol, rcond=None):
    """``(‖K̃ − K‖_F / ‖K‖_F, max|K̃ − K| / mean diag K, rank)`` of the Nyström training Gram ``K̃ = Φ Φᵀ``."""
    model = landmark_model(k_nm, k_mm, psd_rtol=psd_rtol, rcond=rcond)
    phi = k_nm @ model.proj
    diff = phi @ phi.T - k_exact
    return (float(np.linalg.norm(diff) / np.linalg.norm(k_exact)),
            float(np.max(np.abs(diff)) / np.mean(np.diag(k_exact))), model.rank)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    qx.add_split_arguments(p, n_train=[1000], seeds=[0])
    p.add_argument("--landmarks", type=int, nargs="+", default=[500, 1000, 2000])
    p.add_argument("--rcond", type=float, nargs="+", default=[None], help="K_mm cutoffs to compare (None: default)")
    p.add_argument("--out", default="benchmarks/results/qm9_landmarks.json")
    args = p.parse_args(argv)

    ms, y, test_idx, pool_idx = qx._data(args, args.pool, args.n_test)
    pool, test = ms.subset(pool_idx), ms.subset(test_idx)
    yp, yt = y[pool_idx], y[test_idx]
    cp, ct = qm9.element_counts(pool), qm9.element_counts(test)
    cfg = qx._config(argparse.Namespace(set=args.set, kernels=["so3"]))
    cfg.validate()
    tag = qx._tag(cfg)
    print(f"pool {len(pool)} molecules ({pool.n_atoms_total} atoms), test {len(test)}; {tag}; "
          f"load average {harness.load_average()}", flush=True)
    seconds = {}
    t0 = time.perf_counter()
    gp, gt, _ = qx._grams(cfg, pool, test, np.float32, args.store, print)["so3"]
    seconds["exact_grams_incl_store_reads"] = time.perf_counter() - t0
    x_pool, x_test = qm9.environments(cfg, pool, test, np.float32)
    kf, _ = qm9.networks(cfg, x_pool.shape[2])["so3"]
    rtol_mol, rtol_atoms = psd_tolerance("float32"), psd_tolerance("float32", atoms=True)
    rows, n_max = [], max(args.n_train)
    for seed in args.seeds:
        val, train = qx.seed_split(len(pool), seed, args.n_val)
        for r in qm9.evaluate_curve(gp, gt, yp, yt, cp, ct, val, train, args.n_train, DEFAULT_RIDGES, "exact",
                                    rtol_mol):
            rows.append({**r, "seed": seed, "landmarks": None})
        train_set = pool.subset(train[:n_max])
        for m in args.landmarks:
            # landmark atoms of the largest training set, as flat atom indices of the pool
            local = D.landmark_atoms(train_set, m, seed=seed)
            mol_of = train_set.molecule_index[local]
            atoms = pool.offsets[train[:n_max][mol_of]] + (local - train_set.offsets[mol_of])
            lm, x_lm = D.atoms_as_molecules(pool, atoms), x_pool[atoms]
            st = None if args.store is None else os.path.join(args.store, tag, "so3", f"landmarks_s{seed}_m{m}")
            t1 = time.perf_counter()
            g_pm = qm9.molecular_grams(kf, x_pool, pool, x_lm, lm, tile=cfg.tile, progress=True,
                                       store=None if st is None else os.path.join(st, "pool"), label="pool x landmarks, ")
            g_tm = qm9.molecular_grams(kf, x_test, test, x_lm, lm, tile=cfg.tile, progress=True,
                                       store=None if st is None else os.path.join(st, "test"), label="test x landmarks, ")
            g_mm = qm9.molecular_grams(kf, x_lm, lm, tile=cfg.tile, progress=True,
                                       store=None if st is None else os.path.join(st, "mm"), label="landmarks, ")
            secs = time.perf_counter() - t1
            seconds[f"landmark_grams_s{seed}_m{m}"] = secs
            for rc in args.rcond:
                for r in qm9.evaluate_curve_landmarks(g_pm, g_tm, g_mm, yp, yt, cp, ct, val, train, args.n_train,
                                                      DEFAULT_RIDGES, "landmark", rtol_atoms, rc):
                    kind = r["kernel"].split("_")[1]
                    tr = train[: r["n_train"]]
                    fro, mx, _ = nystrom_error(g_pm[kind][tr], g_mm[kind], gp[kind][np.ix_(tr, tr)], rtol_atoms, rc)
                    rows.append({**r, "seed": seed, "rcond": rc, "nystrom_fro_rel": fro,
                                 "nystrom_max_rel_mean_diag": mx, "kernel_seconds": secs})
            print(f"seed {seed}, M = {m}: landmark Grams {secs:.1f} s", flush=True)
    result = {"experiment": "qm9_landmarks", "args": vars(args), "eqntk_config": tag, "results": rows,
              "seconds": seconds, "n_atoms": {"pool": int(pool.n_atoms_total), "test": int(test.n_atoms_total)},
              "load_average_end": harness.load_average(), "environment": environment_info()}
    write_json(args.out, result)
    print(f"{'kernel':14s} {'M':>6s} {'rcond':>7s} {'N':>6s} {'test MAE':>10s} {'ridge':>8s} {'rank':>6s} "
          f"{'|dK|_F/|K|_F':>13s}")
    for r in sorted(rows, key=lambda r: (r["kernel"].split("_")[1], r["n_train"], r["landmarks"] or 0,
                                         r.get("rcond") or 0, r["seed"])):
        print(f"{r['kernel']:14s} {str(r['landmarks']):>6s} {str(r.get('rcond', '')):>7s} {r['n_train']:6d} "
              f"{r['mae_meV']:10.1f} "
              f"{r['ridge_rel']:8.0e} {str(r.get('rank', '')):>6s} {r.get('nystrom_fro_rel', float('nan')):13.2e}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
