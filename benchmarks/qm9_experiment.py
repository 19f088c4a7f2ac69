"""QM9 U0 atomization energies: eqntk's SO(3) GCNN NTK / NNGP vs the MLP-on-signals NTK.

Three stages (run from the repository root, venv active):

1. Hyperparameters on validation molecules only (the curve's test molecules are set aside)::

       python benchmarks/qm9_experiment.py --kernels so3 --data PATH/qm9_subset10k_hartree.npz select \
           --pool 800 --n-train 400 --n-test 1000 --splits 6 \
           --grid radial_scaling=1,2,3 gamma=0.25,0.5,1 \
           --set radial=gaussian nonlinearity=rbf normalize=true --out benchmarks/results/qm9_select_rbf.json

   Every configuration of the ``--grid`` (the product of its value lists; ``--set`` fixes the
   others; keys are fields of :class:`eqntk.experiments.qm9.QM9Config`): kernels on a pool of
   ``--pool`` molecules; for each of ``--splits`` random splits of the pool, ``--n-train``
   training molecules, the ridge picked on one half of the rest and the MAE measured on the
   other half; mean and standard error over the splits.

2. Learning curve with the chosen settings and error bars over splits::

       python benchmarks/qm9_experiment.py curve --pool 5500 --n-test 1000 --n-val 500 \
           --n-train 100 200 400 1000 2000 5000 --seeds 0 1 2 --set radial=gaussian ... \
           --store eqntk_qm9_store --out benchmarks/results/qm9_curve.json

   One symmetric Gram over a pool of molecules (training/validation candidates) and one
   test × pool Gram, computed once with a resumable tile store (``--store``: re-running the same
   command after an interruption reuses the finished tiles). Each seed draws a validation set
   (``--n-val``) and nested training sets from the pool; the test set is fixed.

3. ``spectrum``: learning-curve theory vs measured on the pool's Grams (reuses ``--store``).

``qm9_fchl19.py`` runs FCHL19 (qmllib) beside the curve on the same split.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)  # regressions in float64; kernels run in float32 inputs' dtype

import numpy as np  # noqa: E402

import eqntk.data as D  # noqa: E402
from eqntk.experiments import qm9  # noqa: E402
from eqntk.experiments.common import DEFAULT_RIDGES, environment_info, psd_tolerance, select_ridge, write_json  # noqa: E402


def add_split_arguments(p, n_train=(100, 200, 400, 1000), seeds=(0, 1, 2)):
    """The split options shared by the scripts that compute on the curve's split (qm9_fchl19, qm9_landmarks)."""
    p.add_argument("--data", default=None, help="QM9 source (default: embedded 5k subset)")
    p.add_argument("--test-seed", type=int, default=0)
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--pool", type=int, default=1500)
    p.add_argument("--n-val", type=int, default=500)
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--n-train", type=int, nargs="+", default=list(n_train))
    p.add_argument("--seeds", type=int, nargs="+", default=list(seeds))
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=V",
                   help="eqntk SO(3) settings, as for qm9_experiment.py curve")
    p.add_argument("--store", default=None, help="resumable kernel tiles (shared between these scripts)")


def _data(args, n_pool, n_test):
    ms = D.load_qm9(args.data)
    y = D.atomization_energy(ms, "U0", unit="eV")
    test_idx, pool_idx = qm9.split_qm9(len(ms), n_pool, n_test, args.split_seed, args.test_seed)
    return ms, y, test_idx, pool_idx


def _tag(cfg) -> str:
    """Store folder of a configuration: its environment and network settings, readable."""
    tag = f"L{cfg.bandlimit}_w{cfg.w_std:g}_os{cfg.oversampling:g}"
    if tuple(cfg.powers) != (1.0, 2.0, 3.0):
        tag += "_p" + "-".join(f"{v:g}" for v in cfg.powers)
    if cfg.radial != "powers":
        tag += f"_{cfg.radial}{cfg.n_radial}_q{cfg.radial_scaling:g}_rmin{cfg.r_min:g}"
    if cfg.cutoff != 5.0 or cfg.width != 0.5:
        tag += f"_rc{cfg.cutoff:g}_width{cfg.width:g}"
    if cfg.nonlinearity != "erf":
        tag += f"_{cfg.nonlinearity}" + (f"{cfg.gamma:g}" if cfg.nonlinearity == "rbf" else "")
    return tag + ("_norm" if cfg.normalize else "")


