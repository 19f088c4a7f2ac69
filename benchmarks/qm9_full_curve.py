"""The full QM9 (qm9pack, 130,831 molecules): a landmark learning curve to N = 50,000 on 2 CPU cores.

    python benchmarks/qm9_full_curve.py --landmarks 2000 --n-train 1000 2000 5000 10000 20000 50000 \\
        --n-val 1000 --n-test 1000 --set oversampling=4 --store STORE --out benchmarks/results/qm9_full_curve.json

One split of the full QM9 (``pip install 'eqntk[qm9]'``): ``--n-test`` test molecules drawn with
``--test-seed`` (fixed, never used for a choice), then from the rest, with ``--split-seed``,
``--n-val`` validation molecules and the training molecules, nested (the first N of one
permutation). The `eqntk qm9` default SO(3) network (``--set`` as for ``qm9_experiment.py``),
by landmark (Nyström) regression: ``--landmarks`` landmark atoms drawn (stratified by element) from
the largest training set, so one landmark set and one :func:`eqntk.landmarks.landmark_basis` per
kernel serve every N. Only the molecule × landmark kernels are computed, never a training Gram:
the cost is ``N_atoms × M`` same-element pairs, linear in N.

The environments are normalised by one number (``√lift_variance``) from the validation molecules
and the first training chunk, i.e. from training data only, and the same for every N.

The training molecules are processed in chunks of at most ``--chunk`` molecules, each with its
own store folder (a rerun with the same ``--store`` resumes where it stopped); after each chunk
that completes a training size, that size's ridge is chosen on the validation molecules and the
JSON (and plot) are rewritten, so an interrupted run still leaves the curve up to the last size
it reached.
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
from eqntk.landmarks import landmark_basis  # noqa: E402


def split(n_total: int, n_test: int, n_val: int, n_max: int, split_seed: int, test_seed: int):
    """``(test, val, train)`` molecule indices; ``train``'s first N are the training set of size N."""
    test, rest = qm9.split_qm9(n_total, n_val + n_max, n_test, split_seed, test_seed)
    return test, rest[:n_val], rest[n_val:]


