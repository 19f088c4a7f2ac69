"""Finite-width test of the augmentation theorem for SO(3), on a QM9 subset (U0 atomization energies).

Molecular model: a molecule's output is the sum of an atom network over its atoms' environments
(spherical signals, :func:`eqntk.data.atomic_environments`), so its kernels are the molecular
kernels Σ_i Σ_j k(a_i, a'_j) (all atom pairs).

* SO(3) GCNN  ``S2ConvSO3(w, L) → Erf → SO3Pool → Dense(1)`` on every atom, trained on the n
  training molecules WITHOUT augmentation;
* MLP  ``Dense(w) → Erf → Dense(1)`` on the flattened coefficients (first-layer ``W_std`` scaled by
  ``L/√(4π)``, the normalisation under which the SO(3)-averaged MLP kernel IS the GCNN kernel,
  tests/test_augment.py), trained on the training molecules rotated by every element of the
  icosahedral group I (60 rotations, 60 n points, orbit-constant targets);
* infinite width: the GCNN NTK, and the I-averaged MLP NTK (``augment(mlp, I)``).

For a finite group, the augmented MLP's infinite-width flow on 60 n points is exactly the flow of the
I-averaged MLP NTK on the n points (the MLP kernel is invariant under rotating both inputs, and the
1/(60 n) loss normalisation cancels the orbit sum). The I-average approximates the SO(3) average
(exact for the components of degree 1–5, which have no I-invariants), so the GCNN NTK and the
I-augmented MLP NTK differ by a small, measured amount: the ensembles should approach their own
NTK predictions as the width grows, and each other up to that kernel difference.

Both ensembles train by full-batch GD (``eqntk.dynamics.train_ensemble``, ``optax.sgd(η)``, loss
``1/(2N) Σ|f − y|²``, same η and steps, antithetic members). References: exact discrete-time
linearised GD (``eqntk.dynamics.kernel_gradient_descent``) with each NTK.

    python benchmarks/qm9_dynamics.py [--widths 16 64 256] [--members 4] [--n-train 24]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from eqntk import stax  # noqa: E402
from eqntk.augment import augment  # noqa: E402
import eqntk.data as D  # noqa: E402
from eqntk.dynamics import kernel_gradient_descent, train_ensemble  # noqa: E402
from eqntk.experiments import qm9  # noqa: E402


def icosahedral_group() -> np.ndarray:
    """The 60 rotation matrices of the icosahedral group, by closure of two generators."""
    phi = (1 + 5**0.5) / 2

    def axis_rotation(axis, angle):
        a = np.asarray(axis, float) / np.linalg.norm(axis)
        K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
        return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K

    gens = [axis_rotation([0, 1, phi], 2 * np.pi / 5), axis_rotation([1, 1, 1], 2 * np.pi / 3)]
    group = [np.eye(3)]
    frontier = [np.eye(3)]
    while frontier:
        new = []
        for g in frontier:
            for h in gens:
                p = h @ g
                if not any(np.abs(p - q).max() < 1e-9 for q in group):
                    group.append(p)
                    new.append(p)
        frontier = new
    if len(group) != 60:
        raise RuntimeError(f"closure gave {len(group)} rotations, expected 60")
    return np.array(group)


def pack(x_atoms: np.ndarray, mols, amax: int) -> np.ndarray:
    """(n_mol, amax, L²·C + 1): each molecule's atom environments, zero-padded, last column = mask."""
    n = len(mols)
    out = np.zeros((n, amax, x_atoms[0].size + 1))
    for i in range(n):
        a, b = mols.offsets[i], mols.offsets[i + 1]
        out[i, : b - a, :-1] = x_atoms[a:b].reshape(b - a, -1)
        out[i, : b - a, -1] = 1.0
    return out


