"""FCHL19 (qmllib) beside eqntk's SO(3) kernels on the same QM9 split, in one run.

    python benchmarks/qm9_fchl19.py --data PATH/qm9_subset10k_hartree.npz --pool 1500 --n-val 500 \\
        --n-test 1000 --n-train 100 200 400 1000 --seeds 0 1 2 --set radial=gaussian ... \\
        --store eqntk_qm9_store --out benchmarks/results/qm9_fchl19.json

The split is that of ``qm9_experiment.py curve`` (test molecules drawn with ``--test-seed``,
fixed; the pool from the rest with ``--split-seed``; per seed a validation set and nested
training sets from the pool). FCHL19: qmllib 1.2 ``generate_fchl19`` with its defaults
(elements H, C, N, O, F) in qmllib's own venv (made on first use by ``benchmarks/harness.py``),
and the local Gaussian kernel over same-element atom pairs,
``K(M, M') = Σ_{I∈M, J∈M', Z_I = Z_J} exp(−|x_I − x_J|² / (2σ²))`` — computed here with BLAS from
qmllib's representations for all σ at once and checked, in the same run, against qmllib's own
``get_local_kernel`` (max relative difference reported). σ and the ridge are chosen on the
validation molecules for each training size; the SO(3) kernel's ridge likewise. Both curves,
their Gram times (and optionally qmllib's own kernel time, ``--time-qmllib``) and the load
average go into one JSON and one plot.

``--landmarks M``: the eqntk side by landmark (Nyström) regression (:mod:`eqntk.landmarks`) with
``M`` landmark atoms from the pool molecules that no seed validates on (:func:`landmark_grams`),
for training sets whose exact Grams this machine cannot afford; FCHL19 stays exact.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
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

QMLLIB = ["qmllib==1.2.0", "numpy"]
ELEMENTS = (1, 6, 7, 8, 9)


def fchl19_representations(pool, test, n_check, sigmas, time_qmllib):
    """``(rep_pool, rep_test, extras)``: FCHL19 atomic representations from qmllib's venv."""
    py = harness.peer_python("qmllib", QMLLIB)
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.npz")
        np.savez(inp, Z=pool.Z, R=pool.R, offsets=pool.offsets, Z2=test.Z, R2=test.R, offsets2=test.offsets)
        args = [inp, out, "--check", str(n_check), "--sigmas", ",".join(f"{s:g}" for s in sigmas)]
        harness.run_peer(py, "fchl19_worker.py", *args, *(["--time-kernel"] if time_qmllib else []))
        d = dict(np.load(out))
    return d.pop("rep"), d.pop("rep2"), d


def local_gaussian_kernels(X1, Z1, mol1, X2, Z2, mol2, n1, n2, sigmas, block=4096):
    """``{σ: K}`` ``(n1, n2)``: Σ over same-element atom pairs of exp(−|x − x'|²/(2σ²)), BLAS-blocked.

    ``X``: (atoms, D) representations, ``Z`` atomic numbers, ``mol`` molecule index of each atom
    (non-decreasing). Distances by one matrix product per block; the sums over each molecule's
    atoms by sparse indicator products (:func:`eqntk.data.segment_sum_gram`), O(atoms²) per σ.
    """
    out = {s: np.zeros((n1, n2)) for s in sigmas}
    for e in np.intersect1d(np.unique(Z1), np.unique(Z2)):
        a, b = np.nonzero(Z1 == e)[0], np.nonzero(Z2 == e)[0]
        Xb = X2[b]
        nb = np.sum(Xb**2, axis=1)
        for i in range(0, len(a), block):
            ai = a[i:i + block]
            Xa = X1[ai]
            d2 = np.maximum(np.sum(Xa**2, axis=1)[:, None] + nb[None, :] - 2 * Xa @ Xb.T, 0.0)
            lo, hi = int(mol1[ai].min()), int(mol1[ai].max()) + 1
            for s in sigmas:
                out[s][lo:hi] += D.segment_sum_gram(np.exp(d2 * (-0.5 / s**2)), mol1[ai] - lo, hi - lo, mol2[b], n2)
    return out


