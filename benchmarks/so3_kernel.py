"""Benchmark: SO(3) GCNN kernels, eqntk vs the authors' dense-grid code (timings.md).

Network (the issue's): S2ConvSO3(L) → Erf → SO3ConvSO3(L/2) → Erf → SO3Pool → Dense, inputs with
C = 2 channels and bandlimit L, Gram of N inputs with themselves, get=('nngp', 'ntk').

Each configuration runs in a fresh subprocess (clean peak RSS): compile time = first call minus the
median of the following calls; throughput = N² / median time.

Second table: the configurations of ../shared/reference/timings.md (the authors' code on this
machine type, float64), with eqntk's time in the same run of this script and the ratio.
"bw (L, L)" is read as lift L → L, conv L → L; "bw (L, L/2)" as lift L → L/2, conv L/2 → L/2
(the reference configs' "S2ConvSO3(bw=(in, out))" convention).

Usage: python benchmarks/so3_kernel.py [--quick] [--dtype float64 float32] [--timeout 900]
Writes benchmarks/results/so3_kernel.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

# the authors' times (s) from ../shared/reference/timings.md, keyed by (config, L, N)
AUTHORS = {
    ("LL", 4, 2): 0.23, ("LL", 4, 4): 0.81, ("LL", 4, 8): 3.6,
    ("LL", 6, 2): 3.5, ("LL", 6, 4): 13.9, ("LL", 6, 8): 59.0,
    ("LL", 8, 2): 25.5, ("LL", 10, 2): 120.0,
    ("LH", 8, 2): 0.20, ("LH", 8, 4): 0.82, ("LH", 8, 8): 2.6,
    ("LH", 10, 2): 0.70, ("LH", 10, 4): 3.1, ("LH", 10, 8): 16.6,
    ("LH", 12, 2): 3.7, ("LH", 12, 4): 14.9, ("LH", 12, 8): 57.0,
}
AUTHORS_OOM = {("LL", 8, 4), ("LL", 10, 4)}


def single(kind: str, L: int, N: int, dtype: str, repeats: int) -> dict:
    import jax

    jax.config.update("jax_enable_x64", dtype == "float64")
    import numpy as np
    import jax.numpy as jnp

    from eqntk import stax

    if kind == "issue":
        l1, l2 = L, max(L // 2, 1)
    elif kind == "LL":
        l1, l2 = L, L
    else:  # "LH"
        l1, l2 = L // 2, L // 2
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(N, L * L, 2)), jnp.float64 if dtype == "float64" else jnp.float32)
    _, _, kernel_fn = stax.serial(stax.S2ConvSO3(1, l1), stax.Erf(), stax.SO3ConvSO3(1, l2), stax.Erf(),
                                  stax.SO3Pool(), stax.Dense(1))
    t0 = time.perf_counter()
    k = kernel_fn(x, progress=False)
    k.ntk.block_until_ready()
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        k = kernel_fn(x, progress=False)
        k.ntk.block_until_ready()
        times.append(time.perf_counter() - t0)
    med = float(np.median(times))
    return {
        "kind": kind, "L": L, "lift_bandlimit": l1, "conv_bandlimit": l2, "N": N, "dtype": dtype,
        "time_s": med, "compile_s": max(first - med, 0.0), "entries_per_s": N * N / med,
        "peak_rss_gb": harness.peak_rss_gb(),
        "finite": bool(np.isfinite(np.asarray(k.ntk)).all()),
    }


def run_child(kind, L, N, dtype, repeats, timeout):
    cmd = [sys.executable, __file__, "--single", kind, str(L), str(N), dtype, str(repeats)]
    return harness.run_worker(cmd, {"kind": kind, "L": L, "N": N, "dtype": dtype}, timeout)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--single", nargs=5, help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true", help="small grid only (L ≤ 8, N ≤ 64)")
    p.add_argument("--dtype", nargs="+", default=["float64", "float32"])
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per configuration")
    p.add_argument("--out", default=os.path.join(HERE, "results", "so3_kernel.json"))
    a = p.parse_args()
    if a.single:
        kind, L, N, dtype, rep = a.single
        print(json.dumps(single(kind, int(L), int(N), dtype, int(rep))))
        return

    Ls = [4, 8] if a.quick else [4, 8, 16]
    Ns = [16, 64] if a.quick else [16, 64, 256]
    rows = []
    print(f"{'L':>3} {'N':>4} {'dtype':>8} {'time [s]':>10} {'compile [s]':>12} {'entries/s':>11} {'peak RSS [GB]':>14}")
    for dtype in a.dtype:
        for L in Ls:
            for N in Ns:
                r = run_child("issue", L, N, dtype, 1 if N * L >= 2048 else 3, a.timeout)
                rows.append(r)
                if "error" in r:
                    print(f"{L:>3} {N:>4} {dtype:>8}   {r['error']}")
                else:
                    print(f"{L:>3} {N:>4} {dtype:>8} {r['time_s']:>10.3f} {r['compile_s']:>12.2f} "
                          f"{r['entries_per_s']:>11.0f} {r['peak_rss_gb']:>14.2f}")

    print("\nversus the authors' code (timings.md, float64, same machine type): ratio = theirs / ours")
    print(f"{'config':>8} {'L':>3} {'N':>3} {'theirs [s]':>11} {'eqntk [s]':>10} {'ratio':>8}")
    cmp_rows = []
    for (kind, L, N), theirs in list(AUTHORS.items()) + [(k, None) for k in sorted(AUTHORS_OOM)]:
        r = run_child(kind, L, N, "float64", 3, a.timeout)
        r["authors_s"] = theirs
        if "error" not in r and theirs:
            r["speedup"] = theirs / r["time_s"]
        cmp_rows.append(r)
        ours = "error" if "error" in r else f"{r['time_s']:.3f}"
        t = "OOM" if theirs is None else f"{theirs:.2f}"
        ratio = f"{r['speedup']:.0f}x" if "speedup" in r else "-"
        name = "(L,L)" if kind == "LL" else "(L,L/2)"
        print(f"{name:>8} {L:>3} {N:>3} {t:>11} {ours:>10} {ratio:>8}")

    import jax

    harness.write_result(a.out, {
        "benchmark": "so3_kernel", "network": "S2ConvSO3(L)→Erf→SO3ConvSO3(L/2)→Erf→SO3Pool→Dense",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "device": str(jax.devices()[0]),
                    "jax": jax.__version__},
        "date": time.strftime("%Y-%m-%d %H:%M"), "rows": rows, "versus_authors": cmp_rows,
    })


if __name__ == "__main__":
    main()
