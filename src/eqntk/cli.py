"""The ``eqntk`` command (argument parsing only; the work is in :mod:`eqntk.experiments`).

* ``eqntk qm9``: QM9 atomization energies by kernel regression with the SO(3) GCNN NTK/NNGP
  and an MLP baseline (learning curve, table, JSON, PNG).
* ``eqntk digits``: rotated-digits classification with CNN, p4 and p4m NTKs.
* ``eqntk md17``: forces of MD17-style data, from the equivariant l = 1 matrix kernel or from an energy model
  trained on energies and forces (``--model energy-forces``).
* ``eqntk demo``: the exact SO(3) GCNN NNGP/NTK of a small embedded set of spherical signals
  and a check of its rotation invariance.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def _enable_dtype(dtype: str):
    import jax

    jax.config.update("jax_enable_x64", dtype == "float64")


def _enable_x64():
    """Kernel regressions are solved in float64; kernels still run in the dtype of their inputs."""
    import jax

    jax.config.update("jax_enable_x64", True)


def _select_device(device: str):
    import jax

    if device == "gpu":
        try:
            jax.devices("gpu")
        except RuntimeError:
            raise SystemExit("eqntk: error: --device gpu, but JAX sees no GPU on this machine "
                             "(install jax[cuda12] or use --device cpu)") from None
        jax.config.update("jax_default_device", jax.devices("gpu")[0])
    else:
        jax.config.update("jax_platforms", "cpu")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    def _get_help_string(self, action):
        if action.dest == "same_element":  # a flag pair: its help says which is the default
            return action.help
        return super()._get_help_string(action)


def _positive_int(name):
    def f(s):
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a positive integer, got {s!r}") from None
        if v < 1:
            raise argparse.ArgumentTypeError(f"{name} must be a positive integer, got {s!r}")
        return v

    return f


def _finite_float(name, positive: bool):
    """A finite float ``>= 0`` (``> 0`` with ``positive``); the message names the bound."""
    bound = "> 0" if positive else ">= 0"

    def f(s):
        try:
            v = float(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {s!r}") from None
        if not ((v > 0 if positive else v >= 0) and v < float("inf")):
            raise argparse.ArgumentTypeError(f"{name} must be a finite number {bound}, got {s!r}")
        return v

    return f


def _nonneg_float(name):
    return _finite_float(name, positive=False)


def _positive_float(name):
    return _finite_float(name, positive=True)


def _run_experiment(module, cfg, out_dir: str, stem: str) -> int:
    print(f"results will be written to {os.path.abspath(out_dir)}/")
    try:
        result = module.run(cfg)
    except (ValueError, FileNotFoundError, ImportError) as e:
        print(f"eqntk: error: {e}", file=sys.stderr)
        return 2
    module.print_summary(result)
    json_path, png_path = module.save(result, out_dir, stem)
    print(f"wrote {json_path}")
    from .experiments.common import PLOT_SKIPPED

    print(PLOT_SKIPPED if png_path is None else f"wrote {png_path}")
    return 0


def cmd_qm9(args) -> int:
    _select_device(args.device)
    _enable_x64()
    from .experiments import qm9

    kernels = ("so3", "mlp") if args.kernel == "both" else (args.kernel,)
    cfg = qm9.QM9Config(
        n_train=tuple(args.n_train), n_val=args.n_val, n_test=args.n_test, bandlimit=args.bandlimit,
        kernels=kernels, target=args.target, same_element=args.same_element, ridges=tuple(args.ridge),
        seed=args.seed, test_seed=args.test_seed, w_std=args.w_std, oversampling=args.oversampling,
        radial=args.radial, n_radial=args.n_radial, radial_scaling=args.radial_scaling, cutoff=args.cutoff,
        nonlinearity=args.nonlinearity, gamma=args.gamma, normalize=args.normalize,
        dtype=args.dtype, source=args.data, store=args.store, progress=not args.no_progress,
        landmarks=args.landmarks, rtol=args.rtol,
    )
    return _run_experiment(qm9, cfg, args.out, "qm9")


def cmd_digits(args) -> int:
    _select_device(args.device)
    _enable_x64()
    from .experiments import digits

    cfg = digits.DigitsConfig(
        n_train=tuple(args.n_train), n_val=args.n_val, n_test=args.n_test, networks=tuple(args.network),
        rotation=args.rotation, rotate_train=args.rotate_train, depth=args.depth, ridges=tuple(args.ridge),
        seed=args.seed, dtype=args.dtype, path=args.data, progress=not args.no_progress,
    )
    return _run_experiment(digits, cfg, args.out, "digits")


def cmd_md17(args) -> int:
    _select_device(args.device)
    _enable_x64()
    from .experiments import md17

    try:
        cfg = md17.MD17Config(source=args.data, model=args.model, n_train=args.n_train and tuple(args.n_train),
                              n_val=args.n_val, n_test=args.n_test,
                              seed=args.seed, test_seed=args.test_seed, bandlimit=args.bandlimit,
                              oversampling=args.oversampling, dtype=args.dtype, ridges=tuple(args.ridge),
                              progress=not args.no_progress, store=args.store,
                              energy_ratios=tuple(args.energy_ratios), force_rtol=args.force_rtol)
    except ValueError as e:
        print(f"eqntk: error: {e}", file=sys.stderr)
        return 2
    return _run_experiment(md17, cfg, args.out, "md17")


def cmd_demo(args) -> int:
    _enable_dtype(args.dtype)
    import numpy as np
    import jax
    import jax.numpy as jnp

    from . import stax
    from .so3.wigner import random_rotation, rotate_coeffs

    L = args.bandlimit
    rng = np.random.default_rng(0)
    n, C = args.n, 2
    # smooth random spherical signals: coefficient variance decaying with degree
    decay = np.repeat(1.0 / (1.0 + np.arange(L)) ** 1.5, 2 * np.arange(L) + 1)
    x = rng.normal(size=(n, L * L, C)) * decay[None, :, None]
    dt = jnp.float64 if args.dtype == "float64" else jnp.float32
    x = jnp.asarray(x, dt)

    _, _, kernel_fn = stax.serial(
        stax.S2ConvSO3(64, L), stax.Erf(), stax.SO3ConvSO3(64, max(L // 2, 1)), stax.Erf(),
        stax.SO3Pool(), stax.Dense(1),
    )
    print(f"eqntk demo: {n} spherical signals, bandlimit {L}, {C} channels, dtype {args.dtype}")
    print("network: S2ConvSO3 → Erf → SO3ConvSO3 → Erf → SO3Pool → Dense")
    t0 = time.perf_counter()
    k = kernel_fn(x)
    k.ntk.block_until_ready()
    t1 = time.perf_counter()
    a, b, g = random_rotation(jax.random.PRNGKey(1), (n,), dtype=dt)
    kr = kernel_fn(rotate_coeffs(x, a, b, g))
    dev = float(jnp.max(jnp.abs(kr.ntk - k.ntk)) / jnp.max(jnp.abs(k.ntk)))
    ev = np.linalg.eigvalsh(np.asarray(k.ntk, np.float64))
    print(f"{'quantity':<36}{'value':>14}")
    print(f"{'Gram size':<36}{f'{n} x {n}':>14}")
    print(f"{'time (incl. compile) [s]':<36}{t1 - t0:>14.2f}")
    print(f"{'mean NNGP diagonal':<36}{float(jnp.mean(jnp.diag(k.nngp))):>14.5f}")
    print(f"{'mean NTK diagonal':<36}{float(jnp.mean(jnp.diag(k.ntk))):>14.5f}")
    print(f"{'NTK eigenvalues min / max':<36}{f'{ev[0]:.2e} / {ev[-1]:.2e}':>14}")
    print(f"{'rotation invariance (rel. dev.)':<36}{dev:>14.1e}")
    return 0


QM9_HELP = """\
Predict QM9 atomization energies (in eV; errors in meV) by kernel ridge regression with the
exact infinite-width kernels of two networks applied to each atom's environment:

  so3  SO(3) group-convolutional network: S2ConvSO3 -> Rbf -> SO3Pool -> Dense, NTK and NNGP
       (rotation invariant: rotating a molecule does not change its kernel);
  mlp  a plain MLP (Dense -> Rbf -> Dense) on the same spherical-harmonic coefficients,
       NTK and NNGP (not rotation invariant; the baseline).

