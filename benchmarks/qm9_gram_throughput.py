"""QM9 Gram throughput: eqntk's SO(3) kernel beside qmllib's own FCHL19 local kernel, same molecules, one run.

    python benchmarks/qm9_gram_throughput.py [--n-mol 400] [--repeats 2] [--sigmas 0.5 1 2 4 8 16 32]

Both compute the symmetric molecular Gram of the first ``--n-mol`` molecules of the embedded QM9
subset over same-element atom pairs: eqntk the default ``eqntk qm9`` network
(S2ConvSO3 → Rbf(0.5) → SO3Pool(oversampling 4) → Dense, NNGP and NTK, float32; and the same
network on the Euler product grid, ``SO3Pool(rule=False)``), qmllib 1.2
``get_local_symmetric_kernel`` (its Fortran/OpenMP implementation, in its own venv made by
benchmarks/harness.py) for one σ and for all ``--sigmas`` (what a σ selection needs). The runs are
interleaved (eqntk, qmllib, eqntk, …) and the median is reported with the load average; one
eqntk warm-up call compiles first. Also the arithmetic per pair and the fraction of the measured
float32 matmul peak (same run) that eqntk's product reaches. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

from eqntk import data as D  # noqa: E402
from eqntk import stax  # noqa: E402
from eqntk.so3.quadrature import grid_bandlimit_for, pool_rule, so3_grid  # noqa: E402
from eqntk.so3.wigner import num_block_coeffs  # noqa: E402
from eqntk.experiments import qm9  # noqa: E402
from qm9_fchl19 import QMLLIB  # noqa: E402


def same_element_pairs(ms) -> int:
    """Unordered same-element atom pairs (with self pairs) of the symmetric Gram."""
    _, n = np.unique(ms.Z, return_counts=True)
    return int(np.sum(n * (n + 1) // 2))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-mol", type=int, default=400)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--sigmas", type=float, nargs="+", default=[0.5, 1, 2, 4, 8, 16, 32])
    p.add_argument("--out", default="benchmarks/results/qm9_gram_throughput.json")
    a = p.parse_args(argv)

    ms = D.load_qm9(None).subset(np.arange(a.n_mol))
    cfg = qm9.QM9Config()
    x, _ = qm9.environments(cfg, ms, None, np.float32)
    kf, _ = qm9.networks(cfg, x.shape[2])["so3"]
    # the same network on the Euler product grid of the same exact degree (the pool's default before
    # its point rule): the gain of the rule, measured in the same run
    _, _, kf_grid = stax.serial(stax.S2ConvSO3(256, cfg.bandlimit, W_std=cfg.w_std), cfg.nonlinearity_layer(),
                                stax.SO3Pool(oversampling=cfg.oversampling, rule=False), stax.Dense(1))
    rule = pool_rule(cfg.bandlimit, cfg.oversampling, True)
    n_grid = so3_grid(grid_bandlimit_for(cfg.bandlimit, 1, cfg.oversampling, True)).size
    n_points = rule.size if rule is not None else n_grid
    M = num_block_coeffs(cfg.bandlimit)
    # per pair and quadrature point: the (pairs, M) @ (M, points) product (2M flops; the Fourier route,
    # M < L² C) and the Rbf map with its two weighted sums (an exp and ~6 flops)
    flops_per_pair = {"matmul": 2 * M * n_points, "elementwise": 6 * n_points, "exp": n_points}
    py = harness.peer_python("qmllib", QMLLIB)
    pairs = same_element_pairs(ms)
    print(f"{a.n_mol} molecules, {ms.n_atoms_total} atoms, {pairs} same-element atom pairs; "
          f"load average {harness.load_average()}", flush=True)

    def eqntk_once(fn=kf):
        t = time.perf_counter()
        qm9.molecular_grams(fn, x, ms, tile=cfg.tile, progress=False, log=None)
        return time.perf_counter() - t

    with tempfile.TemporaryDirectory() as d:
        inp = os.path.join(d, "in.npz")
        np.savez(inp, Z=ms.Z, R=ms.R, offsets=ms.offsets)

        def qmllib_once(sigmas):
            out = os.path.join(d, "out.npz")
            harness.run_peer(py, "fchl19_worker.py", inp, out, "--sigmas", ",".join(f"{s:g}" for s in sigmas),
                             "--time-kernel")
            return float(np.load(out)["kernel_seconds"])

        one_sigma = a.sigmas[len(a.sigmas) // 2]  # the middle width (4 of the default seven)
        eqntk_once()  # compile
        eqntk_once(kf_grid)
        t = {"eqntk_so3_nngp_ntk": [], "qmllib_fchl19_one_sigma": [], "qmllib_fchl19_all_sigmas": [],
             "eqntk_so3_nngp_ntk_product_grid": []}
        peaks = []
        for _ in range(a.repeats):
            t["eqntk_so3_nngp_ntk"].append(eqntk_once())
            t["qmllib_fchl19_one_sigma"].append(qmllib_once([one_sigma]))
            t["qmllib_fchl19_all_sigmas"].append(qmllib_once(a.sigmas))
            t["eqntk_so3_nngp_ntk_product_grid"].append(eqntk_once(kf_grid))
            peaks.append(harness.matmul_peak("float32"))
    med = {k: float(np.median(v)) for k, v in t.items()}
    e = med["eqntk_so3_nngp_ntk"]
    peak = float(np.median(peaks))
    achieved = flops_per_pair["matmul"] * pairs / e
    print(f"{'Gram':<32} {'seconds':>9} {'µs/pair':>9} {'eqntk / this':>13}")
    for k, v in med.items():
        print(f"{k:<32} {v:>9.2f} {v / pairs * 1e6:>9.3f} {e / v:>13.2f}")
    print(f"quadrature: {n_points} points ({'rule' if rule is not None else 'grid'}; product grid {n_grid}); "
          f"matmul {flops_per_pair['matmul']} flop/pair: {achieved / 1e9:.1f} GFLOP/s of a measured "
          f"{peak / 1e9:.1f} GFLOP/s float32 matmul peak ({achieved / peak:.0%}, counting only the useful "
          f"same-element pairs' matmul)")
    res = {"benchmark": "qm9_gram_throughput", "args": vars(a), "n_atoms": int(ms.n_atoms_total),
           "same_element_pairs": pairs, "one_sigma": one_sigma, "seconds": t, "median_seconds": med,
           "eqntk_over_qmllib_one_sigma": e / med["qmllib_fchl19_one_sigma"],
           "eqntk_over_qmllib_all_sigmas": e / med["qmllib_fchl19_all_sigmas"],
           "rule_over_product_grid": e / med["eqntk_so3_nngp_ntk_product_grid"],
           "quadrature": {"points": n_points, "kind": "rule" if rule is not None else "grid",
                          "product_grid_points": n_grid, "block_coefficients": M},
           "flops_per_pair": flops_per_pair, "matmul_peak_flops": peaks,
           "matmul_fraction_of_peak": achieved / peak,
           "eqntk_config": {k: getattr(cfg, k) for k in ("bandlimit", "radial", "n_radial", "nonlinearity", "gamma",
                                                        "oversampling", "dtype", "tile")},
           "load_average_end": harness.load_average(), "environment": qm9.environment_info()}
    harness.write_result(a.out, res)


if __name__ == "__main__":
    main()