def chunks(levels, chunk: int) -> list[tuple[int, int]]:
    """``[start, stop)`` training-molecule ranges: at most ``chunk`` long, a boundary at every level."""
    out, start = [], 0
    for level in sorted(levels):
        while start < level:
            stop = min(level, start + chunk)
            out.append((start, stop))
            start = stop
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="qm9pack", help="QM9 source (default: the full QM9 from qm9pack)")
    p.add_argument("--test-seed", type=int, default=0)
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--n-val", type=int, default=1000)
    p.add_argument("--n-train", type=int, nargs="+", default=[1000, 2000, 5000, 10000, 20000, 50000])
    p.add_argument("--landmarks", type=int, default=2000, metavar="M")
    p.add_argument("--chunk", type=int, default=5000, help="training molecules per kernel call (and store folder)")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=V", help="eqntk SO(3) settings")
    p.add_argument("--exact-up-to", type=int, default=0, metavar="N",
                   help="also the exact kernel regression for the training sizes up to N (its Gram is O(N^2))")
    p.add_argument("--store", default=None, help="resumable kernel blocks")
    p.add_argument("--out", default="benchmarks/results/qm9_full_curve.json")
    args = p.parse_args(argv)

    t_start = time.perf_counter()
    ms = D.load_qm9(args.data)
    y = D.atomization_energy(ms, "U0", unit="eV")
    levels = sorted(set(args.n_train))
    test_idx, val_idx, train_idx = split(len(ms), args.n_test, args.n_val, levels[-1], args.split_seed,
                                         args.test_seed)
    test, val, train = ms.subset(test_idx), ms.subset(val_idx), ms.subset(train_idx)
    print(f"QM9: {len(ms)} molecules; test {len(test)} ({test.n_atoms_total} atoms), validation {len(val)} "
          f"({val.n_atoms_total}), training up to {len(train)} ({train.n_atoms_total}); load average "
          f"{harness.load_average()}", flush=True)

    cfg = qx._config(argparse.Namespace(set=args.set, kernels=["so3"]))
    cfg.validate()
    kf, _ = qm9.networks(cfg, 0)["so3"]
    spec = cfg.environment_spec()
    parts = chunks(levels, args.chunk)
    first = train.subset(np.arange(*parts[0]))
    scale = 1.0
    if cfg.normalize:
        scale = 1.0 / np.sqrt(qm9.lift_variance(np.concatenate([D.atomic_environments(m, spec, dtype=np.float64)
                                                                 for m in (val, first)])))

    def env(m):
        return (D.atomic_environments(m, spec, dtype=np.float64) * scale).astype(np.float32)

    atoms = D.landmark_atoms(train, args.landmarks, seed=0)
    lm = D.atoms_as_molecules(train, atoms)
    # the landmark rows: the environments of the landmarks' molecules, then the landmark atoms among them
    mols = np.unique(np.searchsorted(train.offsets, atoms, side="right") - 1)
    local = np.concatenate([np.arange(train.offsets[i], train.offsets[i + 1]) for i in mols])
    x_lm = env(train.subset(mols))[np.searchsorted(local, atoms)]
    print(f"landmarks: {len(atoms)} atoms of the {train.n_atoms_total} training atoms", flush=True)

    tag = qx._tag(cfg) + f"_full_lm{args.landmarks}_seed{args.split_seed}"
    sub = (lambda part: None) if args.store is None else (lambda part: os.path.join(args.store, tag, part))
    kw = dict(tile=cfg.tile, progress=True, log=print)
    seconds = {}
    t0 = time.perf_counter()
    k_lm = qm9.molecular_grams(kf, x_lm, lm, store=sub("lm"), label="lm x lm, ", **kw)
    bases = {kind: landmark_basis(k_lm[kind], psd_rtol=psd_tolerance("float32", atoms=True)) for kind in k_lm}
    g_val = qm9.molecular_grams(kf, env(val), val, x_lm, lm, store=sub("val"), label="val x lm, ", **kw)
    g_test = qm9.molecular_grams(kf, env(test), test, x_lm, lm, store=sub("test"), label="test x lm, ", **kw)
    seconds["kernels_lm_val_test"] = time.perf_counter() - t0

    yp = np.concatenate([y[val_idx], y[train_idx]])  # "pool" = validation molecules, then training molecules
    yt = y[test_idx]
    cp = np.concatenate([qm9.element_counts(val), qm9.element_counts(train)])
    ct = qm9.element_counts(test)
    g_train = {kind: [] for kind in ("nngp", "ntk")}
    rows, done = [], 0
    for start, stop in parts:
        t1 = time.perf_counter()
        part = train.subset(np.arange(start, stop))
        g = qm9.molecular_grams(kf, env(part), part, x_lm, lm, store=sub(f"train_{start}_{stop}"),
                                label=f"train[{start}:{stop}] x lm, ", **kw)
        for kind in g_train:
            g_train[kind].append(g[kind])
        seconds[f"kernels_train_{start}_{stop}"] = time.perf_counter() - t1
        if stop not in levels:
            continue
        pool_g = {kind: np.concatenate([g_val[kind]] + g_train[kind]) for kind in g_train}
        n_v = len(val_idx)
        v, tr = np.arange(n_v), n_v + np.arange(stop)
        new = qm9.baseline_rows(yp[: n_v + stop], yt, cp[: n_v + stop], ct, tr, [stop])
        new += qm9.evaluate_curve_landmarks(pool_g, g_test, bases, yp[: n_v + stop], yt, cp[: n_v + stop], ct, v, tr,
                                            [stop], DEFAULT_RIDGES, "so3")
        rows += new
        done = stop
        for r in new:
            print(f"  N = {stop}: {r['kernel']:18s} test MAE {r['mae_meV']:7.1f} meV"
                  + (f" (validation {r['val_mae_meV']:.1f}, ridge {r['ridge_rel']:g}, rank {r['rank']})"
                     if "rank" in r else ""), flush=True)
        result = {"experiment": "qm9_full_curve", "args": {**vars(args), "store": None if args.store is None
                                                           else "STORE"},
                  "eqntk_config": qx._tag(cfg), "n_train_done": done, "results": rows, "seconds": seconds,
                  "seconds_total": time.perf_counter() - t_start, "load_average_end": harness.load_average(),
                  "n_molecules_qm9": len(ms),
                  "n_atoms": {"test": int(test.n_atoms_total), "val": int(val.n_atoms_total),
                              "train": int(train.subset(np.arange(stop)).n_atoms_total), "landmarks": len(atoms)},
                  "environment": environment_info()}
        write_json(args.out, result)
        _plot(result, os.path.splitext(args.out)[0] + ".png")
        if args.exact_up_to and stop == max(n for n in levels if n <= args.exact_up_to):
            pool = ms.subset(np.concatenate([val_idx, train_idx[:stop]]))
            rows += exact_rows(kf, env, pool, test, len(val_idx), stop, yp, yt, cp, ct, sub, kw, seconds,
                               [n for n in levels if n <= stop])
            write_json(args.out, {**result, "results": rows, "seconds": seconds})
    print(f"wrote {args.out}")


