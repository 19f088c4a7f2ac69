"""Benchmark: achieved FLOP/s of the fused SO(3) first layer's matmul phase vs the machine's matmul peak.

Network: S2ConvSO3(L) → Erf → SO3Pool (the fused path: LiftBase direct-matmul route, one product
``(t1·nα, L²C) @ (L²C, t2·nγ)`` per β-slice of the pool's quadrature grid, then Erf and the weighted
sum over the slice, inside one ``lax.scan``). Flops of the matmul phase: ``2·t1·t2·nα·nγ·nβ·L²C``
per tile.

Measured in ONE process, variants interleaved round-robin (the machine is shared: ratios within a
round are what counts, absolute times are not claims):

* ``full``      — ``integrate`` of the cross pairs of a t×t tile (the real fused path, jitted);
* ``G``         — the per-slice einsum + gather building ``G`` (scan, reduced to a scalar);
* ``mm+sum``    — the per-slice product from precomputed ``G`` (scan), output reduced by a sum;
* ``sum``       — the same sum over a stored slice-sized array (the pass the reduction costs);
* ``ew``        — Erf map + analysis (weighted sum) on a stored slice-sized array, same layout
  as the fused path (transpose included, flat point axis);
* ``mm_alone``  — one jnp.matmul of exactly the slice's shape, output materialised (×nβ);
* ``peak``      — a square jnp.matmul (n = 2048 float32 / 1536 float64): the machine's matmul peak.

Matmul phase time = ``mm+sum − sum``; fraction = its FLOP/s / peak FLOP/s. ``full`` is compared
with ``G + (mm+sum − sum) + ew`` as a consistency check.

Second part (``--tiles``): time per pair of the whole fused kernel_fn as a function of tile size
(forced with ``tile_size=``), against the tile size the memory budget picks.

Usage: python benchmarks/fused_flops.py [--quick] [--rounds 5]
Writes benchmarks/results/fused_flops.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def _timeit(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    jax_block(out)
    return time.perf_counter() - t


def jax_block(x):
    import jax

    jax.block_until_ready(x)


def measure_config(L: int, C: int, t: int, dtype: str, rounds: int, osf: float = 3.0) -> dict:
    import numpy as np
    import jax
    import jax.numpy as jnp

    from eqntk.core.pointwise import ErfMap
    from eqntk.so3 import kernel_state as ks
    from eqntk.so3.wigner import pad

    dt = jnp.float64 if dtype == "float64" else jnp.float32
    rng = np.random.default_rng(0)
    x1 = pad(jnp.asarray(rng.normal(size=(t, L * L, C)), dt))
    x2 = pad(jnp.asarray(rng.normal(size=(t, L * L, C)), dt))
    scale = 1.0 / (4 * np.pi * C)
    base = ks.LiftBase(x1, x2, L, True, scale, 0.0, True)
    erf = ErfMap()
    var1 = scale * jnp.sum(x1**2, axis=(1, 2, 3))
    var2 = scale * jnp.sum(x2**2, axis=(1, 2, 3))
    pf = ks.PairFunction(base).then(erf, var1[:, None], var2[None, :])
    grid = ks.integration_grid(pf, 1, osf)
    assert not base.uses_fourier_route(grid), "config takes the Fourier route; pick fewer channels"
    na, nb, ng = grid.alpha.size, grid.beta.size, grid.gamma.size
    K = L * L * C
    flops = 2.0 * t * t * na * ng * nb * K

    # --- full fused path (cross pairs of one tile), as kernel_fn runs it
    def full_fn(x1, x2, v1, v2):
        b = ks.LiftBase(x1, x2, L, True, scale, 0.0, True)
        p = ks.PairFunction(b).then(erf, v1[:, None], v2[None, :])
        n, th = ks.integrate(p, 1, osf)
        return n[..., 0, 0, 0], th[..., 0, 0, 0]

    full = jax.jit(full_fn)

    # --- pieces, built from the slicer's own tensors
    d, f = base.slicer(grid)  # d: (nβ, L, P, P)
    from eqntk.so3.wigner import _pad_index, z_rotation_factors

    ca, sa = z_rotation_factors(L, jnp.asarray(-grid.alpha, dt))
    A1 = ks._rotate_orders(x1[:, None], ca[None, :, None, :, None], sa[None, :, None, :, None], m_axis=3)
    cg, sg = z_rotation_factors(L, jnp.asarray(grid.gamma, dt))
    H = ks._rotate_orders(x2[:, None], cg[None, :, None, :, None], sg[None, :, None, :, None], m_axis=3)
    ls, ms = _pad_index(L)
    H = H[:, :, ls, ms, :].reshape(t * ng, -1)

    def g_of(d_b):
        G = jnp.einsum("lmk,talmc->talkc", d_b, A1)
        return G[:, :, ls, ms, :].reshape(t * na, -1)

    Gs = jax.jit(jax.vmap(g_of))(d)  # (nβ, t·nα, K) precomputed
    jax_block(Gs)

    @jax.jit
    def piece_G(d):
        return jax.lax.scan(lambda c, db: (c + jnp.sum(g_of(db)), None), jnp.zeros((), dt), d)[0]

    @jax.jit
    def piece_mm_sum(Gs, H):
        return jax.lax.scan(lambda c, g: (c + jnp.sum(g @ H.T), None), jnp.zeros((), dt), Gs)[0]

    big = jax.jit(lambda: jnp.asarray(rng.normal(size=(t * na, t * ng)), dt))()  # slice-sized stored array
    shifts = jnp.arange(nb, dtype=dt) * 1e-3

    @jax.jit
    def piece_sum(big, shifts):
        return jax.lax.scan(lambda c, s: (c + jnp.sum(big + s), None), jnp.zeros((), dt), shifts)[0]

    wts = jnp.asarray(grid.beta_weights / (na * ng), dt)

    @jax.jit
    def piece_ew(big, shifts, wts, v1, v2):
        def body(c, x):
            s, w = x
            phi = jnp.transpose((big + s).reshape(t, na, t, ng), (0, 2, 1, 3)).reshape(t, t, na * ng)
            psi = scale * phi
            n, th = erf.kernel(psi, psi, v1[:, None, None], v2[None, :, None])
            return c, (w * jnp.sum(n, axis=-1), w * jnp.sum(th, axis=-1))

        _, (n, th) = jax.lax.scan(body, None, (shifts, wts))
        return n.sum(0), th.sum(0)

    G0 = Gs[0]
    mm_alone = jax.jit(lambda a, b: a @ b.T)
    npk = 2048 if dtype == "float32" else 1536
    Pa = jnp.asarray(rng.normal(size=(npk, npk)), dt)
    Pb = jnp.asarray(rng.normal(size=(npk, npk)), dt)
    peak = jax.jit(lambda a, b: a @ b)

    variants = {
        "full": (full, (x1, x2, var1, var2), 1),
        "G": (piece_G, (d,), 1),
        "mm+sum": (piece_mm_sum, (Gs, H), 1),
        "sum": (piece_sum, (big, shifts), 1),
        "ew": (piece_ew, (big, shifts, wts, var1, var2), 1),
        "mm_alone": (mm_alone, (G0, H), nb),  # one slice; scaled by nβ below
        "peak": (peak, (Pa, Pb), 1),
    }
    for fn, args, _ in variants.values():  # compile + warm
        jax_block(fn(*args))
    times = {k: [] for k in variants}
    for _ in range(rounds):
        for k, (fn, args, mult) in variants.items():
            times[k].append(_timeit(fn, *args) * mult)
    med = {k: float(np.median(v)) for k, v in times.items()}
    mins = {k: float(np.min(v)) for k, v in times.items()}
    peak_flops = 2.0 * npk**3

    def frac(tm):
        return (flops / tm) / (peak_flops / med["peak"])

    mm_phase = med["mm+sum"] - med["sum"]
    # per-round fraction (same-round ratios) -> spread
    per_round = [(flops / max(times["mm+sum"][r] - times["sum"][r], 1e-12)) / (peak_flops / times["peak"][r])
                 for r in range(rounds)]
    return {
        "L": L, "C": C, "tile": t, "dtype": dtype, "grid": [na, nb, ng], "K": K,
        "slice_matmul_shape": [t * na, K, t * ng], "flops_per_tile": flops,
        "median_s": med, "min_s": mins, "rounds": rounds,
        "peak_gflops": peak_flops / med["peak"] / 1e9,
        "matmul_phase_s": mm_phase,
        "matmul_phase_gflops": flops / mm_phase / 1e9,
        "fraction_of_peak_matmul_phase": frac(mm_phase),
        "fraction_of_peak_per_round": per_round,
        "fraction_of_peak_same_shape_alone": frac(med["mm_alone"]),
        "fraction_of_peak_whole_tile": frac(med["full"]),
        "pieces_sum_vs_full": (med["G"] + mm_phase + med["ew"]) / med["full"],
        "share_of_full": {"matmul": mm_phase / med["full"], "G": med["G"] / med["full"],
                          "elementwise+analysis": med["ew"] / med["full"]},
    }


def measure_tiles(L: int, C: int, N: int, dtype: str, tiles: list, rounds: int) -> dict:
    """Whole kernel_fn (lift → Erf → pool, get='ntk') time per pair vs forced tile size."""
    import numpy as np
    import jax
    import jax.numpy as jnp

    from eqntk import stax
    from eqntk.core.driver import DEFAULT_MEMORY_BUDGET, choose_tile

    dt = jnp.float64 if dtype == "float64" else jnp.float32
    x = jnp.asarray(np.random.default_rng(1).normal(size=(N, L * L, C)), dt)
    _, _, kfn = stax.serial(stax.S2ConvSO3(1, L), stax.Erf(), stax.SO3Pool())
    from eqntk.core.kernel import Inputs

    st = jax.eval_shape(lambda a, b: kfn.op(Inputs(a, b, True)), x[:1], x[:1])
    auto = choose_tile(N, N, st.cost, jnp.dtype(dt).itemsize, DEFAULT_MEMORY_BUDGET, None)[0]
    sizes = sorted(set(tiles + [auto]))
    for s in sizes:  # compile each tile shape
        jax_block(kfn(x, x, get="ntk", tile_size=s, progress=False))
    times = {s: [] for s in sizes}
    for _ in range(rounds):
        for s in sizes:
            times[s].append(_timeit(lambda: kfn(x, x, get="ntk", tile_size=s, progress=False)))
    med = {s: float(np.median(v)) for s, v in times.items()}
    return {"L": L, "C": C, "N": N, "dtype": dtype, "auto_tile_2GiB": auto,
            "time_s": {str(s): med[s] for s in sizes},
            "time_rel_to_auto": {str(s): med[s] / med[auto] for s in sizes}}


def asin_poly_f32(x):
    """Vectorisable float32 arcsin (Cephes asinf: range reduction + degree-5 polynomial), for comparison."""
    import jax.numpy as jnp

    a = jnp.abs(x)
    big = a > 0.5
    z = jnp.where(big, 0.5 * (1.0 - a), a * a)
    y = jnp.where(big, jnp.sqrt(z), a)
    p = ((((4.2163199048e-2 * z + 2.4181311049e-2) * z + 4.5470025998e-2) * z + 7.4953002686e-2) * z
         + 1.6666752422e-1) * z * y + y
    p = jnp.where(big, jnp.pi / 2 - 2.0 * p, p)
    return jnp.sign(x) * p


def elementwise_costs(rounds: int) -> dict:
    """ns per element of the transcendental functions in the Erf/ReLU kernel maps (8M elements)."""
    import numpy as np
    import jax
    import jax.numpy as jnp

    out = {}
    for dt in (jnp.float32, jnp.float64):
        x = jnp.asarray(np.random.default_rng(0).uniform(-0.999, 0.999, size=(8_000_000,)), dt)
        fs = {"x*2 (memory pass)": lambda x: x * 2.0, "arcsin": jnp.arcsin,
              "arctan2(x, sqrt(1-x²))": lambda x: jnp.arctan2(x, jnp.sqrt(1 - x * x)),
              "1/sqrt(c-x²)": lambda x: 1.0 / jnp.sqrt(1.5 - x * x), "erf": jax.scipy.special.erf}
        if dt == jnp.float32:
            fs["arcsin, polynomial (Cephes asinf)"] = asin_poly_f32
        fs = {k: jax.jit(f) for k, f in fs.items()}
        for f in fs.values():
            jax_block(f(x))
        T = {k: [] for k in fs}
        for _ in range(rounds):
            for k, f in fs.items():
                T[k].append(_timeit(f, x))
        row = {k: float(np.median(v)) / x.size * 1e9 for k, v in T.items()}
        if dt == jnp.float32:
            row["max_abs_err_poly_vs_arcsin"] = float(jnp.max(jnp.abs(fs["arcsin, polynomial (Cephes asinf)"](x)
                                                                    - fs["arcsin"](x))))
        out[jnp.dtype(dt).name] = row
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", default=os.path.join(HERE, "results", "fused_flops.json"))
    a = p.parse_args()
    import jax

    jax.config.update("jax_enable_x64", True)

    configs = [(4, 2, 64), (4, 2, 192), (8, 2, 48), (6, 4, 96)]
    if a.quick:
        configs = [(4, 2, 64)]
    rows = []
    hdr = (f"{'dtype':>7} {'L':>2} {'C':>2} {'t':>4} {'grid':>11} {'peak GF/s':>9} {'mm GF/s':>8} {'frac':>6} "
           f"{'alone':>6} {'whole':>6} {'mm/full':>7} {'ew/full':>7} {'G/full':>6} {'Σ/full':>6}")
    print(hdr)
    for dtype in ("float32", "float64"):
        for L, C, t in configs:
            r = measure_config(L, C, t, dtype, a.rounds)
            rows.append(r)
            s = r["share_of_full"]
            print(f"{dtype:>7} {L:>2} {C:>2} {t:>4} {str(tuple(r['grid'])):>11} {r['peak_gflops']:>9.1f} "
                  f"{r['matmul_phase_gflops']:>8.1f} {r['fraction_of_peak_matmul_phase']:>6.2f} "
                  f"{r['fraction_of_peak_same_shape_alone']:>6.2f} {r['fraction_of_peak_whole_tile']:>6.2f} "
                  f"{s['matmul']:>7.2f} {s['elementwise+analysis']:>7.2f} {s['G']:>6.2f} {r['pieces_sum_vs_full']:>6.2f}",
                  flush=True)
    ew = elementwise_costs(a.rounds)
    print("\nns per element (8M elements, same run):")
    for dtn, row in ew.items():
        print(f"  {dtn}: " + ", ".join(f"{k}: {v:.3g}" for k, v in row.items()))
    tile_rows = []
    if not a.quick:
        print("\nwhole kernel_fn (lift→Erf→pool, get='ntk') time vs forced tile size, relative to the budget's tile")
        for dtype in ("float32", "float64"):
            r = measure_tiles(4, 2, 256, dtype, [32, 64, 128, 256], 3)
            tile_rows.append(r)
            print(f"{dtype}: auto tile {r['auto_tile_2GiB']}: "
                  + "  ".join(f"t={k}: {v:.2f}" for k, v in r["time_rel_to_auto"].items()), flush=True)
    harness.write_result(a.out, {
        "benchmark": "fused_flops",
        "network": "S2ConvSO3(L) → Erf → SO3Pool (direct matmul route), cross pairs of one t×t tile",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "device": str(jax.devices()[0]),
                    "jax": jax.__version__, "loadavg_at_end": os.getloadavg(), "gpu": "none (CPU only)"},
        "notes": [
            "CPU only (no GPU available to this task). The machine (2 cores) was shared with other jobs: "
            "variants are interleaved round-robin and only same-run ratios are reported as results.",
            "flops per tile = 2·t1·t2·nα·nγ·nβ·L²C; matmul phase = median(mm+sum) − median(sum).",
            "fraction = (matmul-phase FLOP/s) / (square matmul FLOP/s of the same dtype, same run).",
        ],
        "date": time.strftime("%Y-%m-%d %H:%M"), "rows": rows, "tile_sweep": tile_rows,
        "elementwise_ns_per_element": ew,
    })


if __name__ == "__main__":
    main()
