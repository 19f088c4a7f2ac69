"""Image experiments: rotated digits (CNN vs p4 vs p4m NTK) and a small NCT-CRC histology demonstration.

Run from the repository root (venv active)::

    python benchmarks/images_experiment.py digits --n-train 50 100 200 300 --out benchmarks/results/digits_curve.json
    python benchmarks/images_experiment.py histology --data path/to/nct_crc_he_9tiles.npz \
        --out benchmarks/results/histology_demo.json

digits: training images upright; validation and test images rotated by random multiples of 90°
("rot90", exact) and, separately, by uniform random angles ("continuous", bilinear). The
train × train NTK is computed once and shared by both rotation settings and all N (nested
training sets). One split; the error bars are binomial standard errors of the test accuracy,
sqrt(p (1 − p) / n_test). Ridge chosen by validation accuracy.

histology (a DEMONSTRATION, not a benchmark): the nine 224×224 NCT-CRC-HE-100K tiles (one per
tissue class) cut into 7×7 non-overlapping 32×32 crops (441 crops), each averaged down to
8×8×3; crops of every class are split into train / validation / test; test crops are rotated by
random multiples of 90°. Crops of one class all come from ONE tile (one slide region), so this
measures within-tile generalisation only.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)  # regressions in float64; kernels in the inputs' float32

import numpy as np  # noqa: E402

import eqntk.data as D  # noqa: E402
from eqntk import predict  # noqa: E402
from eqntk.experiments import digits  # noqa: E402
from eqntk.experiments.common import (DEFAULT_RIDGES, environment_info, format_table,  # noqa: E402
                                      padded_kernel, psd_tolerance, pyplot, select_ridge, write_json)

# The nine NCT-CRC-HE-100K tiles are not shipped (1 MB, CC-BY 4.0, Zenodo 1214456): give --data, or set
# EQNTK_SHARED_DATA to the developers' data folder holding nct_crc_he_9tiles.npz.
def _nct_path(arg):
    if arg:
        return arg
    root = os.environ.get("EQNTK_SHARED_DATA")
    if not root:
        sys.exit("histology: pass --data PATH/nct_crc_he_9tiles.npz (or set EQNTK_SHARED_DATA to its folder)")
    return os.path.join(root, "nct_crc_he_9tiles.npz")


def _acc(p, y):
    return float(np.mean(np.argmax(p, axis=1) == y))


def _evaluate(k_tr_full, k_val, k_te, y_tr_full, y_val, y_te, n_train, n_cls):
    rows = []
    for n in n_train:
        k_tr = k_tr_full[:n, :n]
        y_tr = np.asarray(predict.one_hot(y_tr_full[:n], n_cls), dtype=np.float64)
        ridge, val_acc, _, coef = select_ridge(k_tr, y_tr, k_val[:, :n], y_val, _acc, DEFAULT_RIDGES,
                                               higher_is_better=True, psd_rtol=psd_tolerance("float32"),
                                               with_coef=True)
        p = _acc(np.asarray(k_te[:, :n], dtype=np.float64) @ coef, y_te)  # the validated model's predictions
        rows.append({"n_train": int(n), "accuracy": p, "accuracy_std": float(np.sqrt(p * (1 - p) / len(y_te))),
                     "val_accuracy": val_acc, "ridge_rel": ridge})
    return rows


def _plot(rows, path, title, key):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for (net, rot), label in sorted({(r["network"], r[key]): None for r in rows}.items()):
        rs = sorted((r for r in rows if r["network"] == net and r[key] == rot), key=lambda r: r["n_train"])
        ax.errorbar([r["n_train"] for r in rs], [100 * r["accuracy"] for r in rs],
                    yerr=[100 * r["accuracy_std"] for r in rs], marker="o", capsize=3,
                    ls="-" if rot in ("rot90", "test rot90") else "--", label=f"{digits.NETWORK_LABELS[net]}, {rot}")
    ax.set_xscale("log")
    ax.set_xlabel("training images N")
    ax.set_ylabel("test accuracy [%]")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def cmd_digits(args):
    ds = digits.load(args.data)
    n_max = max(args.n_train)
    test_i, val_i, train_i = D.split_indices(len(ds), [args.n_test, args.n_val, n_max], seed=args.seed)
    x = (ds.x.astype(np.float64) / 16.0)
    x_tr = x[train_i].astype(np.float32)
    queries = {}
    for kind in args.rotations:
        xv = D.random_rotations(x[val_i], seed=args.seed + 1, kind=kind)[0]
        xt = D.random_rotations(x[test_i], seed=args.seed + 2, kind=kind)[0]
        queries[kind] = np.concatenate([xv, xt]).astype(np.float32)
    x_q = np.concatenate([queries[k] for k in args.rotations])
    rows, secs = [], {}
    tile = min(64, n_max)
    for net in args.networks:
        kf = digits.network(net, args.depth)
        t0 = time.perf_counter()
        st = None if args.store is None else os.path.join(args.store, f"digits_{net}_d{args.depth}_s{args.seed}")
        k_tr = padded_kernel(kf, x_tr, None, get="ntk", tile=tile, progress=True,
                             store=None if st is None else os.path.join(st, "train"))["ntk"]
        k_q = padded_kernel(kf, x_q, x_tr, get="ntk", tile=tile, progress=True,
                            store=None if st is None else os.path.join(st, "query"))["ntk"]
        secs[net] = time.perf_counter() - t0
        print(f"{net}: {secs[net]:.1f} s", flush=True)
        for q, kind in enumerate(args.rotations):
            off = q * (args.n_val + args.n_test)
            k_val, k_te = k_q[off: off + args.n_val], k_q[off + args.n_val: off + args.n_val + args.n_test]
            for r in _evaluate(k_tr, k_val, k_te, ds.y[train_i], ds.y[val_i], ds.y[test_i], args.n_train, 10):
                rows.append({"network": net, "rotation": kind, **r})
        result = {"experiment": "digits_curve", "args": vars(args), "results": rows, "kernel_seconds": secs,
                  "environment": environment_info()}
        write_json(args.out, result)
    table = []
    for kind in args.rotations:
        for net in args.networks:
            rs = sorted((r for r in rows if r["network"] == net and r["rotation"] == kind), key=lambda r: r["n_train"])
            table.append([f"{digits.NETWORK_LABELS[net]}, test {kind}"] +
                         [f"{100 * r['accuracy']:.1f} ± {100 * r['accuracy_std']:.1f}" for r in rs])
    print(format_table(["test accuracy [%]"] + [f"N={n}" for n in args.n_train], table))
    png = os.path.splitext(args.out)[0] + ".png"
    _plot(rows, png, f"8x8 digits, upright training, rotated test ({args.n_test} images)", "rotation")
    print(f"wrote {args.out} and {png}")


def cmd_histology(args):
    tiles = D.load_nct_crc_he_tiles(_nct_path(args.data))
    crops, src = D.extract_crops(tiles.x, 32)
    labels = tiles.y[src]
    f = args.factor
    small = crops.astype(np.float64).reshape(crops.shape[0], 32 // f, f, 32 // f, f, 3).mean(axis=(2, 4)) / 255.0
    small = small - small.mean(axis=(0, 1, 2))  # centre each colour channel (train-free: a global constant)
    rng = np.random.default_rng(args.seed)
    tr, va, te = [], [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.nonzero(labels == c)[0])
        tr.append(idx[: args.n_train_per_class])
        va.append(idx[args.n_train_per_class: args.n_train_per_class + args.n_val_per_class])
        te.append(idx[args.n_train_per_class + args.n_val_per_class:])
    # interleave classes so that nested prefixes of the training set stay balanced
    tr = np.stack(tr, axis=1).reshape(-1)
    va, te = np.concatenate(va), np.concatenate(te)
    x_tr = small[tr].astype(np.float32)
    x_q = np.concatenate([D.rot90_images(small[va], rng.integers(0, 4, va.size)),
                          D.rot90_images(small[te], rng.integers(0, 4, te.size))]).astype(np.float32)
    n_cls = len(tiles.classes)
    n_train = [n_cls * k for k in args.per_class_curve]
    rows, secs = [], {}
    for net in args.networks:
        kf = digits.network(net, 1)
        t0 = time.perf_counter()
        k_tr = padded_kernel(kf, x_tr, None, get="ntk", tile=min(64, len(tr)), progress=True)["ntk"]
        k_q = padded_kernel(kf, x_q, x_tr, get="ntk", tile=min(64, len(tr)), progress=True)["ntk"]
        secs[net] = time.perf_counter() - t0
        print(f"{net}: {secs[net]:.1f} s", flush=True)
        for r in _evaluate(k_tr, k_q[: va.size], k_q[va.size:], labels[tr], labels[va], labels[te], n_train, n_cls):
            rows.append({"network": net, "rotation": "test rot90", **r})
    result = {"experiment": "histology_demo", "args": vars(args), "classes": list(tiles.classes),
              "n_crops": int(crops.shape[0]), "crop_size": 32, "downsampled_to": 32 // f,
              "split": {"train": int(tr.size), "val": int(va.size), "test": int(te.size)},
              "results": rows, "kernel_seconds": secs, "environment": environment_info()}
    write_json(args.out, result)
    table = [[digits.NETWORK_LABELS[net]] + [f"{100 * r['accuracy']:.1f} ± {100 * r['accuracy_std']:.1f}"
                                             for r in sorted((r for r in rows if r["network"] == net),
                                                             key=lambda r: r["n_train"])] for net in args.networks]
    print(format_table(["test accuracy [%] (test crops rot90)"] + [f"N={n}" for n in n_train], table))
    png = os.path.splitext(args.out)[0] + ".png"
    _plot(rows, png, f"NCT-CRC demo: 9 classes, {te.size} rotated test crops ({32 // f}x{32 // f} RGB)", "rotation")
    print(f"wrote {args.out} and {png}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("digits")
    d.add_argument("--data", default=None, help="digits .npz (default: the digits shipped with eqntk)")
    d.add_argument("--n-train", type=int, nargs="+", default=[50, 100, 200, 300])
    d.add_argument("--n-val", type=int, default=50)
    d.add_argument("--n-test", type=int, default=200)
    d.add_argument("--networks", nargs="+", default=["cnn", "p4", "p4m"])
    d.add_argument("--rotations", nargs="+", default=["rot90", "continuous"])
    d.add_argument("--depth", type=int, default=1)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--store", default=None)
    d.add_argument("--out", default="benchmarks/results/digits_curve.json")
    h = sub.add_parser("histology")
    h.add_argument("--data", default=None, help="nct_crc_he_9tiles.npz (default: in $EQNTK_SHARED_DATA)")
    h.add_argument("--factor", type=int, default=4, help="average-pool factor of the 32x32 crops")
    h.add_argument("--n-train-per-class", type=int, default=20)
    h.add_argument("--n-val-per-class", type=int, default=5)
    h.add_argument("--per-class-curve", type=int, nargs="+", default=[5, 10, 20])
    h.add_argument("--networks", nargs="+", default=["cnn", "p4", "p4m"])
    h.add_argument("--seed", type=int, default=0)
    h.add_argument("--out", default="benchmarks/results/histology_demo.json")
    args = p.parse_args(argv)
    {"digits": cmd_digits, "histology": cmd_histology}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
