"""Benchmark: time and peak memory of eqntk's kernels vs N, bandlimit L and image size, with fitted
power laws, and the dense-grid baseline (tests/so3_dense_oracle.py) measured in the same run.

Networks (float64, get=('nngp', 'ntk'), Gram of N inputs with themselves, C = 2 input channels):

* ``deep``: S2ConvSO3(L) → Erf → SO3ConvSO3(L/2) → Erf → SO3Pool → Dense (eqntk);
* ``lift``: S2ConvSO3(L) → Erf → SO3Pool → Dense (the fused first layer alone);
* ``dense``: the deep network discretised the authors' way (DenseSO3Net, DH grids of bandlimits
  (L, L/2), 2b−1 azimuths: the paper code's grid), jitted ``dense_kernel_fn`` — the dense-grid
  baseline. Same inputs; its kernel differs from eqntk's by its aliasing (DESIGN §2);
* ``p4``: Z2ConvP4(3×3, CIRCULAR) → ReLU → P4ConvP4 → ReLU → GroupPool → Dense, images s×s×3.

Every configuration runs in a fresh subprocess (clean ru_maxrss); eqntk and dense configurations of
the same (L, N) run back to back, so their ratio is measured under the same machine load. Time =
median of up to ``--repeats`` calls after a first (compiling) call. Power laws ``t ∝ x^p`` are fitted
by least squares on log-log data (points whose time is under ``--min-fit-s`` are left out of the
fits, where fixed overheads dominate); the uncertainty is the standard error of the slope.

Usage: python benchmarks/scaling.py [--quick]
Writes benchmarks/results/scaling.json.
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


def worker(kind: str, L: int, N: int, repeats: int, long_run: float) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)
    import numpy as np
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    if kind == "p4":
        from eqntk import stax

        x = rng.normal(size=(N, L, L, 3))
        model = stax.serial(stax.Z2ConvP4(8, 3, "CIRCULAR"), stax.Relu(), stax.P4ConvP4(8, 3, "CIRCULAR"),
                            stax.Relu(), stax.GroupPool(), stax.Dense(1))
        fn = lambda: model.kernel_fn(x, get=("nngp", "ntk"), progress=False)  # noqa: E731
    else:
        x = jnp.asarray(rng.normal(size=(N, L * L, 2)))
        L2 = max(L // 2, 1)
        if kind == "dense":
            from eqntk.core.pointwise import ErfMap
            sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
            from so3_dense_oracle import DenseSO3Net, dense_kernel_fn  # the test oracle (tests/)

            net = DenseSO3Net(lift_bandlimit=L, conv_bandlimits=(L2,), grids=(L, L2), nonlinearity=ErfMap())
            kf = dense_kernel_fn(net, dtype=jnp.float64)
            fn = lambda: kf(x)  # noqa: E731
        else:
            from eqntk import stax

            layers = [stax.S2ConvSO3(1, L), stax.Erf()]
            if kind == "deep":
                layers += [stax.SO3ConvSO3(1, L2), stax.Erf()]
            model = stax.serial(*layers, stax.SO3Pool(), stax.Dense(1))
            fn = lambda: model.kernel_fn(x, get=("nngp", "ntk"), progress=False)  # noqa: E731
    rss_base = harness.peak_rss_gb()
    first, times, run = harness.time_calls(lambda: jax.block_until_ready(fn()), repeats, long_run)
    trace_s = None
    if kind != "dense":  # kernel_fn traces the network (eval_shape, twice) on every call: fixed overhead
        from eqntk.core.kernel import Inputs

        op = model.kernel_fn.op
        xa = jnp.asarray(x)
        t0 = time.perf_counter()
        jax.eval_shape(lambda u, v: op(Inputs(u, v, True)), xa[:1], xa[:1])
        jax.eval_shape(lambda u, v: op(Inputs(u, v, True)).output(), xa[:1], xa[:1])
        trace_s = time.perf_counter() - t0
    return {"kind": kind, "L": L, "N": N, "time_s": run, "trace_overhead_s": trace_s, "runs": len(times), "first_call_s": first,
            "compile_s": max(first - run, 0.0), "peak_rss_gb": harness.peak_rss_gb(), "rss_after_imports_gb": rss_base,
            "loadavg": os.getloadavg()}


def run_config(kind, L, N, a) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, str(L), str(N), "--repeats", str(a.repeats),
           "--long-run", str(a.long_run)]
    r = harness.run_worker(cmd, {"kind": kind, "L": L, "N": N}, a.timeout)
    if "error" in r:
        print(f"  {kind:5s} L/size={L:<3d} N={N:<4d} {r['error']}", flush=True)
    else:
        print(f"  {kind:5s} L/size={L:<3d} N={N:<4d} time {r['time_s']:9.3f} s  compile {r['compile_s']:6.2f} s  "
              f"peak RSS {r['peak_rss_gb']:.2f} GB (imports {r['rss_after_imports_gb']:.2f})", flush=True)
    return r


def _slope(xs, ys):
    import numpy as np

    lx, ly = np.log(xs), np.log(ys)
    A = np.stack([lx, np.ones_like(lx)], 1)
    coef = np.linalg.lstsq(A, ly, rcond=None)[0]
    dof = len(xs) - 2
    s2 = float(np.sum((ly - A @ coef) ** 2) / dof) if dof > 0 else float("nan")
    se = float(np.sqrt(s2 * np.linalg.inv(A.T @ A)[0, 0]))
    return {"exponent": float(coef[0]), "stderr": se, "n_points": len(xs), "x": [float(x) for x in xs]}


def series_fit(rows, kind, var, fixed, min_t):
    """Power laws of time and of memory (peak − import RSS) along ``var`` with ``fixed`` held."""
    pts = sorted((r[var], r["time_s"], r["peak_rss_gb"] - r["rss_after_imports_gb"]) for r in rows
                 if r.get("kind") == kind and "error" not in r and all(r[k] == v for k, v in fixed.items()))
    t = [(x, v) for x, v, _ in pts if v >= min_t]
    m = [(x, v) for x, _, v in pts if v > 0.02]  # below ~20 MB the RSS increment is noise
    return {"kind": kind, "variable": var, "fixed": fixed,
            "time_s": _slope(*zip(*t)) if len(t) >= 3 else None,
            "mem_gb": _slope(*zip(*m)) if len(m) >= 3 else None}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--long-run", type=float, default=40.0)
    p.add_argument("--timeout", type=float, default=400.0)
    p.add_argument("--min-fit-s", type=float, default=0.05)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=os.path.join(HERE, "results", "scaling.json"))
    a = p.parse_args()
    if a.worker:
        kind, L, N = a.worker
        print(json.dumps(worker(kind, int(L), int(N), a.repeats, a.long_run)))
        return

    if a.quick:
        n_sweep, l_sweep, dense_pts, sizes, p4_ns = [8, 16], [4, 6], [(4, 4)], [8], [8]
    else:
        n_sweep = [8, 16, 32, 64, 128]       # at L = 6
        l_sweep = [4, 6, 8, 10, 12, 16]      # at N = 16
        # dense baseline (and eqntk back to back): N sweep at L = 4, L sweep at N = 4
        dense_pts = [(4, 2), (4, 4), (4, 8), (4, 16), (6, 4), (8, 4), (10, 2)]
        sizes, p4_ns = [8, 16, 32], [8, 16, 32]
    rows = []
    print("eqntk SO(3), N sweep at L = 6 and L sweep at N = 16 (deep and lift-only)")
    for kind in ("deep", "lift"):
        for N in n_sweep:
            rows.append(run_config(kind, 6, N, a))
        for L in l_sweep:
            if L != 6 or 16 not in n_sweep:
                rows.append(run_config(kind, L, 16, a))
    print("dense-grid baseline vs eqntk (deep), back to back")
    pairs = []
    for L, N in dense_pts:
        e = run_config("deep", L, N, a)
        d = run_config("dense", L, N, a)
        rows += [e, d]
        pr = {"L": L, "N": N}
        if "error" not in e and "error" not in d:
            pr.update(eqntk_s=e["time_s"], dense_s=d["time_s"], time_ratio_dense_over_eqntk=d["time_s"] / e["time_s"],
                      eqntk_mem_gb=e["peak_rss_gb"] - e["rss_after_imports_gb"],
                      dense_mem_gb=d["peak_rss_gb"] - d["rss_after_imports_gb"],
                      time_ratio_excluding_trace_overhead=d["time_s"] / max(e["time_s"] - e["trace_overhead_s"], 1e-6))
            pr["mem_ratio_dense_over_eqntk"] = pr["dense_mem_gb"] / max(pr["eqntk_mem_gb"], 1e-3)
        else:
            pr["error"] = e.get("error") or d.get("error")
        pairs.append(pr)
    print("planar p4: image size sweep at N = 8, N sweep at size 8")
    for s in sizes:
        rows.append(run_config("p4", s, 8, a))
    for N in p4_ns:
        if N != 8:
            rows.append(run_config("p4", 8, N, a))

    fits = [
        series_fit(rows, "deep", "N", {"L": 6}, a.min_fit_s),
        series_fit(rows, "deep", "L", {"N": 16}, a.min_fit_s),
        series_fit(rows, "lift", "N", {"L": 6}, a.min_fit_s),
        series_fit(rows, "lift", "L", {"N": 16}, a.min_fit_s),
        series_fit(rows, "deep", "L", {"N": 4}, a.min_fit_s),
        series_fit(rows, "dense", "L", {"N": 4}, a.min_fit_s),
        series_fit(rows, "deep", "N", {"L": 4}, a.min_fit_s),
        series_fit(rows, "dense", "N", {"L": 4}, a.min_fit_s),
        series_fit(rows, "p4", "L", {"N": 8}, a.min_fit_s),
        series_fit(rows, "p4", "N", {"L": 8}, a.min_fit_s),
    ]

    print("\nfitted exponents (time ∝ x^p; memory = peak − import RSS)")
    print(f"{'kind':>6} {'var':>4} {'fixed':>10} {'time exp':>14} {'mem exp':>14} {'points':>24}")
    for f in fits:
        def fmt(v):
            return "–" if v is None else f"{v['exponent']:.2f} ± {v['stderr']:.2f}"
        xs = "" if f["time_s"] is None else ",".join(f"{x:g}" for x in f["time_s"]["x"])
        print(f"{f['kind']:>6} {f['variable']:>4} {str(f['fixed']):>10} {fmt(f['time_s']):>14} {fmt(f['mem_gb']):>14} {xs:>24}")
    print("\ndense baseline / eqntk, same run (deep network)")
    print(f"{'L':>3} {'N':>4} {'eqntk s':>9} {'dense s':>9} {'time ratio':>10} {'w/o trace':>9} {'eqntk MB':>9} {'dense MB':>9}")
    for pr in pairs:
        if "error" in pr:
            print(f"{pr['L']:>3} {pr['N']:>4} {pr['error']}")
        else:
            print(f"{pr['L']:>3} {pr['N']:>4} {pr['eqntk_s']:9.3f} {pr['dense_s']:9.3f} "
                  f"{pr['time_ratio_dense_over_eqntk']:9.1f}x {pr['time_ratio_excluding_trace_overhead']:8.1f}x {1e3 * pr['eqntk_mem_gb']:9.0f} {1e3 * pr['dense_mem_gb']:9.0f}")

    import jax

    harness.write_result(a.out, {
        "benchmark": "scaling",
        "networks": {
            "deep": "S2ConvSO3(L) → Erf → SO3ConvSO3(L/2) → Erf → SO3Pool → Dense, C=2, float64, nngp+ntk",
            "lift": "S2ConvSO3(L) → Erf → SO3Pool → Dense, C=2, float64, nngp+ntk",
            "dense": "deep network, dense G×G emulation (tests/so3_dense_oracle.py, DH grids (L, L/2), authors' 2b−1 "
                     "azimuths), jitted dense_kernel_fn, float64",
            "p4": "Z2ConvP4(3x3,CIRCULAR) → ReLU → P4ConvP4 → ReLU → GroupPool → Dense, s×s×3, float64"},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "device": str(jax.devices()[0]),
                    "jax": jax.__version__, "loadavg_at_end": os.getloadavg(), "gpu": "none (CPU only)"},
        "notes": [
            "CPU only, 2 cores shared with other engineers' jobs (loadavg per row): absolute times are not "
            "claims; the dense/eqntk ratios are measured back to back (same L, N, consecutive subprocesses).",
            "time_s: median of up to `repeats` calls after a first (compiling) call; memory = peak RSS of the "
            "subprocess minus its RSS after imports and input setup (ru_maxrss).",
            f"fits: log-log least squares; points with time < {a.min_fit_s} s left out of time fits; "
            "± = standard error of the slope.",
            "trace_overhead_s: time of the two jax.eval_shape traces of the network that kernel_fn does on "
            "every call (input validation and tile planning); a fixed per-call cost, independent of N.",
            "The authors' code (timings.md): SO(3) time ∝ N² · L^6.9, memory ∝ N² · L^6.4.",
        ],
        "date": time.strftime("%Y-%m-%d %H:%M"), "rows": rows, "dense_vs_eqntk": pairs, "fits": fits,
    })


if __name__ == "__main__":
    main()