Each atom's environment is a neighbour density on the sphere: per neighbour element, 8
Gaussians in the distance (0.5 to 5 A, weighted by r^-2) times a smeared bump in the
direction. Rbf (the activation sqrt(2) sin(sqrt(2 gamma) x + pi/4)) makes the pooled kernel
the rotation-integrated Gaussian kernel of two such densities. These defaults were chosen on
validation molecules (docs/experiments.md); --nonlinearity erf --radial powers gives the
paper's network.

A molecule's kernel is the sum of its atoms' kernels (energy = sum of atomic terms). The
targets minus a per-element linear fit are regressed; the ridge is picked on a validation
split for each kernel and training-set size. By default the 5,000-molecule QM9 subset
shipped with eqntk is used (--data for other sources) and the run takes a few minutes on a
2-core CPU. Prints a table and writes qm9.json and qm9_learning_curve.png to --out.

examples:
  eqntk qm9                                   # default learning curve N = 50, 100, 200
  eqntk qm9 --n-train 50 100 --n-test 100 --kernel so3
  eqntk qm9 --n-train 1000 2000 --store qm9_tiles   # long: resumable after interruption
"""

DIGITS_HELP = """\
Classify handwritten 8x8 digits (scikit-learn's 1,797) by kernel regression on one-hot
labels with the exact NTKs of a CNN, a p4-equivariant GCNN (rotations by 90 degrees) and a
p4m-equivariant GCNN (rotations and mirrors), all ending in a global pool and Dense. Training
images are upright; test images are rotated by random multiples of 90 degrees (--rotation
rot90) or by arbitrary angles (--rotation continuous). The GCNN kernels are invariant to
quarter turns, the CNN's is not. Prints an accuracy table and writes digits.json and
digits_accuracy.png to --out.

Default data: the copy of scikit-learn's digits shipped with eqntk (scikit-learn is not
needed); --data takes the path of another .npz with keys X (N, 8, 8) and y (N,).
"""


def _add_common(q, out_default):
    q.add_argument("--seed", type=int, default=0, help="seed of the train/validation split")
    q.add_argument("--out", default=out_default, metavar="DIR", help="output folder (JSON, PNG)")
    q.add_argument("--device", choices=["cpu", "gpu"], default="cpu", help="where JAX computes the kernels")
    q.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                   help="dtype of the kernel computation (the regressions always run in float64)")
    q.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_qm9(sub):
    from .experiments.common import DEFAULT_RIDGES
    from .experiments.qm9 import QM9Config as _QM9

    q = sub.add_parser("qm9", help="QM9 atomization energies: SO(3) GCNN vs MLP kernels (learning curve)",
                       description=QM9_HELP, formatter_class=_Formatter)
    q.add_argument("--n-train", type=_positive_int("--n-train"), nargs="+", default=[50, 100, 200], metavar="N",
                   help="training-set sizes of the learning curve (nested subsets)")
    q.add_argument("--n-val", type=_positive_int("--n-val"), default=50, metavar="N",
                   help="validation molecules (choose the ridge)")
    q.add_argument("--n-test", type=_positive_int("--n-test"), default=200, metavar="N", help="test molecules")
    q.add_argument("--bandlimit", type=_positive_int("--bandlimit"), default=4, metavar="L",
                   help="spherical-harmonic degrees l < L of the atomic environments and of the SO(3) lift")
    q.add_argument("--kernel", choices=["so3", "mlp", "both"], default="both", help="which networks")
    q.add_argument("--target", choices=["U0", "U", "H", "G"], default="U0",
                   help="QM9 energy whose atomization energy is predicted")
    pairs = q.add_mutually_exclusive_group()
    pairs.add_argument("--same-element", dest="same_element", action="store_true", default=argparse.SUPPRESS,
                       help="molecular kernel sums only pairs of atoms of the same element (the default; "
                            "~2.5x faster than --all-pairs)")
    pairs.add_argument("--all-pairs", dest="same_element", action="store_false", default=argparse.SUPPRESS,
                       help="molecular kernel sums all pairs of atoms")
    q.set_defaults(same_element=True)
    q.add_argument("--ridge", type=_nonneg_float("--ridge"), nargs="+", default=list(DEFAULT_RIDGES), metavar="R",
                   help="ridge grid, relative to the mean diagonal of the training kernel; the best on the "
                        "validation split is used")
    q.add_argument("--w-std", type=float, default=1.0, help="weight std of the first layer (input scale)")
    q.add_argument("--radial", choices=["gaussian", "bessel", "powers"], default=_QM9.radial,
                   help="radial basis of the environments per neighbour element (powers: r^-1, r^-2, r^-3)")
    q.add_argument("--n-radial", type=_positive_int("--n-radial"), default=_QM9.n_radial, metavar="K",
                   help="radial functions per element (gaussian, bessel)")
    q.add_argument("--radial-scaling", type=_nonneg_float("--radial-scaling"), default=_QM9.radial_scaling,
                   metavar="Q", help="weight r^-Q of the gaussian/bessel radial functions")
    q.add_argument("--cutoff", type=_positive_float("--cutoff"), default=_QM9.cutoff, metavar="ANGSTROM",
                   help="neighbour cutoff radius")
    q.add_argument("--nonlinearity", choices=["rbf", "erf", "relu"], default=_QM9.nonlinearity,
                   help="activation of both networks")
    q.add_argument("--gamma", type=_positive_float("--gamma"), default=_QM9.gamma,
                   help="Rbf's inverse squared length scale, in units of the (normalised) pre-activation variance")
    norm = q.add_mutually_exclusive_group()
    norm.add_argument("--normalize", dest="normalize", action="store_true", default=argparse.SUPPRESS,
                      help="scale the environments so that the mean lift variance of the training and validation "
                           "molecules is 1")
    norm.add_argument("--no-normalize", dest="normalize", action="store_false", default=argparse.SUPPRESS,
                      help="use the environments as they are")
    q.set_defaults(normalize=_QM9.normalize)
    q.add_argument("--oversampling", type=float, default=_QM9.oversampling,
                   help="SO3Pool quadrature oversampling (default network: relative NTK error ~3e-6 at 4, ~2e-5 at "
                        "3, which makes the NTK Gram indefinite at the ridges the fit wants; Erf networks need less)")
    q.add_argument("--test-seed", type=int, default=0, help="seed of the test set (fixed across --seed)")
    q.add_argument("--data", default=None, metavar="SOURCE",
                   help="QM9 source: omitted = the embedded 5k subset; 'qm9pack' = full QM9 "
                        "(pip install 'eqntk[qm9]'); or an .npz file")
    q.add_argument("--store", default=None, metavar="DIR",
                   help="keep finished kernel tiles here; re-running the same command resumes from them")
    q.add_argument("--rtol", type=_positive_float("--rtol"), default=None, metavar="R",
                   help="choose the SO3Pool oversampling (overriding --oversampling) so that the atom kernel's "
                        "estimated relative error on 16 training atoms is at most R (eqntk.core.accuracy)")
    q.add_argument("--landmarks", type=_positive_int("--landmarks"), default=None, metavar="M",
                   help="landmark (Nystrom) regression on M atoms of the training molecules: only molecule x "
                        "landmark and landmark x landmark kernels are computed (cost ~ N atoms x M instead of N^2)")
    _add_common(q, "eqntk_output/qm9")
    q.set_defaults(func=cmd_qm9)


def _add_digits(sub):
    from .experiments.common import DEFAULT_RIDGES

    q = sub.add_parser("digits", help="rotated 8x8 digits: CNN vs p4 vs p4m NTK classification",
                       description=DIGITS_HELP, formatter_class=_Formatter)
    q.add_argument("--n-train", type=_positive_int("--n-train"), nargs="+", default=[50, 100, 200], metavar="N",
                   help="training-set sizes (nested subsets)")
    q.add_argument("--n-val", type=_positive_int("--n-val"), default=50, metavar="N",
                   help="validation images (choose the ridge; rotated like the test images)")
    q.add_argument("--n-test", type=_positive_int("--n-test"), default=200, metavar="N", help="test images")
    q.add_argument("--network", choices=["cnn", "p4", "p4m"], nargs="+", default=["cnn", "p4", "p4m"],
                   help="networks to compare")
    q.add_argument("--rotation", choices=["rot90", "continuous", "none"], default="rot90",
                   help="test-image rotations: random multiples of 90 degrees, arbitrary angles, or none")
    q.add_argument("--rotate-train", action="store_true", help="rotate the training images the same way")
    q.add_argument("--depth", type=_positive_int("--depth"), default=1,
                   help="convolution + ReLU blocks before the pool (each costs ~3x more)")
    q.add_argument("--ridge", type=_nonneg_float("--ridge"), nargs="+", default=list(DEFAULT_RIDGES), metavar="R",
                   help="ridge grid, relative to the mean diagonal of the training kernel")
    q.add_argument("--data", default=None, metavar="NPZ",
                   help="digits .npz (keys X, y); default: the digits shipped with eqntk")
    _add_common(q, "eqntk_output/digits")
    q.set_defaults(func=cmd_digits)


MD17_HELP = """Forces of conformations of one molecule (MD17 style: an .npz with z, R, F and, for
--model energy-forces, E), learning curves over nested training sets, the ridge chosen on
validation conformations. Prints a table of test MAEs for the NTK and NNGP, writes md17.json and
md17_learning_curve.png.

