"""Empirical vs analytic NNGP/NTK against width: p4 GCNN on digits, SO(3) GCNN on random spherical signals.

For each width, ``--seeds`` independent networks; per network the relative Frobenius error
``|K_emp − K| / |K|`` of

* the NNGP sample ``h hᵀ / width + b²`` (``h`` the pooled features; the readout integrated out),
* the empirical NTK ``Σ_p ∂f/∂θ_p ∂f'/∂θ_p`` of the full network with its ``Dense(1)`` readout,

averaged over seeds; a least-squares line through ``log err`` vs ``log width`` gives the slope
(−1/2 expected for per-network fluctuations). Writes JSON and PNG to benchmarks/results/.

    python benchmarks/kernel_convergence.py [--seeds 6] [--out benchmarks/results/kernel_convergence]
"""

import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

import numpy as np
import jax
import jax.numpy as jnp

jax.config.update("jax_enable_x64", True)

from eqntk import stax  # noqa: E402
from eqntk.core.empirical import empirical_ntk  # noqa: E402
from eqntk.data import load_digits, rot90_images  # noqa: E402

B_OUT = 0.1


def p4_body(w):
    return [stax.Z2ConvP4(w, 3, "SAME", W_std=np.sqrt(2), b_std=0.1), stax.Relu(),
            stax.P4ConvP4(w, 3, "SAME", W_std=np.sqrt(2), b_std=0.1), stax.Relu(), stax.GroupPool()]


def so3_body(w, L=3):
    return [stax.S2ConvSO3(w, L, b_std=0.2), stax.Erf(), stax.SO3ConvSO3(w, 3), stax.Relu(), stax.SO3Pool()]


def digits(n=4, seed=0):
    d = load_digits()  # the digits shipped with eqntk
    r = np.random.default_rng(seed)
    i = r.choice(len(d.y), n, replace=False)
    x = np.asarray(d.x[i], np.float64) / 16.0
    x = (x - 0.3) / 0.4
    return rot90_images(x, r.integers(0, 4, n))


def study(body, x, widths, seeds):
    k = stax.serial(*body(1), stax.Dense(1, b_std=B_OUT)).kernel_fn(x)
    kn, kt = np.asarray(k.nngp), np.asarray(k.ntk)
    rows = []
    for w in widths:
        _, apply_body, _ = stax.serial(*body(w))
        init, apply, _ = stax.serial(*body(w), stax.Dense(1, b_std=B_OUT))
        feat = jax.jit(lambda p: apply_body(p, x))
        ntk = jax.jit(lambda p: empirical_ntk(apply, p, x))
        en, et = [], []
        t0 = time.time()
        for s in range(seeds):
            _, p = init(jax.random.PRNGKey(1000 * w + s), x.shape)
            h = feat(p[:-1])
            N = np.asarray(h @ h.T / w + B_OUT**2)
            T = np.asarray(ntk(p))
            en.append(np.linalg.norm(N - kn) / np.linalg.norm(kn))
            et.append(np.linalg.norm(T - kt) / np.linalg.norm(kt))
        rows.append(dict(width=w, nngp_rel_err=float(np.mean(en)), nngp_rel_err_sem=float(np.std(en, ddof=1) / np.sqrt(seeds)),
                         ntk_rel_err=float(np.mean(et)), ntk_rel_err_sem=float(np.std(et, ddof=1) / np.sqrt(seeds)),
                         seconds=time.time() - t0))
        print(rows[-1], flush=True)
    return dict(rows=rows, **fit(rows))


def fit(rows, min_width=16):
    """Least-squares slopes of log(mean error) vs log(width): all widths, and widths >= min_width."""
    out = {}
    for name, sel in (("fits", rows), (f"fits_width_ge_{min_width}", [r for r in rows if r["width"] >= min_width])):
        lw = np.log([r["width"] for r in sel])
        out[name] = {}
        for key in ("nngp_rel_err", "ntk_rel_err"):
            slope, icpt = np.polyfit(lw, np.log([r[key] for r in sel]), 1)
            out[name][key] = dict(slope=float(slope), intercept=float(icpt))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--p4-widths", type=int, nargs="+", default=[4, 8, 16, 32, 64, 128])
    ap.add_argument("--so3-widths", type=int, nargs="+", default=[8, 16, 32, 64, 128, 256])
    ap.add_argument("--out", default="benchmarks/results/kernel_convergence")
    ap.add_argument("--refit", action="store_true", help="only recompute the fits of an existing JSON")
    a = ap.parse_args()
    if a.refit:
        with open(a.out + ".json") as f:
            res = json.load(f)
        for g in ("p4", "so3"):
            res[g].update(fit(res[g]["rows"]))
        harness.write_result(a.out + ".json", res)
        print({g: {k: v for k, v in res[g].items() if k.startswith("fits")} for g in ("p4", "so3")})
        return
    t0 = time.time()
    res = dict(command="python benchmarks/kernel_convergence.py " + " ".join(
        [f"--seeds {a.seeds}", "--p4-widths", *map(str, a.p4_widths), "--so3-widths", *map(str, a.so3_widths)]),
        seeds=a.seeds, machine=platform.platform(), jax=jax.__version__)
    x_p4 = digits()
    res["p4"] = dict(network="Z2ConvP4(w,3x3,SAME,W=sqrt2,b=0.1)-Relu-P4ConvP4(w)-Relu-GroupPool-Dense(1,b=0.1)",
                     inputs="4 sklearn digits (8x8), random quarter turns, standardised", **study(p4_body, x_p4, a.p4_widths, a.seeds))
    x_so3 = jnp.asarray(np.random.default_rng(0).normal(size=(3, 9, 2)))
    res["so3"] = dict(network="S2ConvSO3(w,L=3,b=0.2)-Erf-SO3ConvSO3(w,3)-Relu-SO3Pool-Dense(1,b=0.1)",
                      inputs="3 random spherical signals, L=3, 2 channels (as tests/test_so3_montecarlo.py)",
                      **study(so3_body, x_so3, a.so3_widths, a.seeds))
    res["seconds"] = time.time() - t0
    harness.write_result(a.out + ".json", res)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axs = plt.subplots(1, 2, figsize=(10, 4))
    for ax, g in zip(axs, ("p4", "so3")):
        rows = res[g]["rows"]
        w = np.array([r["width"] for r in rows])
        for key, lab, c in (("nngp_rel_err", "NNGP", "C0"), ("ntk_rel_err", "NTK", "C1")):
            e = np.array([r[key] for r in rows])
            s = np.array([r[key + "_sem"] for r in rows])
            fk = res[g]["fits"][key]
            ax.errorbar(w, e, yerr=s, fmt="o", color=c, label=f"{lab} (slope {fk['slope']:.2f})")
            ax.plot(w, np.exp(fk["intercept"]) * w ** fk["slope"], "-", color=c, lw=1)
        ax.plot(w, e[0] * (w / w[0]) ** -0.5, "k:", lw=1, label="∝ width^-1/2")
        ax.set_xscale("log"); ax.set_yscale("log")
        ax.set_xlabel("width (channels)"); ax.set_ylabel("relative error |K_emp − K| / |K|")
        ax.set_title(f"{g}: per-network error, mean of {a.seeds} seeds")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(a.out + ".png", dpi=120)
    print("wrote", a.out + ".json", a.out + ".png", f"{res['seconds']:.0f}s")


if __name__ == "__main__":
    main()