def fchl19_grams(pool, test, sigmas, n_check: int, time_qmllib: bool = False):
    """FCHL19 Grams of ``pool`` × ``pool`` and ``test`` × ``pool`` for every σ, checked against qmllib.

    Returns ``(f_pool, f_test, seconds, check_err)``: ``{σ: (P, P)}``, ``{σ: (T, P)}``, the
    seconds of the representations and of the Grams, and the max relative difference of the
    BLAS kernel to qmllib's own ``get_local_kernel`` on ``n_check`` molecules of each set (the
    run stops if it is not below 1e-10).
    """
    seconds = {}
    rep_p, rep_t, extras = fchl19_representations(pool, test, n_check, sigmas, time_qmllib)
    seconds["fchl19_representations"] = float(extras["rep_seconds"])
    t1 = time.perf_counter()
    mp, mt = pool.molecule_index, test.molecule_index
    f_pool = local_gaussian_kernels(rep_p, pool.Z, mp, rep_p, pool.Z, mp, len(pool), len(pool), sigmas)
    f_test = local_gaussian_kernels(rep_t, test.Z, mt, rep_p, pool.Z, mp, len(test), len(pool), sigmas)
    seconds["fchl19_grams_blas_all_sigmas"] = time.perf_counter() - t1
    if "kernel_seconds" in extras:
        seconds["fchl19_qmllib_kernel_pool_all_sigmas"] = float(extras["kernel_seconds"])
    n = n_check
    cp_, ct_ = pool.subset(np.arange(n)), test.subset(np.arange(n))
    check = local_gaussian_kernels(rep_p[: cp_.n_atoms_total], cp_.Z, cp_.molecule_index,
                                   rep_t[: ct_.n_atoms_total], ct_.Z, ct_.molecule_index, n, n, sigmas)
    # qmllib 1.2.0's get_local_kernel(X1, X2, ...) hands back the transpose of its documented (N1, N2) matrix
    # (its Fortran fills kernel(b, a)): compare with that, and stop if the two kernels differ
    check_err = max(float(np.max(np.abs(check[s] - extras[f"check_{s:g}"].T)) / np.max(np.abs(extras[f"check_{s:g}"])))
                    for s in sigmas)
    if not check_err < 1e-10:
        raise SystemExit(f"the BLAS local kernel differs from qmllib's by {check_err:.1e} (relative): not FCHL19's kernel")
    return f_pool, f_test, seconds, check_err


def fchl19_rows(f_pool, f_test, yp, yt, cp, ct, val, train, n_train, sigmas) -> list:
    """FCHL19 test rows per training size, σ and the ridge chosen on the validation molecules ``val``.

    Arguments as :func:`eqntk.experiments.qm9.evaluate_curve`'s, with ``{σ: Gram}`` dicts from
    :func:`fchl19_grams`; each row carries its ``sigma``.
    """
    by_sigma = {s: qm9.evaluate_curve({"ntk": f_pool[s], "nngp": f_pool[s]}, {"ntk": f_test[s], "nngp": f_test[s]},
                                      yp, yt, cp, ct, val, train, n_train, DEFAULT_RIDGES, "fchl19")
                for s in sigmas}
    rows = []
    for n in n_train:
        cands = [(s, r) for s in sigmas for r in by_sigma[s] if r["n_train"] == n and r["kernel"] == "fchl19_ntk"]
        s, r = min(cands, key=lambda sr: sr[1]["val_mae_meV"])
        rows.append({**r, "kernel": "fchl19", "sigma": s})
    return rows