def _grams(cfg, pool, test, dtype, store, log):
    x_pool, x_test = qm9.environments(cfg, pool, test, dtype)
    out = {}
    for name, (kf, shape) in qm9.networks(cfg, x_pool.shape[2]).items():
        t0 = time.perf_counter()
        st = None if store is None else os.path.join(store, _tag(cfg), name)
        gp = qm9.molecular_grams(kf, shape(x_pool), pool, tile=cfg.tile, progress=True, log=log,
                                 store=None if st is None else os.path.join(st, "pool"), label="pool x pool, ")
        gt = None
        if test is not None:
            gt = qm9.molecular_grams(kf, shape(x_test), test, shape(x_pool), pool, tile=cfg.tile, progress=True,
                                     log=log, store=None if st is None else os.path.join(st, "test"),
                                     label="test x pool, ")
        out[name] = (gp, gt, time.perf_counter() - t0)
        log(f"{name}: {out[name][2]:.1f} s")
    return out


#: QM9Config fields a ``--grid``/``--set`` may name, with their types.
CONFIG_FIELDS = {"bandlimit": int, "w_std": float, "oversampling": float, "radial": str, "n_radial": int,
                 "radial_scaling": float, "r_min": float, "cutoff": float, "width": float, "nonlinearity": str,
                 "gamma": float, "normalize": lambda v: v.lower() in ("1", "true", "yes"),
                 "powers": lambda v: tuple(float(p) for p in v.split("/"))}


def _parse_assignments(items, multi: bool) -> dict:
    """``['gamma=0.5,1', 'radial=gaussian']`` → ``{'gamma': [0.5, 1.0], 'radial': ['gaussian']}`` (``multi``)."""
    out = {}
    for item in items or []:
        key, _, values = item.partition("=")
        key = key.strip().replace("-", "_")
        if key not in CONFIG_FIELDS or not values:
            raise SystemExit(f"bad setting {item!r}: use KEY=VALUE{'[,VALUE...]' if multi else ''} with KEY one of "
                             f"{', '.join(CONFIG_FIELDS)} (powers: p1/p2/p3)")
        vals = [CONFIG_FIELDS[key](v) for v in values.split(",")] if multi else CONFIG_FIELDS[key](values)
        out[key] = vals
    return out


def _config(args, **overrides):
    base = dict(bandlimit=4, w_std=1.0, oversampling=3.0)  # oversampling 3: the recorded runs; --set oversampling=4
    base.update(_parse_assignments(getattr(args, "set", None), multi=False))
    base.update(overrides)
    return qm9.QM9Config(kernels=tuple(args.kernels), **base)


