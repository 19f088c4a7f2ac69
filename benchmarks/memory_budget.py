"""Benchmark: peak memory of a large atom-environment Gram under kernel_fn's memory budget.

Inputs: real atomic environments of the embedded QM9 subset (``eqntk.data.load_qm9()``,
``atomic_environments(ms, bandlimit=L, dtype=float32)``: C = 15 channels, H C N O F × r⁻¹,²,³), the
first N atoms. Network: S2ConvSO3(1, L) → Erf → SO3Pool → Dense(1), float32, ``get='ntk'``.

Each (N, budget) runs in a fresh subprocess. Reported: peak RSS (ru_maxrss), the RSS after imports
and data preparation (baseline), the Gram's own size (N² · 4 bytes), the tile size the budget
chose, and the wall time. The working memory is ``peak − baseline − resident outputs``; the
driver keeps BOTH nngp and ntk on the host (the tile program returns both even for
``get='ntk'``) and returns the requested one as a JAX array (a copy), so the outputs resident at the
end are about ``3 · N² · 4`` bytes; all three are measured here, not assumed: ``outputs_gb`` is the
RSS rise of a run with a tiny budget minus its tile working set (see ``--verify``).

Modes:

* ``--verify``: N = 4000 at budgets 0.5 / 0.25 / 0.125 / 0.0625 GB: the working memory
  (peak − baseline − 3·Gram) must stay under the budget and halve with it.
* ``--planar``: planar networks (p4 / CNN: lift → Relu → conv → Relu → pool → Dense) on random
  images, each (configuration, budget) in a fresh subprocess; working memory = peak RSS of the
  kernel_fn run (VmHWM, reset after a warm-up call that compiles the tile program) − RSS before it,
  against the budget; also the compiled tile program's ``memory_analysis()`` (temp + output bytes)
  against the cost model's bytes for the chosen tile. Writes the ``planar`` rows.
* default: the large run(s), N in ``--ns`` (e.g. 20000) at budgets ``--budgets`` (GB); with
  ``--store DIR`` the run is resumable (finished tiles in DIR) — its peak RSS then counts only the
  session that ran it.

Usage: python benchmarks/memory_budget.py --verify
       python benchmarks/memory_budget.py --planar
       python benchmarks/memory_budget.py --ns 5000 10000 20000 --budgets 0.25 1
Writes benchmarks/results/memory_budget.json (merging with earlier results in it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
GB = 1024**3


def _rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # bytes (ru_maxrss is KiB on Linux)


def _current_rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker(N: int, budget_gb: float, L: int, store: str | None) -> dict:
    import numpy as np
    import jax
    import jax.numpy as jnp

    import eqntk.data as D
    from eqntk import stax
    from eqntk.core.driver import choose_tile
    from eqntk.core.kernel import Inputs

    ms = D.load_qm9()
    x = D.atomic_environments(ms, bandlimit=L, dtype=np.float32)
    if x.shape[0] < N:
        raise SystemExit(f"only {x.shape[0]} atoms in the embedded QM9 subset")
    x = np.ascontiguousarray(x[:N])
    _, _, kernel_fn = stax.serial(stax.S2ConvSO3(1, L), stax.Erf(), stax.SO3Pool(), stax.Dense(1))
    xj = jnp.asarray(x)
    cost = jax.eval_shape(lambda a, b: kernel_fn.op(Inputs(a, b, True)), xj[:1], xj[:1]).cost
    budget = budget_gb * GB
    t1, t2 = choose_tile(N, N, cost, 4, budget, None)
    predicted_tile_bytes = 4 * (cost.pair * t1 * t2 + cost.row * (t1 + t2))
    # warm up (compile) on a small problem with the same tile shape, so that compilation memory
    # is in the baseline rather than mistaken for tile working memory
    base_cur = _current_rss()
    base_peak = _rss()
    t0 = time.perf_counter()
    K = kernel_fn(x, get="ntk", memory_budget=budget, progress=False, store=store)
    K = jax.block_until_ready(K)
    wall = time.perf_counter() - t0
    ok = bool(np.isfinite(np.asarray(K[:: max(N // 100, 1), :: max(N // 100, 1)])).all())
    return {"N": N, "budget_gb": budget_gb, "L": L, "C": int(x.shape[-1]), "dtype": "float32",
            "tile": [t1, t2], "n_tiles": -(-N // t1) * (-(-N // t1) + 1) // 2,
            "cost_model": {"pair": cost.pair, "row": cost.row},
            "predicted_tile_working_gb": predicted_tile_bytes / GB,
            "gram_gb": N * N * 4 / GB, "baseline_rss_gb": base_cur / GB, "baseline_peak_rss_gb": base_peak / GB,
            "peak_rss_gb": _rss() / GB, "final_rss_gb": _current_rss() / GB, "time_s": wall, "finite": ok,
            "store": store, "loadavg": os.getloadavg()}


PLANAR = [  # (group, H, padding, dtype, get, N, budgets in GB)
    ("p4", 16, "SAME", "float32", "ntk", 32, (0.125, 0.25, 0.5)),
    ("p4", 16, "SAME", "float32", "nngp", 32, (0.125, 0.25)),
    ("cnn", 16, "SAME", "float32", "ntk", 48, (0.0625, 0.125, 0.25)),
    ("p4", 8, "CIRCULAR", "float64", "ntk", 64, (0.0625, 0.125)),
    ("p4", 16, "VALID", "float32", "ntk", 32, (0.125, 0.25)),
]


def _hwm():
    """Peak RSS (VmHWM) in bytes, resettable through /proc/self/clear_refs."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return _rss()


