"""Benchmark: eqntk's image kernels against neural-tangents' CNN kernel, in one interleaved run.

Networks (float64, NNGP + NTK, W_std = 1, no biases, 3×3 filters):

* CNN: Conv(8) → Relu → Conv(8) → Relu → GlobalAvgPool → Dense(1), eqntk and neural-tangents 0.6.5
  (its own venv: it pins an old JAX and TensorFlow; benchmark-only, never an eqntk dependency);
* p4:  Z2ConvP4(8) → Relu → P4ConvP4(8) → Relu → GroupPool → Dense(1), eqntk (|G| = 4 blocks per pair),
  with the CNN's padding, and at 32×32, N = 4 also CIRCULAR (the configuration of the paper authors'
  recorded timing).

Each round runs every configuration once, each in its own process (peak RSS its own): a warm-up call
(compiles), then one timed call; the table gives medians over ``--rounds``. eqntk's Gram call uses
its default tiles (upper-triangle tiles only when there are several); ``eqntk one tile`` forces a
single tile, i.e. all N² pairs, the work neural-tangents does.

Roofline per pair: every layer reads its input kernels and writes its outputs once, each a block of
``|G| (HW)²`` float64 values. The CNN network moves at least 10 blocks per pair (lift: write 1; Relu:
read 1, write 2; Conv: read 2, write 2; Relu + pooling: read 2), the time bound is that traffic at
the machine's stream bandwidth measured in the same run, and the achieved fraction is bound / time.

    python benchmarks/image_kernels.py                  # → benchmarks/results/image_kernels.json
    python benchmarks/image_kernels.py --ns 4 --rounds 1 --size 16   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

NEURAL_TANGENTS = ["jax[cpu]==0.4.30", "neural-tangents==0.6.5", "tensorflow-cpu==2.17.*"]
BLOCKS_PER_PAIR = {"cnn": 10, "p4": 10}  # minimum block transfers of the network, see the module docstring
GROUP_ORDER = {"cnn": 1, "p4": 4}
# The paper authors' p4 code on this machine type, recorded in ../shared/reference/timings.md (not rerun
# here: their code is not part of this repository): 32×32×3, N = 4, float64, load 2–7.
AUTHORS_P4_32_N4 = {"seconds": 155.0, "peak_rss_gb": 17.2}


def eqntk_worker(net: str, inp: str, out: str, padding: str, one_tile: bool) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)
    import numpy as np

    from eqntk import stax

    x = np.load(inp)["x"]
    base = harness.peak_rss_gb()
    if net == "p4":
        model = stax.serial(stax.Z2ConvP4(8, 3, padding), stax.Relu(), stax.P4ConvP4(8, 3, padding), stax.Relu(),
                            stax.GroupPool(), stax.Dense(1))
    else:
        model = stax.serial(stax.Conv(8, 3, padding), stax.Relu(), stax.Conv(8, 3, padding), stax.Relu(),
                            stax.GlobalAvgPool(), stax.Dense(1))
    kw = {"tile_size": len(x)} if one_tile else {}

    def call():
        t = time.perf_counter()
        k = jax.block_until_ready(model.kernel_fn(x, get=("nngp", "ntk"), **kw))
        return time.perf_counter() - t, k

    first, _ = call()
    seconds, k = call()
    np.savez(out, nngp=np.asarray(k.nngp), ntk=np.asarray(k.ntk))
    # the pairs the tiles computed: all N² in one tile, the upper-triangle tiles (t² pairs each) otherwise
    from eqntk.core.driver import choose_tile

    cost, _ = model.kernel_fn._structure(x, x, True)
    t, _ = choose_tile(len(x), len(x), cost, 8, 2 * 1024**3, len(x) if one_tile else None)
    m = -(-len(x) // t)
    pairs = len(x) ** 2 if m == 1 else m * (m + 1) // 2 * t * t
    return {"seconds": seconds, "first_seconds": first, "rss_after_imports_gb": base, "tile": t,
            "pairs_computed": pairs,
            "peak_rss_gb": harness.peak_rss_gb()}


def run_eqntk(net, inp, out, padding, one_tile) -> dict:
    cmd = [sys.executable, __file__, "--worker", net, inp, out, padding] + (["--one-tile"] if one_tile else [])
    return harness.run_worker(cmd)


def run_nt(py, inp, out, padding) -> dict:
    import numpy as np

    harness.run_peer(py, "nt_cnn_worker.py", inp, out, padding)
    z = np.load(out)
    return {k: float(z[k]) for k in ("seconds", "first_seconds", "peak_rss_gb", "rss_after_imports_gb")}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--ns", default="8,16")
    p.add_argument("--padding", default="SAME")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "image_kernels.json"))
    p.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    p.add_argument("--one-tile", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        net, inp, out, padding = args.worker
        print(json.dumps(eqntk_worker(net, inp, out, padding, args.one_tile)))
        return

    import jax

    jax.config.update("jax_enable_x64", True)
    import numpy as np

    py = harness.peer_python("neural-tangents", NEURAL_TANGENTS)
    bw = harness.memory_bandwidth()
    peak = harness.matmul_peak("float64")
    print(f"stream bandwidth {bw['stream'] / 1e9:.1f} GB/s, read {bw['read'] / 1e9:.1f} GB/s, "
          f"float64 matmul peak {peak / 1e9:.0f} GFLOP/s")
    s = args.size
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(v) for v in args.ns.split(",")]:
            configs = [("neural-tangents cnn", "nt", args.padding), ("eqntk cnn", "cnn", args.padding),
                       ("eqntk cnn one tile", "cnn1", args.padding), ("eqntk p4", "p4", args.padding)]
            if (s, n) == (32, 4):  # the configuration of the authors' recorded p4 timing
                configs.append(("eqntk p4 circular", "p4", "CIRCULAR"))
            x = np.random.default_rng(n).normal(size=(n, s, s, 3))
            inp = os.path.join(tmp, "x.npz")
            np.savez(inp, x=x)
            runs = {name: [] for name, _, _ in configs}
            kernels = {}
            for r in range(args.rounds):
                for name, kind, pad in configs:
                    out = os.path.join(tmp, f"{kind}-{pad}.npz")
                    if kind == "nt":
                        res = run_nt(py, inp, out, pad)
                    else:
                        res = run_eqntk(kind.rstrip("1"), inp, out, pad, one_tile=kind.endswith("1"))
                    runs[name].append(res)
                    z = np.load(out)
                    kernels[(kind, pad)] = (z["nngp"], z["ntk"])
                    print(f"  N={n:3d} round {r}: {name:22s} {res['seconds']:8.2f} s  peak RSS {res['peak_rss_gb']:.2f} GB",
                          flush=True)
            row = {"size": s, "N": n, "pairs": n * n}
            for name, kind, pad in configs:
                rs = runs[name]
                row[name] = {"padding": pad, "seconds": statistics.median(r["seconds"] for r in rs),
                             "tile": rs[0].get("tile"), "pairs_computed": rs[0].get("pairs_computed", n * n),
                             "seconds_all": [r["seconds"] for r in rs],
                             "first_call_seconds": statistics.median(r["first_seconds"] for r in rs),
                             "peak_rss_gb": max(r["peak_rss_gb"] for r in rs),
                             "rss_after_imports_gb": min(r["rss_after_imports_gb"] for r in rs)}
            ref = kernels[("nt", args.padding)]
            row["max_rel_diff_vs_nt"] = {
                k: float(np.max(np.abs(kernels[(kind, args.padding)][i] - ref[i])) / np.max(np.abs(ref[i])))
                for kind in ("cnn", "cnn1") for i, k in enumerate((f"{kind} nngp", f"{kind} ntk"))}
            t_nt = row["neural-tangents cnn"]["seconds"]
            row["speedup_vs_nt"] = t_nt / row["eqntk cnn"]["seconds"]
            row["speedup_vs_nt_one_tile"] = t_nt / row["eqntk cnn one tile"]["seconds"]
            row["p4_over_cnn"] = row["eqntk p4"]["seconds"] / row["eqntk cnn"]["seconds"]
            per_pair = {name: row[name]["seconds"] / row[name]["pairs_computed"]
                        for name in ("eqntk p4", "eqntk cnn", "eqntk cnn one tile")}
            row["p4_over_cnn_per_computed_pair"] = per_pair["eqntk p4"] / min(per_pair["eqntk cnn"],
                                                                               per_pair["eqntk cnn one tile"])
            blk = 8.0 * (s * s) ** 2
            roof = {}
            for name, kind in (("eqntk cnn one tile", "cnn"), ("neural-tangents cnn", "cnn")):
                bytes_pair = BLOCKS_PER_PAIR[kind] * GROUP_ORDER[kind] * blk
                bound = bytes_pair * n * n / bw["stream"]
                roof[name] = {"bytes_per_pair": bytes_pair, "bound_seconds": bound,
                              "fraction_of_bound": bound / row[name]["seconds"],
                              "times_the_bound": row[name]["seconds"] / bound}
            lift_flops = 2.0 * 27 * (s * s) ** 2 * n * n  # the lift's patch Gram, q²C = 27
            roof["lift_matmul_fraction_of_peak_if_alone"] = lift_flops / peak / row["eqntk cnn one tile"]["seconds"]
            row["roofline"] = roof
            budget = 2 * 1024**3 / 1e9
            row["eqntk_memory"] = {name: {"working_gb": row[name]["peak_rss_gb"] - row[name]["rss_after_imports_gb"],
                                          "budget_gb": budget,
                                          "within_budget": row[name]["peak_rss_gb"] - row[name]["rss_after_imports_gb"]
                                          <= budget}
                                   for name in ("eqntk cnn", "eqntk p4")}
            if "eqntk p4 circular" in row:
                row["authors_p4_recorded"] = dict(AUTHORS_P4_32_N4, speedup_of_eqntk=AUTHORS_P4_32_N4["seconds"]
                                                  / row["eqntk p4 circular"]["seconds"])
            rows.append(row)

    print()
    hdr = (f"{'N':>4} | {'NT s':>7} {'eqntk s':>8} {'1 tile s':>8} {'p4 s':>7} | {'vs NT':>6} {'vs NT 1t':>8} "
           f"{'p4/cnn':>6} | {'× bound':>7} | {'max rel diff':>12} | {'RSS NT/eq/p4 GB':>16}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(f"{r['N']:>4} | {r['neural-tangents cnn']['seconds']:7.2f} {r['eqntk cnn']['seconds']:8.2f} "
              f"{r['eqntk cnn one tile']['seconds']:8.2f} {r['eqntk p4']['seconds']:7.2f} | {r['speedup_vs_nt']:5.2f}x "
              f"{r['speedup_vs_nt_one_tile']:7.2f}x {r['p4_over_cnn']:6.2f} | "
              f"{r['roofline']['eqntk cnn one tile']['times_the_bound']:7.2f} | "
              f"{max(r['max_rel_diff_vs_nt'].values()):12.1e} | {r['neural-tangents cnn']['peak_rss_gb']:.2f}/"
              f"{r['eqntk cnn']['peak_rss_gb']:.2f}/{r['eqntk p4']['peak_rss_gb']:.2f}")
    result = {
        "benchmark": "image_kernels",
        "command": "python benchmarks/image_kernels.py " + " ".join(sys.argv[1:]),
        "networks": {"cnn": "Conv(8,3x3) → Relu → Conv(8,3x3) → Relu → GlobalAvgPool → Dense(1)",
                     "p4": "Z2ConvP4(8,3x3) → Relu → P4ConvP4(8,3x3) → Relu → GroupPool → Dense(1)"},
        "dtype": "float64", "get": ["nngp", "ntk"], "peer": NEURAL_TANGENTS,
        "machine": {"cpus": os.cpu_count(), "jax": jax.__version__, "python": harness.python_version(),
                    "stream_bandwidth_bytes_per_s": bw["stream"], "read_bandwidth_bytes_per_s": bw["read"],
                    "matmul_peak_float64_flop_per_s": peak, "load_average_at_end": harness.load_average()},
        "notes": [
            "seconds: median over rounds of one timed call after a warm-up call, each configuration in its own "
            "process, configurations interleaved within each round.",
            "eqntk cnn, eqntk p4: default tiles (a 2 GiB budget; upper-triangle tiles only when the Gram has "
            "several; pairs_computed); eqntk cnn one tile: all N² pairs in one tile, the work neural-tangents does.",
            "p4_over_cnn: the two Gram calls at default tiles; p4_over_cnn_per_computed_pair: seconds per computed "
            "pair of p4 over the CNN's cheaper one (|G| = 4 blocks per p4 pair).",
            "roofline: 10 block transfers per pair (see the module docstring) at the stream bandwidth measured "
            "in this run; times_the_bound = time / bound.",
            "authors_p4_recorded: the paper authors' p4 code, from ../shared/reference/timings.md, not rerun.",
        ],
        "rows": rows,
    }
    harness.write_result(args.out, result)


if __name__ == "__main__":
    main()
