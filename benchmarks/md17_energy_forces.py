"""MD17 ethanol: SO(3) kernel models trained on energies and forces (gradient-domain kernel regression).

    python benchmarks/md17_energy_forces.py --data PATH/md17_ethanol_2000.npz --n-train 50 100 \\
        --n-val-used 40 --n-test 100 --seeds 0 --oversampling 8 --out benchmarks/results/md17_energy_forces.json
    python benchmarks/md17_energy_forces.py --data PATH/md17_ethanol_2000.npz --n-train 50 100 \\
        --n-val-used 40 --n-test 100 --seeds 0 --networks mlp --out benchmarks/results/md17_energy_forces_mlp.json

Variant (b) of issue 14. The energy model is a Gaussian-process / kernel-ridge posterior mean
with the molecular same-element kernel ``k(R, R')`` of the `eqntk qm9` default SO(3) network
(float64), observed through the energies *and* the forces ``F = −∂E/∂R`` of the training
conformations: the joint Gram of :func:`eqntk.forces.energy_force_gram` (``N (1 + 3n)`` rows:
``k``, ``−∂k/∂R'``, ``∂²k/∂R∂R'`` blocks), regularised block-wise (a relative ridge times the
mean diagonal of the energy block on energy rows and of the force block on force rows), solved
for the coefficients ``(α, β)``. Test energies and forces (``E(R) = Σ α_b k(R, R_b) − Σ β_b · ∂k/∂R_b``,
``F = −∂E/∂R``) come from the test–training Gram for the SO(3) network (its blocks by the Fourier-side
derivatives of :mod:`eqntk.so3.derivatives`) and from :func:`eqntk.forces.energy_force_predict` for
the MLP (:func:`eqntk.experiments.md17.energy_force_curve`).

Splits: those of ``eqntk md17`` and the other two variants (:func:`eqntk.experiments.md17.split`
with ``--n-val 200``): the same fixed test conformations (here the first ``--n-test`` of them)
and, per seed, the same nested training sets. The relative ridge is chosen on the force MAE of
the first ``--n-val-used`` validation conformations (their cross Gram against the training set
is computed whole); test conformations are never used for a choice. Energies are centred on the
training mean. MAEs: energy per conformation, forces per Cartesian component, kcal/mol(/Å) and
meV(/Å). The cost of each Gram per pair of conformations is recorded.

``--networks mlp``: the same regression with the kernel of ``Dense → Rbf → Dense`` on the flattened
environments (``eqntk qm9``'s non-equivariant baseline). ``--oversampling``: the pool's quadrature;
the force–force blocks need far more than the energies (``md17_force_kernel_accuracy.py``).
"""

from __future__ import annotations

import argparse
import os
import sys

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import qm9_experiment as qx  # noqa: E402

import eqntk.data as D  # noqa: E402
from eqntk.experiments import md17, qm9  # noqa: E402
from eqntk.experiments.common import environment_info, write_json  # noqa: E402
from eqntk.forces import conformation_kernel  # noqa: E402
from md17_forces import ANCHORS, summarise  # noqa: E402


