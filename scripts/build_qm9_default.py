"""Rebuild the QM9 subset embedded in eqntk (src/eqntk/data/qm9_default_5k.npz).

Recipe: read the full QM9 (130,831 molecules) from the PyPI package qm9pack 1.0.3,
keep the first 10 molecules by gdb index (gdb 1–10: CH4, NH3, H2O, C2H2, HCN,
H2CO, C2H6, CH3OH, …, small reference molecules) and 4,990 molecules drawn
uniformly without replacement from the others with numpy.random.default_rng(0),
sorted by gdb index; positions stored as float32 (Å), targets float64 (Hartree etc.).

Usage: pip install qm9pack==1.0.3 && python scripts/build_qm9_default.py [qm9pack_data_dir]
"""

import sys

import numpy as np

from eqntk.data.qm9 import default_qm9_path, read_qm9pack

N_FIRST, N_TOTAL, SEED = 10, 5000, 0


def main():
    ms = read_qm9pack(sys.argv[1] if len(sys.argv) > 1 else None)
    order = np.argsort(ms.ids, kind="stable")
    first, rest = order[:N_FIRST], order[N_FIRST:]
    pick = np.random.default_rng(SEED).choice(rest, N_TOTAL - N_FIRST, replace=False)
    idx = np.concatenate([first, pick])
    idx = idx[np.argsort(ms.ids[idx], kind="stable")]
    sub = ms.subset(idx)
    sub.save_npz(default_qm9_path(), float32_positions=True)
    print(f"wrote {default_qm9_path()}: {sub}")


if __name__ == "__main__":
    main()