def cmd_select(args):
    """Validation MAE of every configuration of the grid, averaged over random train/validation splits."""
    ms, y, _, pool_idx = _data(args, args.pool, args.n_test)  # the test set of `curve` is set aside, never used
    pool = ms.subset(pool_idx)
    yp = y[pool_idx]
    c = qm9.element_counts(pool)
    grid = _parse_assignments(args.grid, multi=True)
    keys = list(grid)
    rows = []
    mae = lambda p, t: float(np.mean(np.abs(p - t)))  # noqa: E731
    splits = []
    for split in range(args.splits):
        # train / ridge-validation / validation drawn from the pool, never from the curve's test set
        perm = np.random.default_rng(100 + split).permutation(args.pool)
        tr, rest = perm[: args.n_train], perm[args.n_train:]
        splits.append((tr, rest[: len(rest) // 2], rest[len(rest) // 2:]))
    if args.fchl19:
        rows.append(_select_fchl19(pool, yp, c, splits, args.sigmas, mae))
    for values in itertools.product(*(grid[k] for k in keys)):
        setting = dict(zip(keys, values))
        cfg = _config(args, **setting)
        cfg.validate()
        print(f"== {_tag(cfg)}", flush=True)
        for name, (gp, _, secs) in _grams(cfg, pool, None, np.float32, args.store, print).items():
            for kind in ("ntk", "nngp"):
                K = gp[kind]
                per_split = []
                for tr, v1, v2 in splits:
                    r = yp - qm9.element_baseline(c[tr], yp[tr])(c)
                    ridge, _, _ = select_ridge(K[np.ix_(tr, tr)], r[tr], K[np.ix_(v1, tr)], r[v1], mae,
                                               DEFAULT_RIDGES, psd_rtol=psd_tolerance("float32"))
                    _, v2_mae, _ = select_ridge(K[np.ix_(tr, tr)], r[tr], K[np.ix_(v2, tr)], r[v2], mae, [ridge],
                                                psd_rtol=psd_tolerance("float32"))
                    per_split.append({"ridge_rel": ridge, "val_mae_meV": 1e3 * v2_mae})
                m = [p["val_mae_meV"] for p in per_split]
                rows.append({"kernel": f"{name}_{kind}", **{k: (list(v) if isinstance(v, tuple) else v)
                                                           for k, v in setting.items()},
                             "config": _tag(cfg), "val_mae_meV": float(np.mean(m)),
                             "val_mae_se_meV": float(np.std(m, ddof=1) / np.sqrt(len(m))) if len(m) > 1 else 0.0,
                             "splits": per_split, "kernel_seconds": secs})
                print(f"   {name}_{kind}: val MAE {rows[-1]['val_mae_meV']:.1f} ± {rows[-1]['val_mae_se_meV']:.1f} meV "
                      f"(ridges {sorted({p['ridge_rel'] for p in per_split})}), {secs:.0f} s", flush=True)
        write_json(args.out, {"experiment": "qm9_select", "args": vars(args), "results": rows,
                              "environment": environment_info()})
    best = {}
    for r in rows:
        if r["kernel"] not in best or r["val_mae_meV"] < best[r["kernel"]]["val_mae_meV"]:
            best[r["kernel"]] = r
    for k, r in best.items():
        print(f"best {k}: {r['config']}: {r['val_mae_meV']:.1f} ± {r['val_mae_se_meV']:.1f} meV")
    write_json(args.out, {"experiment": "qm9_select", "args": vars(args), "results": rows, "best": best,
                          "environment": environment_info()})


def _select_fchl19(pool, yp, c, splits, sigmas, mae) -> dict:
    """FCHL19 (qmllib) on the same splits: σ and ridge chosen on the ridge-validation half."""
    import qm9_fchl19 as F

    t0 = time.perf_counter()
    rep, _, _ = F.fchl19_representations(pool, pool.subset(np.arange(1)), 0, sigmas, False)
    mi = pool.molecule_index
    G = F.local_gaussian_kernels(rep, pool.Z, mi, rep, pool.Z, mi, len(pool), len(pool), sigmas)
    secs = time.perf_counter() - t0
    per_split = []
    for tr, v1, v2 in splits:
        r = yp - qm9.element_baseline(c[tr], yp[tr])(c)
        best = None
        for s in sigmas:
            K = G[s]
            ridge, v1_mae, _ = select_ridge(K[np.ix_(tr, tr)], r[tr], K[np.ix_(v1, tr)], r[v1], mae, DEFAULT_RIDGES)
            if best is None or v1_mae < best[0]:
                best = (v1_mae, s, ridge)
        _, s, ridge = best
        _, v2_mae, _ = select_ridge(G[s][np.ix_(tr, tr)], r[tr], G[s][np.ix_(v2, tr)], r[v2], mae, [ridge])
        per_split.append({"sigma": s, "ridge_rel": ridge, "val_mae_meV": 1e3 * v2_mae})
    m = [p["val_mae_meV"] for p in per_split]
    row = {"kernel": "fchl19", "config": "FCHL19 (qmllib 1.2 defaults), local Gaussian kernel",
           "val_mae_meV": float(np.mean(m)), "val_mae_se_meV": float(np.std(m, ddof=1) / np.sqrt(len(m))),
           "splits": per_split, "kernel_seconds": secs}
    print(f"   fchl19: val MAE {row['val_mae_meV']:.1f} ± {row['val_mae_se_meV']:.1f} meV "
          f"(σ {sorted({p['sigma'] for p in per_split})}), {secs:.0f} s", flush=True)
    return row


def seed_split(n_pool: int, seed: int, n_val: int):
    """``(val, train)`` indices of one split of the pool: a permutation drawn with ``1000 + seed``."""
    perm = np.random.default_rng(1000 + seed).permutation(n_pool)
    return perm[:n_val], perm[n_val:]


def seed_rows(grams, yp, yt, cp, ct, seed, n_val, n_train):
    """One split of the curve: ``(rows, val, train)``, rows for the baseline and every network of ``grams``.

    The split: a permutation of the pool drawn with ``1000 + seed``; its first ``n_val`` are the
    validation molecules, the rest the nested training sets.
    """
    val, train = seed_split(len(yp), seed, n_val)
    rows = qm9.baseline_rows(yp, yt, cp, ct, train, n_train)
    for name, (gp, gt, _) in grams.items():
        rows += qm9.evaluate_curve(gp, gt, yp, yt, cp, ct, val, train, n_train, DEFAULT_RIDGES, name,
                                   psd_tolerance("float32"))
    for r in rows:
        r["seed"] = seed
    return rows, val, train


def summarize(per_seed, n_train) -> list:
    """Mean and standard deviation over splits of each (kernel, N); FCHL19 rows keep their chosen σ's."""
    summary = []
    for k in sorted({r["kernel"] for r in per_seed}):
        for n in n_train:
            rs = [r for r in per_seed if r["kernel"] == k and r["n_train"] == n]
            m = [r["mae_meV"] for r in rs]
            summary.append({"kernel": k, "n_train": n, "mae_meV": float(np.mean(m)),
                            "mae_std_meV": float(np.std(m, ddof=1)) if len(m) > 1 else 0.0,
                            "rmse_meV": float(np.mean([r["rmse_meV"] for r in rs])), "n_splits": len(rs),
                            **({"sigmas": [r["sigma"] for r in rs]} if "sigma" in rs[0] else {})})
    return summary


def cmd_curve(args):
    ms, y, test_idx, pool_idx = _data(args, args.pool, args.n_test)
    pool, test = ms.subset(pool_idx), ms.subset(test_idx)
    print(f"pool {len(pool)} molecules ({pool.n_atoms_total} atoms), test {len(test)} ({test.n_atoms_total} atoms)")
    cfg = _config(args)
    cfg.validate()
    grams = _grams(cfg, pool, test, np.float32, args.store, print)
    yp, yt = y[pool_idx], y[test_idx]
    cp, ct = qm9.element_counts(pool), qm9.element_counts(test)
    per_seed = []
    for seed in args.seeds:
        per_seed += seed_rows(grams, yp, yt, cp, ct, seed, args.n_val, args.n_train)[0]
    summary = summarize(per_seed, args.n_train)
    result = {"experiment": "qm9_curve", "args": vars(args), "config": {"target": "U0", **vars(args)},
              "results": summary, "per_seed": per_seed,
              "kernel_seconds": {k: v[2] for k, v in grams.items()},
              "n_atoms": {"pool": int(pool.n_atoms_total), "test": int(test.n_atoms_total)},
              "environment": environment_info()}
    write_json(args.out, result)
    print(qm9.summary_table({"results": summary}))
    png = os.path.splitext(args.out)[0] + ".png"
    qm9.plot_curve(result, png, title=f"QM9 U0 atomization energy ({len(test)} test molecules, "
                                      f"{len(args.seeds)} splits)")
    print(f"wrote {args.out} and {png}")


def cmd_spectrum(args):
    """Bordelon–Canatar–Pehlevan learning-curve theory vs measured curves on the pool's Grams."""
    from eqntk import spectral

    ms, y, _, pool_idx = _data(args, args.pool, args.n_test)
    pool = ms.subset(pool_idx)
    cfg = _config(args)
    cfg.validate()
    grams = _grams(cfg, pool, None, np.float32, args.store, print)
    c = qm9.element_counts(pool)
    r = y[pool_idx] - qm9.element_baseline(c, y[pool_idx])(c)  # target: the per-element baseline's residual (eV)
    M = len(pool)
    rows, curves = [], {}
    for name, (gp, _, secs) in grams.items():
        for kind in args.kinds:
            K = 0.5 * (gp[kind] + gp[kind].T)
            K = K / np.mean(np.diag(K))  # the ridge below is relative to the mean diagonal
            es = spectral.eigensystem(K, psd_rtol=psd_tolerance("float32"))
            lam_min = float(es.vectors[:, -1] @ K @ es.vectors[:, -1])  # smallest eigenvalue, before clipping
            if lam_min < 0 and args.ridge <= -lam_min:
                print(f"   warning: {name}_{kind} has an eigenvalue {lam_min:.2e} below -ridge ({args.ridge:g}): "
                      "the measured regressions are then ill-posed; use a larger --ridge", flush=True)
            w2 = spectral.target_spectrum(es, r)
            theory = spectral.learning_curve_theory(es.eigenvalues, w2, args.n_train, ridge=args.ridge)
            t0 = time.perf_counter()
            measured, se = spectral.empirical_learning_curve(K, r, args.n_train, n_repeats=args.repeats,
                                                              ridge=args.ridge, seed=0,
                                                              psd_rtol=psd_tolerance("float32"))
            cum = np.cumsum(w2) / np.sum(w2)
            key = f"{name}_{kind}"
            curves[key] = {"eigenvalues": es.eigenvalues[: args.keep_modes].tolist(), "min_eigenvalue_gram": lam_min,
                           "cumulative_target_power": cum[: args.keep_modes].tolist()}
            for P, th, me, s_ in zip(args.n_train, theory, measured, se):
                rows.append({"kernel": key, "n_train": int(P), "theory_rmse_meV": 1e3 * float(np.sqrt(th)),
                             "measured_rmse_meV": 1e3 * float(np.sqrt(me)),
                             "measured_rmse_se_meV": 1e3 * float(s_ / (2 * np.sqrt(me))),
                             "ratio_theory_measured_mse": float(th / me)})
            modes = {k: float(cum[k - 1]) for k in (10, 100, 1000) if k <= M}
            print(f"{key}: target power in the top 10/100/1000 modes: "
                  + ", ".join(f"{v:.3f}" for v in modes.values()) + f" (measured curve {time.perf_counter() - t0:.0f} s)")
            for row in rows[-len(args.n_train):]:
                print(f"   P = {row['n_train']:5d}: theory {row['theory_rmse_meV']:7.1f} meV, measured "
                      f"{row['measured_rmse_meV']:7.1f} ± {row['measured_rmse_se_meV']:.1f} meV")
            curves[key]["top_modes_target_power"] = modes
    result = {"experiment": "qm9_spectrum", "args": vars(args), "n_pool": M, "target": "U0 atomization energy "
              "minus per-element linear baseline fitted on the pool (eV)", "results": rows, "spectra": curves,
              "target_rms_meV": 1e3 * float(np.sqrt(np.mean(r**2))), "environment": environment_info()}
    write_json(args.out, result)
    png = os.path.splitext(args.out)[0] + ".png"
    _plot_spectrum(result, png)
    print(f"wrote {args.out} and {png}")


def _plot_spectrum(result, png):
    from eqntk.experiments.common import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(1, 3, figsize=(15, 4.2))
    for i, (key, sp) in enumerate(result["spectra"].items()):
        col = f"C{i}"
        rs = [r for r in result["results"] if r["kernel"] == key]
        P = [r["n_train"] for r in rs]
        label = qm9.KERNEL_LABELS.get(key, key)
        ax[0].plot(P, [r["theory_rmse_meV"] for r in rs], "-", color=col, label=f"{label}: theory")
        ax[0].errorbar(P, [r["measured_rmse_meV"] for r in rs], yerr=[r["measured_rmse_se_meV"] for r in rs],
                       fmt="o", color=col, label=f"{label}: measured")
        k = np.arange(1, len(sp["eigenvalues"]) + 1)
        ax[1].loglog(k, sp["eigenvalues"], color=col, label=label)
        ax[2].semilogx(k, sp["cumulative_target_power"], color=col, label=label)
    ax[0].set(xscale="log", yscale="log", xlabel="training molecules P", ylabel="RMSE on the pool [meV]",
              title="learning curves: theory vs measured")
    ax[1].set(xlabel="mode k", ylabel="operator eigenvalue η_k (K / mean diag)", title="kernel spectra")
    ax[2].set(xlabel="mode k", ylabel="fraction of target power in modes ≤ k", title="target alignment")
    for a in ax[1:]:
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=8)
    save_figure(fig, ax[0], png)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="QM9 source (default: embedded 5k subset)")
    p.add_argument("--test-seed", type=int, default=0)
    p.add_argument("--split-seed", type=int, default=0, help="seed drawing the pool from the non-test molecules")
    p.add_argument("--kernels", type=lambda v: v.split(","), default=["so3", "mlp"],
                   help="networks, comma-separated: so3,mlp (default), so3 or mlp")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("select")
    s.add_argument("--pool", type=int, default=300)
    s.add_argument("--n-train", type=int, default=200)
    s.add_argument("--n-test", type=int, default=1,
                   help="test molecules set aside exactly as `curve --n-test` does (never used here): pass the "
                        "curve's value so that no test molecule can be a validation molecule")
    s.add_argument("--splits", type=int, default=6, help="random train/validation splits of the pool to average")
    s.add_argument("--grid", nargs="+", default=["w_std=1,3"], metavar="KEY=V1,V2",
                   help="configurations: the product of these value lists, e.g. radial=powers,gaussian gamma=0.5,1 "
                        f"(keys: {', '.join(CONFIG_FIELDS)}; powers as p1/p2/p3)")
    s.add_argument("--set", nargs="+", default=[], metavar="KEY=V", help="fixed settings beside the grid")
    s.add_argument("--store", default=None, help="resumable tile store for the pool Grams")
    s.add_argument("--fchl19", action="store_true",
                   help="also FCHL19 (qmllib, in its own venv) on the same splits, σ chosen like the ridge")
    s.add_argument("--sigmas", type=float, nargs="+", default=[1, 2, 4, 8, 16, 32], help="FCHL19 kernel widths")
    s.add_argument("--out", default="benchmarks/results/qm9_select.json")
    c = sub.add_parser("curve")
    c.add_argument("--pool", type=int, default=700)
    c.add_argument("--n-test", type=int, default=500)
    c.add_argument("--n-val", type=int, default=100)
    c.add_argument("--n-train", type=int, nargs="+", default=[100, 200, 400, 600])
    c.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    c.add_argument("--set", nargs="+", default=[], metavar="KEY=V",
                   help=f"settings (defaults bandlimit=4 w_std=1 oversampling=3; keys: {', '.join(CONFIG_FIELDS)})")
    c.add_argument("--store", default=None)
    c.add_argument("--out", default="benchmarks/results/qm9_curve.json")
    q = sub.add_parser("spectrum", help="learning-curve theory vs measured on the pool's Grams (reuses --store)")
    q.add_argument("--pool", type=int, default=700)
    q.add_argument("--n-test", type=int, default=500, help="only to draw the same pool as `curve`")
    q.add_argument("--n-train", type=int, nargs="+", default=[50, 100, 200, 400])
    q.add_argument("--set", nargs="+", default=[], metavar="KEY=V", help="settings, as for curve")
    q.add_argument("--kinds", nargs="+", default=["ntk"])
    q.add_argument("--ridge", type=float, default=1e-5, help="ridge relative to the Gram's mean diagonal")
    q.add_argument("--repeats", type=int, default=5, help="random training sets per size")
    q.add_argument("--keep-modes", type=int, default=2000, help="modes written to the JSON")
    q.add_argument("--store", default=None)
    q.add_argument("--out", default="benchmarks/results/qm9_spectrum.json")
    args = p.parse_args(argv)
    {"select": cmd_select, "curve": cmd_curve, "spectrum": cmd_spectrum}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