--model vector (default): per-atom force vectors by kernel ridge regression with the equivariant
l = 1 matrix kernel of S2ConvSO3 -> Rbf -> SO3ConvSO3(., 2), one regression per element
(defaults: N = 50 100 200, 50 validation, 200 test conformations).

--model energy-forces: the energy model of the eqntk qm9 SO(3) network (S2ConvSO3 -> Rbf ->
SO3Pool -> Dense) trained on the energies and forces of the training conformations (its joint
energy-force Gram, its derivatives taken on the Fourier side); test energies and forces F = -dE/dR.
Its force-force blocks need a finer quadrature (default oversampling 8, against 6 for the vector
model); about 10 ms per pair of conformations on a 2-core CPU, hence smaller defaults: N = 25 50,
20 validation, 50 test conformations. Long runs: --store DIR keeps every finished tile, and the
same command run again resumes from them.

Without --data it runs on the 500 MD17 ethanol conformations shipped with eqntk
(eqntk.data.load_md17(); energies in kcal/mol, forces in kcal/mol/Angstrom):
  eqntk md17 --n-train 50 100 200 --n-val 50 --n-test 200
  eqntk md17 --model energy-forces --n-train 25 50
"""


def _add_md17(sub):
    import dataclasses

    from .experiments.md17 import MODELS, MD17Config

    default = {f.name: f.default for f in dataclasses.fields(MD17Config)}

    q = sub.add_parser("md17", help="MD17-style forces: l = 1 matrix kernel or energy + force training",
                       description=MD17_HELP, formatter_class=_Formatter)
    q.add_argument("--data", default=None, metavar="NPZ",
                   help="conformations of one molecule: z (n_atoms,), R (B, n_atoms, 3) in Angstrom, F (B, n_atoms, 3) "
                        "(default: the embedded MD17 ethanol subset)")
    q.add_argument("--model", choices=MODELS, default=default["model"],
                   help="vector: l = 1 matrix kernel for per-atom forces; energy-forces: an energy model trained on "
                        "energies and forces (see above)")
    q.add_argument("--n-train", type=_positive_int("--n-train"), nargs="+", default=None, metavar="N",
                   help="training conformations of the learning curve (nested subsets; default per --model, above)")
    q.add_argument("--n-val", type=_positive_int("--n-val"), default=None, metavar="N",
                   help="validation conformations, which choose the ridge (default per --model)")
    q.add_argument("--n-test", type=_positive_int("--n-test"), default=None, metavar="N",
                   help="test conformations (default per --model)")
    q.add_argument("--test-seed", type=int, default=default["test_seed"],
                   help="seed of the test set (fixed across --seed)")
    q.add_argument("--bandlimit", type=_positive_int("--bandlimit"), default=default["bandlimit"], metavar="L",
                   help="spherical-harmonic degrees l < L of the atomic environments and of the lift")
    q.add_argument("--oversampling", type=_positive_float("--oversampling"), default=None,
                   help="quadrature oversampling of the final SO3ConvSO3 (vector, default 6) or of the SO3Pool "
                        "(energy-forces, default 8); the kernel's accuracy limits the fit")
    q.add_argument("--ridge", type=_nonneg_float("--ridge"), nargs="+", default=list(default["ridges"]), metavar="R",
                   help="ridge grid, relative to the mean diagonal of the training kernel")
    q.add_argument("--energy-ratios", type=_positive_float("--energy-ratios"), nargs="+",
                   default=list(default["energy_ratios"]), metavar="RHO",
                   help="energy-forces: the energy rows' ridge relative to the force-chosen one, chosen on validation "
                        "energies (e.g. 1e-4 1e-3 1e-2 0.1 1; default 1: regularised like the force rows)")
    q.add_argument("--force-rtol", type=_nonneg_float("--force-rtol"), default=default["force_rtol"], metavar="TOL",
                   help="energy-forces: only the ratios whose validation force MAE is within (1 + TOL) of ratio 1's "
                        "are eligible (e.g. 0.01; default: all)")
    q.add_argument("--store", default=None, metavar="DIR",
                   help="keep finished kernel tiles here; re-running the same command resumes from them")
    _add_common(q, "eqntk_output/md17")
    q.set_defaults(dtype=default["dtype"])
    q.set_defaults(func=cmd_md17)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="eqntk",
        description="Exact infinite-width kernels (NNGP, NTK) of group-convolutional networks.",
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="SO(3) GCNN kernel of embedded spherical signals, with an invariance check")
    d.add_argument("--n", type=int, default=32, help="number of signals (default 32)")
    d.add_argument("--bandlimit", type=int, default=6, help="input and lift bandlimit L (default 6)")
    d.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    d.set_defaults(func=cmd_demo)
    _add_qm9(sub)
    _add_digits(sub)
    _add_md17(sub)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