#: relative ridges (block-wise, see the module docstring)
RIDGES = (1e-10, 1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
#: the Gram's accuracy: the SO3Pool quadrature (k(R, R') = k(R', R) to ~1e-6 relative, docs/forces.md)
PSD_RTOL = 1e-4


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="md17_ethanol_2000.npz (z, R, E, F)")
    p.add_argument("--n-train", type=int, nargs="+", default=[50, 100, 200])
    p.add_argument("--n-val", type=int, default=200, help="validation conformations of the split (as variants a, c)")
    p.add_argument("--n-val-used", type=int, default=50, help="of which used to choose the ridge")
    p.add_argument("--n-test", type=int, default=200, help="the first of the 500 fixed test conformations")
    p.add_argument("--n-test-split", type=int, default=500, help="test conformations of the split (as variants a, c)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--test-seed", type=int, default=0)
    p.add_argument("--kinds", nargs="+", choices=["ntk", "nngp"], default=["ntk", "nngp"])
    p.add_argument("--batch", type=int, default=4, help="conformations per Gram tile side")
    p.add_argument("--networks", nargs="+", choices=["so3", "mlp"], default=["so3"],
                   help="so3: the eqntk qm9 SO(3) GCNN; mlp: Dense -> Rbf -> Dense on the flattened environments "
                        "(qm9's 'mlp', not rotation invariant)")
    p.add_argument("--gamma", type=float, default=0.5, help="Rbf's inverse squared length scale (the qm9 default)")
    p.add_argument("--energy-ratios", type=float, nargs="+", default=[1.0], metavar="RHO",
                   help="the energy rows' ridge relative to the force-chosen one, chosen on validation energies "
                        "(e.g. 1e-5 1e-4 1e-3 1e-2 0.1 1; default 1: energy rows regularised like force rows)")
    p.add_argument("--force-rtol", type=float, default=None, metavar="TOL",
                   help="only ratios whose validation force MAE is within (1 + TOL) of ratio 1's are eligible "
                        "(e.g. 0.01; default: no guard). The JSON keeps every ratio's validation and test MAEs")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=V",
                   help="other settings of the environments and the network, as qm9_experiment.py's (e.g. n_radial=16 "
                        "bandlimit=6 width=0.3); chosen on validation conformations (docs/forces.md)")
    p.add_argument("--oversampling", type=float, default=8.0,
                   help="SO3Pool quadrature oversampling (4, the qm9 default, leaves ~1e-5 relative error in the "
                        "force-force blocks: too much for this Gram; 8 is exact to ~1e-11)")
    p.add_argument("--store", default=None,
                   help="a directory keeping every finished Gram tile (per seed and kernel), so that an interrupted "
                        "run resumes where it stopped (eqntk.forces.energy_force_gram(store=...))")
    p.add_argument("--out", default="benchmarks/results/md17_energy_forces.json")
    args = p.parse_args(argv)

    d = D.load_md17(args.data)
    z, R, E, F = d["z"], d["R"], d["E"], d["F"]
    n_conf, n_at = R.shape[0], z.size
    settings = qx._parse_assignments(args.set, multi=False)
    if {"gamma", "oversampling"} & set(settings):
        raise SystemExit("md17_energy_forces.py: give gamma and oversampling as --gamma, --oversampling")
    cfg = qm9.QM9Config(gamma=args.gamma, oversampling=args.oversampling, kernels=tuple(args.networks), **settings)
    cfg.validate()
    spec = cfg.environment_spec()
    kernels = {net: kf for net, (kf, _) in qm9.networks(cfg, 0).items()}
    ms = D.MoleculeSet.from_counts(np.full(n_conf, n_at), np.tile(z, n_conf), R.reshape(-1, 3))
    x_all = D.atomic_environments(ms, spec)
    env0 = D.environment_fn(z, spec)
    rows, seconds, cost = [], {}, {}
    n_max = max(args.n_train)
    for seed in args.seeds:
        test, val, train = md17.split(n_conf, args.n_test_split, args.n_val, n_max, seed, args.test_seed)
        test, val = test[:args.n_test], val[:args.n_val_used]
        pool = np.concatenate([val, train])
        atoms = (pool[:, None] * n_at + np.arange(n_at)).ravel()
        scale = 1.0 / np.sqrt(qm9.lift_variance(x_all[atoms]))  # from training/validation data only

        def env(Rm, scale=scale):  # (n, 3) Å -> (n, L², C)
            return env0(Rm) * scale

        def flat_env(Rm, scale=scale):  # (n, 3) Å -> (n, L² C), the MLP's input
            return (env0(Rm) * scale).reshape(n_at, -1)

        ks = {f"{net}_{kind}": conformation_kernel(kernels[net], z, env if net == "so3" else flat_env, get=kind)
              for net in args.networks for kind in args.kinds}
        for name, k in ks.items():
            store = None if args.store is None else os.path.join(args.store, f"seed{seed}")
            rs, sec = md17.energy_force_curve({name: k}, R, E, F, train, val, test, args.n_train, RIDGES,
                                              psd_rtol=PSD_RTOL, batch=args.batch, progress=True, store=store,
                                              energy_ratios=args.energy_ratios, force_rtol=args.force_rtol,
                                              log=lambda m, seed=seed: print(f"seed {seed} {m}", flush=True))
            for r in rs:
                r.update(seed=seed, variant="energy + force trained", gamma=args.gamma,
                         val_force_mae_meV_A=r["val_force_mae"] * md17.KCAL_MOL_IN_MEV,
                         val_energy_mae_meV=r["val_energy_mae"] * md17.KCAL_MOL_IN_MEV)
            rows += rs
            seconds.update({f"seed{seed}_{key}": v for key, v in sec.items() if not key.endswith("_per_pair")})
            cost.update({key: v for key, v in sec.items() if key.endswith("_per_pair")})
            write_json(args.out, _result(args, rows, seconds, cost, spec))
    write_json(args.out, _result(args, rows, seconds, cost, spec))
    print(f"wrote {args.out}")


def _result(args, rows, seconds, cost, spec) -> dict:
    summary = summarise(rows, args.n_train, ("energy_mae_meV", "force_mae_meV_A"))
    return {"experiment": "md17_energy_forces", "args": {**vars(args), "data": os.path.basename(args.data)},
            "networks": {"so3": "eqntk qm9 default (S2ConvSO3 -> Rbf(gamma) -> SO3Pool -> Dense)",
                         "mlp": "Dense -> Rbf(gamma) -> Dense on the flattened environments"},
            "float": "float64", "environments": repr(spec),
            "gram_route": "so3: Fourier-side derivatives (eqntk.so3.derivatives) since stop 28, autodiff before; "
                          "mlp: autodiff",
            "results": summary, "per_seed": rows, "anchors": ANCHORS, "seconds": seconds,
            "cost_per_conformation_pair_s": cost, "load_average_end": harness.load_average(),
            "environment": environment_info()}


if __name__ == "__main__":
    sys.exit(main())
