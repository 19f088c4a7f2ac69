"""Finite-width test of the augmentation theorem along training, on rotated 8×8 digits.

* p4 GCNN  Z2ConvP4(w) → Relu → P4ConvP4(w) → Relu → GroupPool → Dense(10), trained on the n
  training images WITHOUT augmentation;
* plain CNN  Conv(w) → Relu → Conv(w) → Relu → GlobalAvgPool → Dense(10), trained on the FULL
  p4 orbits (all 4 quarter turns of every training image, 4n points);
* infinite width: the GCNN NTK (= the p4-averaged CNN NTK, checked here on these data).

Both ensembles train by full-batch GD (eqntk.dynamics.train_ensemble, optax.sgd(η), loss
1/(2N) Σ|f − y|² over the N points each network sees, same η and steps). Because the augmented
targets are orbit-constant, the CNN's infinite-width flow on 4n points reduces to the GCNN's flow
on n points, step for step (the 1/(4n) loss normalisation cancels the 4 in the orbit sum), so all
three should agree at every step k; flow time τ = k·η (predict.gradient_flow(Θ, y, τ) at learning
rate 1). Reference predictions: eqntk.dynamics.kernel_gradient_descent (exact discrete-time
linearised GD, the primary reference) and eqntk.predict.gradient_flow (continuous time).

Gap at step k: ‖μ_A(k) − μ_B(k)‖_F / ‖μ_NTK(k)‖_F over test images × 10 outputs, averaged over the
recorded k > 0. Ensembles are antithetic (readout-negated pairs), which cancels the initial-function
term of the linearised prediction; the Monte Carlo noise of each gap is reported alongside.

    python benchmarks/digits_dynamics.py [--widths 4 16 64] [--members 4] [--n-train 64]
"""

import argparse
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

import numpy as np
import jax
import jax.numpy as jnp

from eqntk import predict, stax
from eqntk.augment import augment
from eqntk.data import load_digits, rot90_images
from eqntk.dynamics import kernel_gradient_descent, train_ensemble

WS, BS = float(np.sqrt(2.0)), 0.1


def gcnn(w):
    return stax.serial(stax.Z2ConvP4(w, 3, "SAME", W_std=WS, b_std=BS), stax.Relu(),
                       stax.P4ConvP4(w, 3, "SAME", W_std=WS, b_std=BS), stax.Relu(), stax.GroupPool(),
                       stax.Dense(10, b_std=BS))


def cnn(w):
    return stax.serial(stax.Conv(w, 3, "SAME", W_std=WS, b_std=BS), stax.Relu(),
                       stax.Conv(w, 3, "SAME", W_std=WS, b_std=BS), stax.Relu(), stax.GlobalAvgPool(),
                       stax.Dense(10, b_std=BS))


def data(n, m, seed):
    d = load_digits()  # the digits shipped with eqntk
    r = np.random.default_rng(seed)
    idx = r.permutation(len(d.y))
    x = np.asarray(d.x, np.float64) / 16.0
    x = (x - 0.3) / 0.4  # global scalars: rotation-invariant standardisation
    x = rot90_images(x, r.integers(0, 4, len(x)))  # the rotated-digits task
    tr, te = idx[:n], idx[n:n + m]
    return x[tr], d.y[tr], x[te], d.y[te]


