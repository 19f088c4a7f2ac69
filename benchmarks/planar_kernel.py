"""Benchmark: p4 kernel vs the plain CNN kernel of the same depth, and vs the authors' code.

Network (timings.md): Z2ConvP4 → ReLU → P4ConvP4 → ReLU → GroupPool → Dense, CIRCULAR 3×3, images
s×s×3, W_std = 1, float64, kernel_fn(x) with get=('nngp', 'ntk') (a Gram matrix: upper-triangle tiles).
The plain CNN is Conv → ReLU → Conv → ReLU → GlobalAvgPool → Dense on the same images, in the same run.

Every configuration runs in its own subprocess (so peak RSS is its own): one first call (compile + run),
then up to ``--repeats`` timed calls (fewer when a call is long); compile time = first call − median.
Configurations whose predicted run time (from the same size at a smaller N, ∝ N²) exceeds
``--max-seconds`` are skipped and listed as such in the JSON.

    python benchmarks/planar_kernel.py                  # full table → benchmarks/results/planar_kernel.json
    python benchmarks/planar_kernel.py --sizes 8 --ns 8 # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

# The authors' code on this machine type (../shared/reference/timings.md): (size, N) → (seconds, GB peak RSS)
AUTHORS = {(8, 2): (0.07, 0.8), (8, 4): (0.25, 0.8), (8, 8): (0.62, 1.0), (8, 16): (3.1, 1.9),
           (16, 2): (1.5, 1.0), (16, 4): (5.2, 1.8), (16, 8): (18.0, 4.9), (32, 2): (23.0, 5.0)}
AUTHORS_OOM = {(16, 16): "out of memory (plan 16.4 GB)", (32, 4): "out of memory (plan 16.5 GB)"}


def worker(net: str, size: int, n: int, repeats: int, long_run: float) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)
    import numpy as np

    from eqntk import stax

    if net == "p4":
        model = stax.serial(stax.Z2ConvP4(8, 3, "CIRCULAR"), stax.Relu(), stax.P4ConvP4(8, 3, "CIRCULAR"),
                            stax.Relu(), stax.GroupPool(), stax.Dense(1))
    else:
        model = stax.serial(stax.Conv(8, 3, "CIRCULAR"), stax.Relu(), stax.Conv(8, 3, "CIRCULAR"), stax.Relu(),
                            stax.GlobalAvgPool(), stax.Dense(1))
    x = np.random.default_rng(0).normal(size=(n, size, size, 3))
    rss_base = harness.peak_rss_gb()
    first, times, run = harness.time_calls(lambda: jax.block_until_ready(model.kernel_fn(x, get=("nngp", "ntk"))),
                                           repeats, long_run)
    return {"net": net, "size": size, "N": n, "time_s": run, "runs": len(times), "first_call_s": first,
            "compile_s": max(first - run, 0.0),
            "peak_rss_gb": harness.peak_rss_gb(),
            "rss_after_imports_gb": rss_base}


def run_config(net, size, n, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", net, str(size), str(n), "--repeats", str(args.repeats),
           "--long-run", str(args.long_run)]
    return harness.run_worker(cmd)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="8,16,32")
    p.add_argument("--ns", default="8,32,128")
    p.add_argument("--extra", default="8:16,32:2", help="extra size:N points that timings.md has")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--long-run", type=float, default=60.0, help="stop repeating once calls add up to this")
    p.add_argument("--max-seconds", type=float, default=150.0, help="skip configs predicted to run longer")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "planar_kernel.json"))
    p.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        net, size, n = args.worker
        print(json.dumps(worker(net, int(size), int(n), args.repeats, args.long_run)))
        return

    sizes = [int(s) for s in args.sizes.split(",")]
    ns = [int(s) for s in args.ns.split(",")]
    points = [(s, n) for s in sizes for n in ns]
    points += [tuple(int(v) for v in e.split(":")) for e in args.extra.split(",") if e]
    points = sorted(set(points))
    rows, skipped = [], []
    measured: dict = {}
    for size, n in points:
        row = {"size": size, "N": n}
        ok = True
        for net in ("cnn", "p4"):
            prev = [(m, t) for (nt, s, m), t in measured.items() if nt == net and s == size and m < n]
            if prev:
                m, t = max(prev)
                predicted = t * (n / m) ** 2
                if predicted > args.max_seconds:
                    skipped.append({"net": net, "size": size, "N": n, "predicted_s": round(predicted, 1),
                                    "reason": f"predicted run time above --max-seconds={args.max_seconds}"})
                    ok = False
                    break
            r = run_config(net, size, n, args)
            measured[(net, size, n)] = r["time_s"]
            row[net] = r
            print(f"  {net:3s} {size:2d}x{size:<2d} N={n:<3d} time {r['time_s']:8.3f} s  compile {r['compile_s']:6.2f} s"
                  f"  peak RSS {r['peak_rss_gb']:.2f} GB", flush=True)
        if not ok:
            continue
        row["time_ratio_p4_over_cnn"] = row["p4"]["time_s"] / row["cnn"]["time_s"]
        row["mem_ratio_p4_over_cnn"] = ((row["p4"]["peak_rss_gb"] - row["p4"]["rss_after_imports_gb"])
                                        / max(row["cnn"]["peak_rss_gb"] - row["cnn"]["rss_after_imports_gb"], 1e-3))
        if (size, n) in AUTHORS:
            ta, ma = AUTHORS[(size, n)]
            row["authors"] = {"time_s": ta, "peak_rss_gb": ma}
            row["speedup_vs_authors"] = ta / row["p4"]["time_s"]
            row["peak_rss_ratio_authors_over_ours"] = ma / row["p4"]["peak_rss_gb"]
        elif (size, n) in AUTHORS_OOM:
            row["authors"] = AUTHORS_OOM[(size, n)]
        rows.append(row)

    print()
    hdr = (f"{'image':>7} {'N':>4} | {'p4 s':>9} {'cnn s':>8} {'p4/cnn':>6} | {'p4 compile':>10} | "
           f"{'p4 RSS GB':>9} {'cnn RSS':>7} | {'authors s':>9} {'speedup':>7} {'RSS ratio':>9}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        a = r.get("authors")
        auth = (f"{a['time_s']:9.2f} {r['speedup_vs_authors']:6.1f}x {r['peak_rss_ratio_authors_over_ours']:8.1f}x"
                if isinstance(a, dict) else f"{(a or '–')[:28]:>28}")
        print(f"{r['size']:>3}x{r['size']:<3} {r['N']:>4} | {r['p4']['time_s']:9.3f} {r['cnn']['time_s']:8.3f} "
              f"{r['time_ratio_p4_over_cnn']:6.2f} | {r['p4']['compile_s']:10.2f} | {r['p4']['peak_rss_gb']:9.2f} "
              f"{r['cnn']['peak_rss_gb']:7.2f} | {auth}")
    for s in skipped:
        print(f"skipped: {s}")

    import jax

    result = {
        "benchmark": "planar_kernel",
        "network": "Z2ConvP4(3x3,CIRCULAR) → ReLU → P4ConvP4(3x3,CIRCULAR) → ReLU → GroupPool → Dense, "
                   "vs Conv → ReLU → Conv → ReLU → GlobalAvgPool → Dense; C_in = 3; float64; nngp and ntk",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "jax": jax.__version__,
                    "load_average_at_end": os.getloadavg()},
        "notes": [
            "time_s: median of up to 3 calls after a first (compiling) call; compile_s = first call − median.",
            "peak_rss_gb: the subprocess's own peak RSS (ru_maxrss), imports included (rss_after_imports_gb).",
            "mem_ratio_p4_over_cnn: (peak − after-imports) of p4 over that of the CNN.",
            "authors: ../shared/reference/timings.md (same machine type, 2 cores, jax 0.4.34); speedup = their "
            "time / ours; RSS ratio = their peak / ours.",
            "The machine was shared with another engineer's test runs: absolute times carry that load "
            "(see load_average_at_end); p4/cnn ratios are measured back to back in the same conditions.",
            "A Gram matrix that fits one tile (small N) is computed whole (N² pairs); with several tiles only "
            "the upper-triangle tiles are computed. Under load, first-call − median can read ~0 (compile_s).",
            "Skipped rows (see 'skipped') were predicted, from the same image size at a smaller N (∝ N²), to run "
            "longer than --max-seconds; 16×16 and 32×32 at N = 128 would take ~15–60 min per call here.",
        ],
        "rows": rows,
        "skipped": skipped,
    }
    harness.write_result(args.out, result)


if __name__ == "__main__":
    main()