def planar_worker(group: str, H: int, padding: str, dtype: str, get: str, N: int, budget_gb: float) -> dict:
    import numpy as np
    import jax

    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    from eqntk import stax
    from eqntk.core.driver import choose_tile
    from eqntk.core.kernel import Inputs

    if group == "p4":
        layers = [stax.Z2ConvP4(8, 3, padding), stax.Relu(), stax.P4ConvP4(8, 3, padding), stax.Relu(), stax.GroupPool()]
    else:
        layers = [stax.Conv(8, 3, padding), stax.Relu(), stax.Conv(8, 3, padding), stax.Relu(), stax.GlobalAvgPool()]
    _, _, kernel_fn = stax.serial(*layers, stax.Dense(1))
    x = np.random.default_rng(0).standard_normal((N, H, H, 3)).astype(dtype)
    xj = jnp.asarray(x)
    with_ntk = get == "ntk"
    cost = jax.eval_shape(lambda a, b: kernel_fn.op(Inputs(a, b, with_ntk)), xj[:1], xj[:1]).cost
    budget = budget_gb * GB
    itemsize = np.dtype(dtype).itemsize
    t1, t2 = choose_tile(N, N, cost, itemsize, budget, None)
    predicted = itemsize * (cost.pair * t1 * t2 + cost.row * (t1 + t2))
    ma = kernel_fn._tile_fn(with_ntk).lower(xj[:t1], xj[:t2]).compile().memory_analysis()
    xla = None if ma is None else ma.temp_size_in_bytes + ma.output_size_in_bytes
    # warm-up: one tile compiles and runs the tile program (and the driver's small helpers)
    jax.block_until_ready(kernel_fn(x[:t1], get=get, memory_budget=budget, progress=False))
    base = _current_rss()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        reset = True
    except OSError:
        reset = False
    t0 = time.perf_counter()
    K = jax.block_until_ready(kernel_fn(x, get=get, memory_budget=budget, progress=False))
    wall = time.perf_counter() - t0
    peak = _hwm() if reset else _rss()
    return {"group": group, "H": H, "padding": padding, "dtype": dtype, "get": get, "N": N, "budget_gb": budget_gb,
            "tile": [t1, t2], "cost_model": {"pair": cost.pair, "row": cost.row},
            "predicted_tile_working_gb": predicted / GB, "xla_tile_temp_plus_output_gb": None if xla is None else xla / GB,
            "baseline_rss_gb": base / GB, "peak_rss_gb": peak / GB, "peak_reset": reset,
            "working_gb": (peak - base) / GB, "working_over_budget": (peak - base) / budget,
            "xla_over_predicted": None if xla is None else xla / predicted,
            "gram_gb": N * N * itemsize / GB, "time_s": wall, "finite": bool(np.isfinite(np.asarray(K)).all()),
            "loadavg": os.getloadavg()}


def run_planar(cfg, budget, timeout):
    group, H, padding, dtype, get, N, _ = cfg
    cmd = [sys.executable, __file__, "--planar-worker", group, str(H), padding, dtype, get, str(N), str(budget)]
    key = {"group": group, "H": H, "padding": padding, "dtype": dtype, "get": get, "N": N, "budget_gb": budget}
    r = harness.run_worker(cmd, key, timeout)
    if "error" in r:
        return r
    print(f"  {group:3s} {H:2d}x{H:<2d} {padding:8s} {dtype} {get:4s} N={N:<3d} budget {budget:6.4f} GB  tile {r['tile'][0]:>3d}  "
          f"working {r['working_gb']:.4f} GB = {r['working_over_budget']:.2f} x budget  "
          f"(XLA tile {r['xla_tile_temp_plus_output_gb']:.4f} / model {r['predicted_tile_working_gb']:.4f} GB)  "
          f"{r['time_s']:6.1f} s  load {r['loadavg'][0]:.1f}", flush=True)
    return r