def molecular_net(layer, atom_shape):
    """``(init_fn, apply_fn)`` of ``Σ_atoms net(atom)`` on :func:`pack`-ed molecules."""
    init_atom, apply_atom, _ = layer

    def init_fn(key, input_shape):
        _, params = init_atom(key, (input_shape[0] * input_shape[1],) + atom_shape)
        return (input_shape[0], 1), params

    def apply_fn(params, X, **kw):
        n, a = X.shape[:2]
        atoms = X[..., :-1].reshape((n * a,) + atom_shape)
        out = jnp.asarray(apply_atom(params, atoms, **kw)).reshape(n, a)
        return jnp.sum(out * X[..., -1], axis=1, keepdims=True)

    return init_fn, apply_fn


def rel(a, b, ref):
    return float(np.linalg.norm(a - b) / np.linalg.norm(ref))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--widths", type=int, nargs="+", default=[16, 64, 256])
    ap.add_argument("--members", type=int, default=4)
    ap.add_argument("--n-train", type=int, default=24)
    ap.add_argument("--n-test", type=int, default=48)
    ap.add_argument("--bandlimit", type=int, default=3)
    ap.add_argument("--w-std", type=float, default=2.0, help="first-layer W_std of the GCNN (Erf's input scale)")
    ap.add_argument("--steps", type=int, nargs="+", default=[0, 2, 5, 10, 20, 40, 80, 150])
    ap.add_argument("--eta-scale", type=float, default=1.0, help="η = eta_scale · n / λ_max(Θ_train)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results/qm9_dynamics")
    a = ap.parse_args()
    t_start = time.time()
    L, B = a.bandlimit, 0.1
    ms = D.load_qm9(None)
    idx = np.random.default_rng(a.seed).permutation(len(ms))[: a.n_train + a.n_test]
    tr, te = ms.subset(idx[: a.n_train]), ms.subset(idx[a.n_train:])
    y_all = D.atomization_energy(ms, "U0", unit="eV")[idx]
    c_tr, c_te = qm9.element_counts(tr), qm9.element_counts(te)
    base = qm9.element_baseline(c_tr, y_all[: a.n_train])
    y_tr = y_all[: a.n_train] - base(c_tr)
    scale = float(np.std(y_tr))
    y = (y_tr / scale)[:, None]  # standardised residual (train std)
    spec = dict(bandlimit=L, powers=(1.0, 2.0, 3.0), cutoff=5.0, width=0.5)
    x_tr, x_te = D.atomic_environments(tr, **spec), D.atomic_environments(te, **spec)
    atom_shape = x_tr.shape[1:]
    C = atom_shape[1]
    w_mlp = a.w_std * np.sqrt(L * L / (4 * np.pi))

    def gcnn(w):
        return stax.serial(stax.S2ConvSO3(w, L, W_std=a.w_std, b_std=B), stax.Erf(), stax.SO3Pool(),
                           stax.Dense(1, b_std=B))

    def mlp(w):
        return stax.serial(stax.Dense(w, W_std=w_mlp, b_std=B), stax.Erf(), stax.Dense(1, b_std=B))

    # infinite width
    t0 = time.time()
    kg = gcnn(1).kernel_fn
    K_g = D.molecular_kernel_fn(kg, x_tr, tr, get="ntk")
    Kt_g = D.molecular_kernel_fn(kg, x_te, te, x_tr, tr, get="ntk")
    km = mlp(1).kernel_fn

    def km_flat(x1, x2=None, get=None, **kw):
        return km(np.reshape(x1, (x1.shape[0], -1)), None if x2 is None else np.reshape(x2, (x2.shape[0], -1)),
                  get=get, **kw)

    rots = icosahedral_group()
    # I-averaged MLP NTK, molecule by molecule: rotate the second molecule set by every g ∈ I
    K_m = np.zeros_like(K_g)
    Kt_m = np.zeros_like(Kt_g)
    for Q in rots:
        tr_g = tr.transformed(rotations=Q)
        x_g = D.atomic_environments(tr_g, **spec)
        K_m += D.molecular_kernel_fn(km_flat, x_tr, tr, x_g, tr_g, get="ntk") / len(rots)
        Kt_m += D.molecular_kernel_fn(km_flat, x_te, te, x_g, tr_g, get="ntk") / len(rots)
    K_m = 0.5 * (K_m + K_m.T)
    t_kernel = time.time() - t0
    # the I-average as a quadrature of the SO(3) average, checked on these molecules
    kernel_gap = float(np.linalg.norm(Kt_m - Kt_g) / np.linalg.norm(Kt_g))
    train_gap = float(np.linalg.norm(K_m - K_g) / np.linalg.norm(K_g))
    n = a.n_train
    lam = np.linalg.eigvalsh(K_g)
    eta = a.eta_scale * n / lam[-1]
    steps = np.array(sorted(set(a.steps)))
    _, disc_g = kernel_gradient_descent(K_g, y, steps, Kt_g, learning_rate=eta)
    _, disc_m = kernel_gradient_descent(K_m, y, steps, Kt_m, learning_rate=eta)
    print(f"kernels {t_kernel:.1f}s; |K_I-aug MLP − K_GCNN| / |K_GCNN|: test×train {kernel_gap:.2e}, "
          f"train {train_gap:.2e}; eta {eta:.4g}", flush=True)

    amax = int(max(np.max(np.diff(tr.offsets)), np.max(np.diff(te.offsets))))
    X_tr, X_te = pack(x_tr, tr, amax), pack(x_te, te, amax)
    # augmented training set: every training molecule rotated by every g ∈ I (orbit-constant targets)
    aug = [pack(D.atomic_environments(tr.transformed(rotations=Q), **spec), tr, amax) for Q in rots]
    X_aug = np.concatenate(aug)
    y_aug = np.concatenate([y] * len(rots))
    rows = []
    for w in a.widths:
        row = {}
        for name, layer, shape, X, Y in (("gcnn", gcnn(w), atom_shape, X_tr, y),
                                         ("mlp_aug", mlp(w), (int(np.prod(atom_shape)),), X_aug, y_aug)):
            init_fn, apply_fn = molecular_net(layer, shape)
            t0 = time.time()
            res = train_ensemble(init_fn, apply_fn, X, Y, X_te, learning_rate=eta, steps=steps,
                                 n_members=a.members, key=jax.random.PRNGKey(a.seed * 7919 + w), antithetic=True,
                                 dtype=jnp.float32, member_chunk=1)
            row[name] = dict(mean=res.test_mean, se=res.test_mean_stderr(), loss=res.loss.mean(0).tolist(),
                             seconds=time.time() - t0)
            print(w, name, f"{time.time() - t0:.0f}s", flush=True)
        g, m = row["gcnn"]["mean"], row["mlp_aug"]["mean"]
        per_t = []
        for i, k in enumerate(steps):
            if k == 0:
                continue
            ref = disc_g[i]
            per_t.append(dict(step=int(k), time=float(k * eta),
                              gcnn_vs_mlp_aug=rel(g[i], m[i], ref),
                              gcnn_vs_gcnn_ntk=rel(g[i], disc_g[i], ref),
                              mlp_aug_vs_aug_ntk=rel(m[i], disc_m[i], ref),
                              gcnn_ntk_vs_aug_ntk=rel(disc_g[i], disc_m[i], ref),
                              noise_gcnn=float(np.linalg.norm(row["gcnn"]["se"][i]) / np.linalg.norm(ref)),
                              noise_mlp_aug=float(np.linalg.norm(row["mlp_aug"]["se"][i]) / np.linalg.norm(ref))))
        summary = {k: float(np.mean([p[k] for p in per_t])) for k in per_t[0] if k not in ("step", "time")}
        rows.append(dict(width=w, per_time=per_t, mean_over_times=summary,
                         gcnn=dict(loss=row["gcnn"]["loss"], seconds=row["gcnn"]["seconds"]),
                         mlp_aug=dict(loss=row["mlp_aug"]["loss"], seconds=row["mlp_aug"]["seconds"])))
        print(w, {k: round(v, 4) for k, v in summary.items()}, flush=True)
    lw = np.log([r["width"] for r in rows])
    fits = {}
    for key in ("gcnn_vs_mlp_aug", "gcnn_vs_gcnn_ntk", "mlp_aug_vs_aug_ntk"):
        if len(rows) > 1:
            fits[key] = float(np.polyfit(lw, np.log([r["mean_over_times"][key] for r in rows]), 1)[0])
    y_te = (y_all[a.n_train:] - base(c_te)) / scale
    test_rmse_meV = [1e3 * scale * float(np.sqrt(np.mean((d[:, 0] - y_te) ** 2))) for d in disc_g]
    res = dict(
        command="python benchmarks/qm9_dynamics.py " + " ".join(
            ["--widths", *map(str, a.widths), f"--members {a.members} --n-train {a.n_train} --n-test {a.n_test}",
             f"--bandlimit {L} --w-std {a.w_std}", "--steps", *map(str, a.steps),
             f"--eta-scale {a.eta_scale} --seed {a.seed}"]),
        task="QM9 (embedded subset) U0 atomization energy minus per-element baseline, standardised; "
             "molecule = sum over atoms of the atom network",
        n_train=n, n_test=a.n_test, n_atoms_train=int(tr.n_atoms_total), members=a.members, antithetic=True,
        learning_rate=eta, eta_times_lambda_max_over_n=float(eta * lam[-1] / n), target_std_eV=scale,
        steps=steps.tolist(), flow_times=(steps * eta).tolist(),
        icosahedral_vs_so3_kernel_rel_gap=dict(test_train=kernel_gap, train=train_gap),
        gcnn_ntk_test_rmse_meV_along_training=test_rmse_meV, kernel_seconds=t_kernel,
        networks=dict(gcnn=f"S2ConvSO3(w,L={L},W={a.w_std},b={B})-Erf-SO3Pool-Dense(1,b={B}), summed over atoms",
                      mlp=f"Dense(w,W={w_mlp:.4g},b={B})-Erf-Dense(1,b={B}) on L²·C={L * L * C} coefficients, "
                          "summed over atoms, trained on the 60 icosahedral rotations of every molecule"),
        rows=rows, slopes_of_mean_gap_vs_width=fits, machine=platform.platform(), jax=jax.__version__,
        seconds=time.time() - t_start)
    harness.write_result(a.out + ".json", res)

    from eqntk.experiments.common import pyplot, save_figure

    plt = pyplot()
    fig, axs = plt.subplots(1, 2, figsize=(11, 4))
    W = np.array([r["width"] for r in rows])
    for key, lab, c in (("gcnn_vs_mlp_aug", "GCNN vs I-aug. MLP", "C0"), ("gcnn_vs_gcnn_ntk", "GCNN vs its NTK", "C1"),
                        ("mlp_aug_vs_aug_ntk", "I-aug. MLP vs its NTK", "C2")):
        axs[0].plot(W, [r["mean_over_times"][key] for r in rows], "o-", color=c,
                    label=lab + (f" (slope {fits[key]:.2f})" if key in fits else ""))
    axs[0].plot(W, [r["mean_over_times"]["gcnn_ntk_vs_aug_ntk"] for r in rows], "k--",
                label="GCNN NTK vs I-aug. MLP NTK (infinite width)")
    axs[0].plot(W, [r["mean_over_times"]["noise_gcnn"] for r in rows], "k:", label="MC noise (GCNN ens.)")
    axs[0].set(xscale="log", yscale="log", xlabel="width (channels)",
               ylabel="relative gap of ensemble-mean test predictions", title="gap vs width (mean over steps)")
    tt = steps[steps > 0] * eta
    for r, ls in zip(rows, ("-", "--", ":", "-.")):
        axs[1].plot(tt, [p["gcnn_vs_mlp_aug"] for p in r["per_time"]], ls, color="C0", label=f"w={r['width']} GCNN vs MLP")
        axs[1].plot(tt, [p["gcnn_vs_gcnn_ntk"] for p in r["per_time"]], ls, color="C1", label=f"w={r['width']} GCNN vs NTK")
    axs[1].set(xscale="log", yscale="log", xlabel="flow time τ = steps·η", title="gap along training")
    axs[1].legend(fontsize=7)
    save_figure(fig, axs[0], a.out + ".png")
    print("wrote", a.out + ".json", f"{res['seconds']:.0f}s")


if __name__ == "__main__":
    main()