def exact_rows(kf, env, pool, test, n_v, n_max, yp, yt, cp, ct, sub, kw, seconds, sizes) -> list:
    """The exact regression for ``sizes``: Grams of ``pool`` (``n_v`` validation molecules, then the
    first ``n_max`` training molecules) and of the test molecules against it."""
    t0 = time.perf_counter()
    x_pool = env(pool)
    gp = qm9.molecular_grams(kf, x_pool, pool, store=sub(f"exact_pool_{n_max}"), label="exact pool x pool, ", **kw)
    gt = qm9.molecular_grams(kf, env(test), test, x_pool, pool, store=sub(f"exact_test_{n_max}"),
                             label="exact test x pool, ", **kw)
    seconds[f"exact_kernels_{n_max}"] = time.perf_counter() - t0
    rows = qm9.evaluate_curve(gp, gt, yp[: n_v + n_max], yt, cp[: n_v + n_max], ct, np.arange(n_v),
                              n_v + np.arange(n_max), sizes, DEFAULT_RIDGES, "so3_exact",
                              psd_tolerance("float32"))
    for r in rows:
        print(f"  N = {r['n_train']}: {r['kernel']:18s} test MAE {r['mae_meV']:7.1f} meV (validation "
              f"{r['val_mae_meV']:.1f}, ridge {r['ridge_rel']:g})", flush=True)
    return rows


def _plot(result, png):
    from eqntk.experiments.common import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    m = result["n_atoms"]["landmarks"]
    labels = {"so3_ntk": f"SO(3) GCNN NTK, {m:,} landmarks", "so3_nngp": f"SO(3) GCNN NNGP, {m:,} landmarks",
              "so3_exact_ntk": "SO(3) GCNN NTK, exact", "element_baseline": "per-element linear baseline"}
    for k, lab in labels.items():
        rs = sorted((r for r in result["results"] if r["kernel"] == k), key=lambda r: r["n_train"])
        if not rs:
            continue
        ax.plot([r["n_train"] for r in rs], [r["mae_meV"] for r in rs], marker="o",
                ls="--" if k == "element_baseline" else ":" if "exact" in k else "-", label=lab)
    ax.set(xscale="log", yscale="log", xlabel="training molecules N", ylabel="test MAE [meV]",
           title=f"full QM9 (qm9pack), U0: {result['args']['n_test']} test molecules, one split")
    save_figure(fig, ax, png)


if __name__ == "__main__":
    sys.exit(main())