def landmark_grams(cfg, pool, test, m: int, seeds, n_val: int, store):
    """Pool × landmark, test × landmark and landmark × landmark molecular Grams of each eqntk network.

    The ``m`` landmark atoms (stratified by element, :func:`eqntk.data.landmark_atoms`, seed 0) come
    from the pool molecules that are validation molecules in none of ``seeds``' splits: one set of
    landmarks serves every split and training size, and no validation or test molecule is one.
    Returns ``({name: (K_pool_lm, K_test_lm, seconds)}, {name: {kind: LandmarkBasis of K_lm_lm}})``.
    """
    never_val = np.setdiff1d(np.arange(len(pool)),
                             np.concatenate([qx.seed_split(len(pool), s, n_val)[0] for s in seeds]))
    flat = np.concatenate([np.arange(pool.offsets[i], pool.offsets[i + 1]) for i in never_val])
    atoms = flat[D.landmark_atoms(pool.subset(never_val), m, seed=0)]
    lm = D.atoms_as_molecules(pool, atoms)
    print(f"landmarks: {m} atoms of the {len(flat)} atoms of the {len(never_val)} pool molecules that no split "
          "validates on", flush=True)
    x_pool, x_test = qm9.environments(cfg, pool, test, np.float32)
    x_lm = x_pool[atoms]
    grams, lm_grams = {}, {}
    for name, (kf, shape) in qm9.networks(cfg, x_pool.shape[2]).items():
        t0 = time.perf_counter()
        st = None if store is None else os.path.join(store, qx._tag(cfg), f"{name}_landmarks{m}")
        sub = (lambda part: None) if st is None else (lambda part: os.path.join(st, part))
        kw = dict(tile=cfg.tile, progress=True, log=print)
        gp = qm9.molecular_grams(kf, shape(x_pool), pool, shape(x_lm), lm, store=sub("pool"), label="pool x lm, ",
                                 **kw)
        gt = qm9.molecular_grams(kf, shape(x_test), test, shape(x_lm), lm, store=sub("test"), label="test x lm, ",
                                 **kw)
        k_lm = qm9.molecular_grams(kf, shape(x_lm), lm, store=sub("lm"), label="lm x lm, ", **kw)
        grams[name] = (gp, gt, time.perf_counter() - t0)
        # one Nyström basis per kernel serves every split and training size
        lm_grams[name] = {kind: landmark_basis(k_lm[kind], psd_rtol=psd_tolerance("float32", atoms=True))
                          for kind in ("ntk", "nngp")}
    return grams, lm_grams


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    qx.add_split_arguments(p)
    p.add_argument("--sigmas", type=float, nargs="+", default=[0.5, 1, 2, 4, 8, 16, 32])
    p.add_argument("--kernels", nargs="+", default=["so3"], help="eqntk networks beside FCHL19 (so3, mlp)")
    p.add_argument("--check", type=int, default=40, help="molecules per set checked against qmllib's kernel")
    p.add_argument("--time-qmllib", action="store_true", help="also time qmllib's own local kernel")
    p.add_argument("--landmarks", type=int, default=None, metavar="M",
                   help="eqntk by landmark (Nyström) regression with M landmark atoms instead of the exact Grams; "
                        "drawn from the pool molecules that no seed uses for validation (never test molecules)")
    p.add_argument("--out", default="benchmarks/results/qm9_fchl19.json")
    args = p.parse_args(argv)

    ms, y, test_idx, pool_idx = qx._data(args, args.pool, args.n_test)
    pool, test = ms.subset(pool_idx), ms.subset(test_idx)
    print(f"pool {len(pool)} molecules ({pool.n_atoms_total} atoms), test {len(test)} ({test.n_atoms_total} atoms), "
          f"load average {harness.load_average()}", flush=True)

    f_pool, f_test, seconds, check_err = fchl19_grams(pool, test, args.sigmas, args.check, args.time_qmllib)
    print(f"FCHL19: representations {seconds['fchl19_representations']:.1f} s, Grams (BLAS, {len(args.sigmas)} σ) "
          f"{seconds['fchl19_grams_blas_all_sigmas']:.1f} s; max relative difference to qmllib's kernel "
          f"{check_err:.1e}", flush=True)

    # eqntk
    qargs = argparse.Namespace(set=args.set, kernels=args.kernels)
    cfg = qx._config(qargs)
    cfg.validate()
    if args.landmarks is None:
        grams = qx._grams(cfg, pool, test, np.float32, args.store, print)
        lm_grams = None
    else:
        grams, lm_grams = landmark_grams(cfg, pool, test, args.landmarks, args.seeds, args.n_val, args.store)
    seconds.update({f"eqntk_{k}_grams": v[2] for k, v in grams.items()})
    print(f"eqntk: {qx._tag(cfg)}: " + ", ".join(f"{k} {v[2]:.1f} s" for k, v in grams.items()), flush=True)

    yp, yt = y[pool_idx], y[test_idx]
    cp, ct = qm9.element_counts(pool), qm9.element_counts(test)
    per_seed = []
    for seed in args.seeds:
        if lm_grams is None:
            rows, val, train = qx.seed_rows(grams, yp, yt, cp, ct, seed, args.n_val, args.n_train)
        else:
            val, train = qx.seed_split(len(pool), seed, args.n_val)
            rows = qm9.baseline_rows(yp, yt, cp, ct, train, args.n_train)
            for name, (gp, gt, _) in grams.items():
                rows += qm9.evaluate_curve_landmarks(gp, gt, lm_grams[name], yp, yt, cp, ct, val, train, args.n_train,
                                                     DEFAULT_RIDGES, name)
            for r in rows:
                r["seed"] = seed
        rows += [{**r, "seed": seed} for r in fchl19_rows(f_pool, f_test, yp, yt, cp, ct, val, train, args.n_train,
                                                          args.sigmas)]
        per_seed += rows
    summary = qx.summarize(per_seed, args.n_train)
    result = {"experiment": "qm9_fchl19", "args": vars(args), "eqntk_config": qx._tag(cfg),
              "results": summary, "per_seed": per_seed, "seconds": seconds,
              "fchl19_check_max_rel_diff_vs_qmllib": check_err, "load_average_end": harness.load_average(),
              "n_atoms": {"pool": int(pool.n_atoms_total), "test": int(test.n_atoms_total)},
              "environment": environment_info()}
    write_json(args.out, result)
    labels = _labels(args.landmarks)
    ns = args.n_train
    print("test MAE [meV] (mean ± std over splits)")
    print(f"{'kernel':32s}" + "".join(f"{'N=' + str(n):>14s}" for n in ns))
    for k in [k for k in labels if any(r["kernel"] == k for r in summary)]:
        cells = [next(r for r in summary if r["kernel"] == k and r["n_train"] == n) for n in ns]
        print(f"{labels[k]:32s}" + "".join(f"{c['mae_meV']:9.1f} ± {c['mae_std_meV']:3.0f}" for c in cells))
    png = os.path.splitext(args.out)[0] + ".png"
    _plot(result, labels, png)
    print(f"wrote {args.out} and {png}")


def _labels(landmarks):
    """Legend names; eqntk's carry the landmark count when the regression was Nyström."""
    suffix = f", {landmarks:,} landmarks" if landmarks else ""
    eqntk = {k: v + suffix for k, v in qm9.KERNEL_LABELS.items()}
    return {"fchl19": "FCHL19 (qmllib)", "element_baseline": "per-element linear baseline", **eqntk}


def _plot(result, labels, png):
    from eqntk.experiments.common import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for k, lab in labels.items():
        rs = sorted((r for r in result["results"] if r["kernel"] == k), key=lambda r: r["n_train"])
        if not rs:
            continue
        ax.errorbar([r["n_train"] for r in rs], [r["mae_meV"] for r in rs], yerr=[r["mae_std_meV"] for r in rs],
                    marker="o", capsize=3, ls="--" if k in ("fchl19", "element_baseline") else "-", label=lab)
    ax.set(xscale="log", yscale="log", xlabel="training molecules N", ylabel="test MAE [meV]",
           title=f"QM9 U0 atomization energy: eqntk vs FCHL19 ({result['n_atoms']['test']} test atoms)")
    save_figure(fig, ax, png)


if __name__ == "__main__":
    sys.exit(main())
