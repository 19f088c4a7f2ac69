"""Rebuild the MD17 ethanol subset embedded in eqntk (src/eqntk/data/md17_ethanol_500.npz).

Recipe: from an MD17 ethanol ``.npz`` with keys z (9,), R (B, 9, 3) Å, E (B,) kcal/mol,
F (B, 9, 3) kcal/mol/Å (e.g. the 2,000 conformations of schnetpack's tutorial data), keep 500
conformations drawn uniformly without replacement with numpy.random.default_rng(0), in the order
drawn; every array stored unchanged (float64), E and F in kcal/mol and kcal/mol/Å.

Usage: python scripts/build_md17_default.py PATH/md17_ethanol_2000.npz
"""

import sys

import numpy as np

from eqntk.data.md17 import default_md17_path

N, SEED = 500, 0


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    with np.load(sys.argv[1]) as d:
        z, R, E, F = (np.asarray(d[k]) for k in ("z", "R", "E", "F"))
    idx = np.random.default_rng(SEED).choice(R.shape[0], N, replace=False)
    np.savez_compressed(default_md17_path(), z=z.astype(np.int8), R=R[idx], E=E[idx], F=F[idx],
                        source_index=idx.astype(np.int32))
    print(f"wrote {default_md17_path()}: {N} conformations of {z.size} atoms")


if __name__ == "__main__":
    main()
