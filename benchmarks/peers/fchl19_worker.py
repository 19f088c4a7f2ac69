"""FCHL19 with qmllib, run in qmllib's own venv (benchmarks/harness.py); imports nothing of eqntk.

    python fchl19_worker.py IN.npz OUT.npz [--check N] [--sigmas s1,s2,...] [--time-kernel]

IN: ``Z`` (n_atoms,), ``R`` (n_atoms, 3) Å, ``offsets`` (n_mol + 1,), optional second set ``Z2, R2, offsets2``.
OUT: ``rep`` (n_atoms, D) FCHL19 atomic representations (qmllib 1.2 ``generate_fchl19`` defaults, elements
H C N O F), ``rep2`` likewise; with ``--check N``: ``check_<σ>`` = qmllib's ``get_local_kernel`` between the
first N molecules of each set; with ``--time-kernel``: ``kernel_seconds`` of qmllib's own local kernel over
all sets and σ's (symmetric for one set), ``rep_seconds``.
"""

import argparse
import time

import numpy as np
from qmllib.kernels import get_local_kernel, get_local_symmetric_kernel
from qmllib.representations import generate_fchl19

ELEMENTS = [1, 6, 7, 8, 9]


def reps(Z, R, offsets):
    mols = [(Z[a:b], R[a:b]) for a, b in zip(offsets[:-1], offsets[1:])]
    pad = int(max(len(z) for z, _ in mols))
    X = np.array([generate_fchl19(z, r, elements=ELEMENTS, pad=pad) for z, r in mols])  # (n_mol, pad, D)
    flat = np.concatenate([x[: len(z)] for x, (z, _) in zip(X, mols)])
    return X, [z for z, _ in mols], flat


def main():
    p = argparse.ArgumentParser()
    p.add_argument("inp")
    p.add_argument("out")
    p.add_argument("--check", type=int, default=0)
    p.add_argument("--sigmas", default="")
    p.add_argument("--time-kernel", action="store_true")
    a = p.parse_args()
    d = np.load(a.inp)
    t0 = time.perf_counter()
    X1, Q1, flat1 = reps(d["Z"], d["R"], d["offsets"])
    two = "Z2" in d.files
    X2, Q2, flat2 = reps(d["Z2"], d["R2"], d["offsets2"]) if two else (X1, Q1, flat1)
    out = {"rep": flat1, "rep_seconds": time.perf_counter() - t0}
    if two:
        out["rep2"] = flat2
    sigmas = [float(s) for s in a.sigmas.split(",") if s]
    for s in sigmas if a.check else []:
        n = a.check
        out[f"check_{s:g}"] = get_local_kernel(X1[:n], X2[:n], Q1[:n], Q2[:n], s)
    if a.time_kernel:
        t0 = time.perf_counter()
        for s in sigmas:
            if two:
                get_local_kernel(X1, X2, Q1, Q2, s)
            else:
                get_local_symmetric_kernel(X1, Q1, s)
        out["kernel_seconds"] = time.perf_counter() - t0
    np.savez(a.out, **out)


if __name__ == "__main__":
    main()
