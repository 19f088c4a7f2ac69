"""Accuracy and speed of SO3Pool(oversampling) for the QM9 atom kernel.

    python benchmarks/qm9_oversampling.py --network paper --out benchmarks/results/qm9_oversampling.json
    python benchmarks/qm9_oversampling.py --network default --out benchmarks/results/qm9_oversampling_rbf.json

``--network paper``: L = 4, 15 channels (distance powers), Erf, environments as they are;
``--network default``: the settings of ``eqntk qm9`` (:class:`eqntk.experiments.qm9.QM9Config`
defaults: Gaussian radial basis, Rbf, normalised environments).

Atoms of the first molecules of the embedded QM9 subset; the reference is oversampling 8.
Reports max |K − K_ref| / max |K_ref| for NTK and NNGP, atom pairs per second (symmetric Gram,
after compilation), and the pre-activation variance of the lift (how nonlinear Erf is). Each level
runs on the pool's default point rule (where one is stored) and on the Euler product grid of the same
exact degree (``SO3Pool(rule=False)``), in the same run.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import eqntk.data as D
from eqntk import stax
from eqntk.experiments import qm9
from eqntk.experiments.common import environment_info, write_json
from eqntk.so3.quadrature import grid_bandlimit_for, pool_rule, so3_grid


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-atoms", type=int, default=384)
    p.add_argument("--bandlimit", type=int, default=4)
    p.add_argument("--w-std", type=float, default=1.0)
    p.add_argument("--oversamplings", type=float, nargs="+", default=[2.0, 3.0, 4.0])
    p.add_argument("--reference", type=float, default=8.0)
    p.add_argument("--network", choices=["paper", "default"], default="paper")
    p.add_argument("--out", default="benchmarks/results/qm9_oversampling.json")
    a = p.parse_args(argv)
    ms = D.load_qm9().subset(np.arange(60))
    if a.network == "paper":
        cfg = qm9.QM9Config(bandlimit=a.bandlimit, w_std=a.w_std, radial="powers", nonlinearity="erf",
                            normalize=False)
    else:
        cfg = qm9.QM9Config(bandlimit=a.bandlimit, w_std=a.w_std)
    x = qm9.environments(cfg, ms, None, np.float32)[0][: a.n_atoms]
    q = a.w_std ** 2 * (x.astype(np.float64) ** 2).sum((1, 2)) / (4 * np.pi * x.shape[2])
    res, ref = [], None
    runs = [(a.reference, False)] + [(o, rule) for o in a.oversamplings for rule in (True, False)]
    for osf, rule in runs:
        _, _, kf = stax.serial(stax.S2ConvSO3(256, a.bandlimit, W_std=a.w_std), cfg.nonlinearity_layer(),
                               stax.SO3Pool(oversampling=osf, rule=rule), stax.Dense(1))
        points = pool_rule(a.bandlimit, osf, True) if (rule and cfg.nonlinearity in ("rbf",)) else None
        if rule and points is None:
            continue  # the pool uses the grid here (no rule stored, or a map that cannot take the weights)
        kf(x[:128], tile_size=128)  # compile
        t0 = time.perf_counter()
        k = kf(x, tile_size=128)
        k.ntk.block_until_ready()
        dt = time.perf_counter() - t0
        k = (np.asarray(k.nngp), np.asarray(k.ntk))
        if ref is None:
            ref = k
        B = grid_bandlimit_for(a.bandlimit, 1, osf, True)
        row = {"oversampling": osf, "quadrature": f"rule t={points.degree}" if points is not None else "grid",
               "points": points.size if points is not None else so3_grid(B).size, "seconds": dt, "pairs_per_s": x.shape[0] ** 2 / 2 / dt,
               "rel_err_nngp": float(np.abs(k[0] - ref[0]).max() / np.abs(ref[0]).max()),
               "rel_err_ntk": float(np.abs(k[1] - ref[1]).max() / np.abs(ref[1]).max())}
        print(row, flush=True)
        res.append(row)
    write_json(a.out, {"experiment": "qm9_oversampling", "args": vars(a), "n_atoms": int(x.shape[0]),
                       "n_channels": int(x.shape[2]),
                       "preactivation_variance_percentiles_5_50_95": np.percentile(q, [5, 50, 95]).tolist(),
                       "results": res, "environment": environment_info()})


if __name__ == "__main__":
    sys.exit(main())