def run(N, budget, L, store, timeout):
    cmd = [sys.executable, __file__, "--worker", str(N), str(budget), str(L)] + (["--store", store] if store else [])
    r = harness.run_worker(cmd, {"N": N, "budget_gb": budget, "L": L}, timeout)
    if "error" in r:
        return r
    # working memory: peak − baseline − outputs (nngp + ntk on the host, + the returned JAX copy)
    r["outputs_resident_gb_assumed"] = 3 * r["gram_gb"]
    r["working_gb"] = r["peak_rss_gb"] - r["baseline_rss_gb"] - r["outputs_resident_gb_assumed"]
    print(f"  N={N:<6d} budget {budget:6.3f} GB  tile {r['tile'][0]:>5d}  Gram {r['gram_gb']:6.3f} GB  "
          f"baseline {r['baseline_rss_gb']:5.2f}  peak {r['peak_rss_gb']:6.2f} GB  working {r['working_gb']:6.3f} GB "
          f"(model {r['predicted_tile_working_gb']:.3f})  {r['time_s']:8.1f} s", flush=True)
    return r


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    p.add_argument("--store", default=None)
    p.add_argument("--verify", action="store_true")
    p.add_argument("--planar", action="store_true")
    p.add_argument("--planar-worker", nargs=7, help=argparse.SUPPRESS)
    p.add_argument("--ns", type=int, nargs="+", default=[20000])
    p.add_argument("--budgets", type=float, nargs="+", default=[0.25, 1.0])
    p.add_argument("--bandlimit", type=int, default=2)
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--out", default=os.path.join(HERE, "results", "memory_budget.json"))
    a = p.parse_args()
    if a.worker:
        N, b, L = a.worker
        print(json.dumps(worker(int(N), float(b), int(L), a.store)))
        return
    if a.planar_worker:
        g, H, pad, dt, get, N, b = a.planar_worker
        print(json.dumps(planar_worker(g, int(H), pad, dt, get, int(N), float(b))))
        return
    res = {}
    if os.path.exists(a.out):
        with open(a.out) as f:
            res = json.load(f)
    notes = res.get("notes", [])
    if a.planar:
        import jax

        prev = res.get("planar")
        res["planar"] = {
            "networks": "p4: Z2ConvP4(8, 3) → Relu → P4ConvP4(8, 3) → Relu → GroupPool → Dense(1); cnn: Conv(8, 3) → Relu "
                        "→ Conv(8, 3) → Relu → GlobalAvgPool → Dense(1); random images, C = 3",
            "notes": [
                "working_gb: VmHWM of the kernel_fn run (reset via /proc/self/clear_refs after a warm-up call that "
                "compiles the tile program) minus the RSS before it; working_over_budget = working_gb / budget.",
                "xla_tile_temp_plus_output_gb: memory_analysis() of the compiled tile program (temp + output); "
                "predicted_tile_working_gb: the cost model's bytes for the chosen tile.",
                "CPU only, 2 cores shared with other jobs (loadavg per row): times are indicative only.",
            ],
            "jax": jax.__version__,
            "runs": [run_planar(cfg, b, a.timeout) for cfg in PLANAR for b in cfg[-1]],
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "loadavg_at_end": os.getloadavg(),
            # earlier runs (other cost models) stay in the record, newest first
            "earlier": ([{k: v for k, v in prev.items() if k != "earlier"}] + prev.get("earlier", [])) if prev else [],
        }
        harness.write_result(a.out, res)
        return
    if a.verify:
        rows = [run(4000, b, a.bandlimit, None, a.timeout) for b in (0.5, 0.25, 0.125, 0.0625)]
        res["verify"] = rows
    else:
        rows = [run(N, b, a.bandlimit, a.store, a.timeout) for N in a.ns for b in a.budgets]
        old = [r for r in res.get("runs", []) if (r["N"], r["budget_gb"]) not in {(q["N"], q["budget_gb"]) for q in rows}]
        res["runs"] = old + rows
    import jax

    res.update({
        "benchmark": "memory_budget",
        "network": "S2ConvSO3(1, L) → Erf → SO3Pool → Dense(1) on QM9 atomic environments (C=15), float32, get='ntk'",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "jax": jax.__version__,
                    "loadavg_at_end": os.getloadavg(), "gpu": "none (CPU only)"},
        "notes": notes or [
            "peak_rss_gb: ru_maxrss of a fresh subprocess; baseline_rss_gb: its RSS after imports, data "
            "preparation and jax.eval_shape (before kernel_fn runs).",
            "working_gb = peak − baseline − 3·Gram: the driver holds nngp and ntk on the host (N²·4 bytes "
            "each) and returns the requested one as a JAX copy.",
            "predicted_tile_working_gb: the cost model's estimate for the chosen tile (what the budget bounds).",
            "CPU only; the machine (2 cores) was shared with other jobs: times are indicative only.",
        ],
        "date": time.strftime("%Y-%m-%d %H:%M"),
    })
    harness.write_result(a.out, res)


if __name__ == "__main__":
    main()