def rel(a, b, ref):
    return float(np.linalg.norm(a - b) / np.linalg.norm(ref))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--widths", type=int, nargs="+", default=[4, 16, 64])
    ap.add_argument("--members", type=int, default=4)
    ap.add_argument("--n-train", type=int, default=64)
    ap.add_argument("--n-test", type=int, default=128)
    ap.add_argument("--steps", type=int, nargs="+", default=[0, 2, 5, 10, 20, 40, 80, 150])
    ap.add_argument("--eta-scale", type=float, default=1.0, help="η = eta_scale · n / λ_max(Θ_train)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--member-chunk", type=int, default=1,
                    help="members per vmap (1: one by one; vmapped convolutions are several times slower on XLA:CPU)")
    ap.add_argument("--out", default="benchmarks/results/digits_dynamics")
    a = ap.parse_args()
    t_start = time.time()
    xtr, ltr, xte, lte = data(a.n_train, a.n_test, a.seed)
    y = np.asarray(predict.one_hot(ltr, 10, centered=True), np.float64)
    n = len(y)

    # infinite width: GCNN NTK, and the augmentation identity on these data
    kg = gcnn(1).kernel_fn
    t0 = time.time()
    K = np.asarray(kg(xtr, get="ntk"), np.float64)
    Kt = np.asarray(kg(xte, xtr, get="ntk"), np.float64)
    t_kernel = time.time() - t0
    Ka = np.asarray(augment(cnn(1).kernel_fn, "p4")(xte[:16], xtr[:16], get="ntk"))
    aug_identity = float(np.abs(Ka - Kt[:16, :16]).max() / np.abs(Kt).max())
    lam = np.linalg.eigvalsh(K)
    eta = a.eta_scale * n / lam[-1]
    steps = np.array(sorted(set(a.steps)))
    _, disc = kernel_gradient_descent(K, y, steps, Kt, learning_rate=eta)
    flow = np.asarray(predict.gradient_flow(K, y, steps * eta, Kt).test)  # learning rate 1, t = τ = kη
    disc_acc = [float(predict.accuracy(d, lte)) for d in disc]
    print(f"kernels {t_kernel:.1f}s, aug identity {aug_identity:.1e}, eta {eta:.4g}", flush=True)

    # CNN data: the full orbits
    xaug = np.concatenate([rot90_images(xtr, k) for k in range(4)])
    yaug = np.concatenate([y] * 4)
    rows = []
    for w in a.widths:
        row = dict(width=w)
        for name, net, X, Y in (("gcnn", gcnn(w), xtr, y), ("cnn_aug", cnn(w), xaug, yaug)):
            t0 = time.time()
            tr = train_ensemble(net.init_fn, net.apply_fn, X, Y, xte, learning_rate=eta, steps=steps,
                                n_members=a.members, key=jax.random.PRNGKey(a.seed * 7919 + w), antithetic=True,
                                dtype=jnp.float32, member_chunk=a.member_chunk)
            row[name] = dict(mean=tr.test_mean, se=tr.test_mean_stderr(), loss=tr.loss.mean(0).tolist(),
                             seconds=time.time() - t0,
                             acc=[float(predict.accuracy(m, lte)) for m in tr.test_mean])
            print(w, name, f"{time.time() - t0:.0f}s", flush=True)
        g, c = row["gcnn"]["mean"], row["cnn_aug"]["mean"]
        per_t = []
        for i, k in enumerate(steps):
            if k == 0:
                continue
            ref = disc[i]
            per_t.append(dict(step=int(k), time=float(k * eta),
                              gcnn_vs_cnn_aug=rel(g[i], c[i], ref),
                              gcnn_vs_ntk=rel(g[i], disc[i], ref), cnn_aug_vs_ntk=rel(c[i], disc[i], ref),
                              gcnn_vs_flow=rel(g[i], flow[i], ref), cnn_aug_vs_flow=rel(c[i], flow[i], ref),
                              noise_gcnn=float(np.linalg.norm(row["gcnn"]["se"][i]) / np.linalg.norm(ref)),
                              noise_cnn_aug=float(np.linalg.norm(row["cnn_aug"]["se"][i]) / np.linalg.norm(ref))))
        summary = {k: float(np.mean([p[k] for p in per_t])) for k in per_t[0] if k not in ("step", "time")}
        rows.append(dict(width=w, per_time=per_t, mean_over_times=summary,
                         gcnn=dict(acc=row["gcnn"]["acc"], loss=row["gcnn"]["loss"], seconds=row["gcnn"]["seconds"]),
                         cnn_aug=dict(acc=row["cnn_aug"]["acc"], loss=row["cnn_aug"]["loss"],
                                      seconds=row["cnn_aug"]["seconds"])))
        print(w, {k: round(v, 4) for k, v in summary.items()}, flush=True)
    lw = np.log([r["width"] for r in rows])
    fits = {}
    for key in ("gcnn_vs_cnn_aug", "gcnn_vs_ntk", "cnn_aug_vs_ntk"):
        vals = [r["mean_over_times"][key] for r in rows]
        if len(rows) > 1:
            fits[key] = float(np.polyfit(lw, np.log(vals), 1)[0])
    flow_vs_disc = [rel(flow[i], disc[i], disc[i]) for i in range(len(steps)) if steps[i] > 0]
    res = dict(command="python benchmarks/digits_dynamics.py " + " ".join(
        ["--widths", *map(str, a.widths), f"--members {a.members} --n-train {a.n_train} --n-test {a.n_test}",
         "--steps", *map(str, a.steps), f"--eta-scale {a.eta_scale} --seed {a.seed} --member-chunk {a.member_chunk}"]),
        task="sklearn digits 8x8, random quarter turns of every image, 10-class centred one-hot targets",
        n_train=n, n_test=len(lte), members=a.members, antithetic=True, learning_rate=eta,
        eta_times_lambda_max_over_n=float(eta * lam[-1] / n),
        steps=steps.tolist(), flow_times=(steps * eta).tolist(),
        augmentation_identity_max_rel_diff=aug_identity, kernel_seconds=t_kernel,
        ntk_discrete_test_accuracy=disc_acc, flow_vs_discrete_rel=flow_vs_disc,
        networks=dict(gcnn="Z2ConvP4(w,3x3,SAME,W=sqrt2,b=0.1)-Relu-P4ConvP4(w)-Relu-GroupPool-Dense(10,b=0.1)",
                      cnn="Conv(w,3x3,SAME,W=sqrt2,b=0.1)-Relu-Conv(w)-Relu-GlobalAvgPool-Dense(10,b=0.1)"),
        rows=rows, slopes_of_mean_gap_vs_width=fits, machine=platform.platform(), jax=jax.__version__,
        seconds=time.time() - t_start)
    harness.write_result(a.out + ".json", res)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axs = plt.subplots(1, 2, figsize=(11, 4))
    W = np.array([r["width"] for r in rows])
    for key, lab, c in (("gcnn_vs_cnn_aug", "GCNN vs aug. CNN", "C0"), ("gcnn_vs_ntk", "GCNN vs NTK", "C1"),
                        ("cnn_aug_vs_ntk", "aug. CNN vs NTK", "C2")):
        axs[0].plot(W, [r["mean_over_times"][key] for r in rows], "o-", color=c,
                    label=lab + (f" (slope {fits[key]:.2f})" if key in fits else ""))
    axs[0].plot(W, [r["mean_over_times"]["noise_gcnn"] for r in rows], "k:", label="MC noise (GCNN ens.)")
    axs[0].set_xscale("log"); axs[0].set_yscale("log")
    axs[0].set_xlabel("width (channels)"); axs[0].set_ylabel("relative gap of ensemble-mean test predictions")
    axs[0].set_title("gap vs width (mean over recorded steps)"); axs[0].legend(fontsize=8)
    tt = steps[steps > 0] * eta
    for r, ls in zip(rows, ("-", "--", ":", "-.")):
        axs[1].plot(tt, [p["gcnn_vs_cnn_aug"] for p in r["per_time"]], ls, color="C0", label=f"w={r['width']} GCNN vs CNN")
        axs[1].plot(tt, [p["gcnn_vs_ntk"] for p in r["per_time"]], ls, color="C1", label=f"w={r['width']} GCNN vs NTK")
    axs[1].set_xscale("log"); axs[1].set_yscale("log"); axs[1].set_xlabel("flow time τ = steps·η")
    axs[1].set_title("gap along training"); axs[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(a.out + ".png", dpi=120)
    print("wrote", a.out + ".json", f"{res['seconds']:.0f}s")


if __name__ == "__main__":
    main()
