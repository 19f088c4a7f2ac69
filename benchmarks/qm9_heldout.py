"""``eqntk qm9`` on QM9 molecules that no selection has seen, beside FCHL19 on the very same split.

    python benchmarks/qm9_heldout.py --exclude ../shared/data/qm9_subset10k_hartree.npz \\
        --out benchmarks/results/qm9_heldout.json

1. Reads the full QM9 from the PyPI package ``qm9pack`` (``pip install 'eqntk[qm9]'``), drops every
   molecule whose gdb index is in the embedded default data set or in an ``--exclude`` file (the
   subsets every selection of ``docs/experiments.md`` drew from), and writes ``--n-mol`` of the
   rest, drawn with ``--draw-seed``, to ``--npz``.
2. Runs the command a user would run, ``eqntk qm9 --data THAT.npz --n-train 200 1000 --n-test 1000
   --kernel so3`` with every other setting at its default (``--cli-args`` appends more).
3. Computes FCHL19 (qmllib 1.2 ``generate_fchl19`` defaults, the local Gaussian kernel over
   same-element atom pairs, see ``qm9_fchl19.py``) on exactly the CLI's split, read from its JSON
   (test and pool gdb indices; validation = the first ``n_val`` of the pool, training sets its nested
   prefixes after them), with σ and the ridge chosen on the CLI's validation molecules.

Both curves go into one JSON, with the CLI's own JSON inside it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from qm9_fchl19 import fchl19_grams, fchl19_rows  # noqa: E402

import eqntk.data as D  # noqa: E402
from eqntk.experiments import qm9  # noqa: E402
from eqntk.experiments.common import environment_info, write_json  # noqa: E402


def heldout_set(n_mol: int, exclude: list[str], seed: int, log=print):
    """``n_mol`` QM9 molecules (qm9pack) whose gdb index is in neither the embedded default nor ``exclude``."""
    full = D.load_qm9("qm9pack")
    seen = set(D.load_qm9(None).ids.tolist())
    for path in exclude:
        seen |= set(D.load_qm9(path).ids.tolist())
    rest = np.array([i for i, g in enumerate(full.ids.tolist()) if g not in seen])
    log(f"qm9pack: {len(full)} molecules, {len(full) - len(rest)} in the excluded sets, {len(rest)} left")
    if n_mol > len(rest):
        raise SystemExit(f"only {len(rest)} molecules are left, fewer than --n-mol {n_mol}")
    pick = np.sort(np.random.default_rng(seed).choice(rest, n_mol, replace=False))
    return full.subset(pick)


def fchl19_on_split(ms, cli: dict, sigmas, n_check: int):
    """FCHL19 rows (σ, ridge chosen on the validation molecules) on the split recorded in ``cli``'s JSON."""
    where = {g: i for i, g in enumerate(ms.ids.tolist())}
    pool_idx = np.array([where[g] for g in cli["split"]["pool_ids"]])
    test_idx = np.array([where[g] for g in cli["split"]["test_ids"]])
    pool, test = ms.subset(pool_idx), ms.subset(test_idx)
    n_val, n_train = cli["config"]["n_val"], cli["config"]["n_train"]
    y = D.atomization_energy(ms, cli["config"]["target"], unit="eV")
    yp, yt = y[pool_idx], y[test_idx]
    cp, ct = qm9.element_counts(pool), qm9.element_counts(test)
    val, train = np.arange(n_val), np.arange(n_val, len(pool))
    f_pool, f_test, seconds, check_err = fchl19_grams(pool, test, sigmas, n_check)
    rows = fchl19_rows(f_pool, f_test, yp, yt, cp, ct, val, train, n_train, sigmas)
    return rows, seconds, check_err


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exclude", nargs="*", default=[], metavar="NPZ",
                   help="QM9 subsets (npz with gdb 'id's) whose molecules must not be used; the embedded "
                        "default is always excluded")
    p.add_argument("--n-mol", type=int, default=3000, help="held-out molecules written to --npz")
    p.add_argument("--draw-seed", type=int, default=0)
    p.add_argument("--npz", default=os.path.join(tempfile.gettempdir(), "eqntk_qm9_heldout.npz"))
    p.add_argument("--data", default=None, metavar="NPZ",
                   help="run on this QM9 file as it is instead of drawing held-out molecules (the same CLI + "
                        "FCHL19-on-its-split comparison, e.g. with --cli-args --landmarks M)")
    p.add_argument("--n-train", type=int, nargs="+", default=[200, 1000])
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--cli-args", nargs=argparse.REMAINDER, default=[], help="more arguments for eqntk qm9")
    p.add_argument("--sigmas", type=float, nargs="+", default=[0.5, 1, 2, 4, 8, 16, 32])
    p.add_argument("--check", type=int, default=40, help="molecules per set checked against qmllib's kernel")
    p.add_argument("--out", default="benchmarks/results/qm9_heldout.json")
    args = p.parse_args(argv)

    if args.data is None:
        ms = heldout_set(args.n_mol, args.exclude, args.draw_seed)
        ms.save_npz(args.npz)
    else:
        args.npz = args.data
    with tempfile.TemporaryDirectory() as tmp:
        cmd = ["eqntk", "qm9", "--data", args.npz, "--n-train", *map(str, args.n_train),
               "--n-test", str(args.n_test), "--kernel", "so3", "--out", tmp, *args.cli_args]
        print("$ " + " ".join(cmd), flush=True)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        cli_seconds = time.perf_counter() - t0
        shown = " ".join("DIR" if c == tmp else c for c in cmd)
        with open(os.path.join(tmp, "qm9.json")) as f:
            cli = json.load(f)
    ms = D.load_qm9(args.npz)  # exactly what the CLI read
    fchl, f_seconds, check_err = fchl19_on_split(ms, cli, args.sigmas, args.check)
    result = {"experiment": "qm9_heldout", "args": vars(args), "command": shown,
              "eqntk_cli": cli, "fchl19": fchl, "seconds": {"eqntk_cli": cli_seconds, **f_seconds},
              "fchl19_check_max_rel_diff_vs_qmllib": check_err, "load_average_end": harness.load_average(),
              "environment": environment_info()}
    write_json(args.out, result)
    print("test MAE [meV]" + "".join(f"{'N=' + str(n):>10s}" for n in args.n_train))
    rows = [r for r in cli["results"] if r["kernel"] in ("so3_ntk", "so3_nngp", "element_baseline")] + fchl
    for k in ("fchl19", "so3_ntk", "so3_nngp", "element_baseline"):
        print(f"{k:16s}" + "".join(f"{next(r['mae_meV'] for r in rows if r['kernel'] == k and r['n_train'] == n):10.1f}"
                                   for n in args.n_train))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
