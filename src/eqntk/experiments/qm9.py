r"""QM9 atomization-energy kernel regression with exact infinite-width kernels.

Model: a molecule's energy is a sum of atomic terms, so its kernel is
``K(M, M') = Σ_{i∈M} Σ_{j∈M'} k(a_i, a'_j)`` (only pairs of atoms of the same element with
``same_element=True``), where ``a_i`` is atom ``i``'s environment as a spherical signal
(:func:`eqntk.data.atomic_environments`: a neighbour density on S², per neighbour element
``n_radial`` Gaussians in the distance weighted by ``r^-radial_scaling``; or the paper's distance
powers, ``radial='powers'``) and ``k`` the kernel of an infinite-width network on it:

* ``so3``: ``S2ConvSO3(·, L) → σ → SO3Pool → Dense(1)``, the SO(3) GCNN; its NTK and its
  NNGP (both come out of one evaluation). Rotation invariant. With ``σ = Rbf(γ)`` (the default)
  the pooled NNGP is the rotation-integrated Gaussian kernel ``∫ exp(−γ c |a − g·a'|²) dg``
  of the two densities; ``σ = Erf`` is the paper's network.
* ``mlp``: ``Dense → σ → Dense(1)`` on the flattened coefficients (``L² · C`` numbers): the
  same information, but not rotation invariant (baseline). NTK and NNGP.

The defaults (Gaussian radial basis, 8 per element, ``r^-2``, Rbf with γ = 0.5 on normalised
environments) were selected on validation molecules (``benchmarks/qm9_experiment.py select``,
docs/experiments.md).

Targets: atomization energies (QM9's atomrefs) in eV, minus a per-element linear baseline
("dressed atoms": least squares on the element counts, fitted on the training molecules);
the kernels regress the remainder. Errors are reported in meV.

Splits: a test set drawn with ``test_seed`` (fixed across ``seed``\ s), then a validation set and
a pool of training molecules drawn from the rest with ``seed``. The training sets of the
learning curve are nested prefixes of the pool. One symmetric Gram over (validation + pool) and
one test × (validation + pool) Gram give every point of the curve. The relative ridge is
chosen on the validation set for each kernel and training size, from a small grid.

:func:`run` does everything and returns a JSON-ready dict; :func:`molecular_grams` and
:func:`evaluate_curve` are the reusable steps (the benchmark scripts call them on larger pools
with a resumable tile store).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional, Sequence

import numpy as np

from .common import save_figure, DEFAULT_RIDGES, Timer, environment_info, format_table, \
    plot_if_available, psd_tolerance, pyplot, select_ridge, write_json, x64_enabled

__all__ = ["QM9Config", "KERNEL_LABELS", "networks", "molecular_grams", "element_baseline", "evaluate_curve",
           "evaluate_curve_landmarks", "split_qm9", "run", "print_summary", "plot_curve"]

ENERGY_TARGETS = ("U0", "U", "H", "G")
NONLINEARITIES = ("erf", "relu", "rbf")

#: Row labels of the kernels; keys are ``<network>_<nngp|ntk>``.
KERNEL_LABELS = {
    "so3_ntk": "SO(3) GCNN NTK",
    "so3_nngp": "SO(3) GCNN NNGP",
    "mlp_ntk": "MLP-on-signals NTK",
    "mlp_nngp": "MLP-on-signals NNGP",
}


@dataclasses.dataclass
class QM9Config:
    """Settings of :func:`run` (the defaults are those of ``eqntk qm9``)."""

    n_train: Sequence[int] = (50, 100, 200)
    n_val: int = 50
    n_test: int = 200
    bandlimit: int = 4
    kernels: Sequence[str] = ("so3", "mlp")
    target: str = "U0"
    same_element: bool = True
    ridges: Sequence[float] = DEFAULT_RIDGES
    seed: int = 0
    test_seed: int = 0
    w_std: float = 1.0          # weight std of the first layer (input scale of the nonlinearity)
    mlp_w_std: Optional[float] = None  # first-layer W_std of the MLP (default: w_std · √(L²·C / (4π C)))
    oversampling: float = 4.0   # SO3Pool quadrature (default network, its point rule: NTK error 3.2e-6 at 4, 2.4e-5 at 3; qm9_oversampling_rbf.json)
    powers: Sequence[float] = (1.0, 2.0, 3.0)
    radial: str = "gaussian"    # radial basis of the environments: 'powers', 'gaussian', 'bessel'
    n_radial: int = 8           # radial functions per element ('gaussian', 'bessel')
    radial_scaling: float = 2.0  # their extra weight r^-q
    r_min: float = 0.5          # first Gaussian centre, Å
    cutoff: float = 5.0
    width: float = 0.5
    nonlinearity: str = "rbf"   # 'rbf' (Rbf(gamma): the Gaussian kernel), 'erf' or 'relu
    gamma: float = 0.5          # Rbf's inverse squared length scale (nonlinearity='rbf')
    normalize: bool = True      # scale the environments so that their mean lift variance is 1 (pool only)
    dtype: str = "float32"      # dtype of the kernel computation (regression: float64 when x64 is on)
    source: Optional[str] = None  # None: embedded 5k subset; 'qm9pack'; a path
    landmarks: Optional[int] = None  # Nyström regression on this many landmark atoms of the training molecules
    rtol: Optional[float] = None  # choose the SO3Pool oversampling for this accuracy on training atoms (overrides it)
    tile: int = 128
    store: Optional[str] = None
    progress: Optional[bool] = None

    def validate(self):
        n_train = [int(n) for n in self.n_train]
        if not n_train or any(n < 2 for n in n_train):
            raise ValueError(f"n_train must be one or more integers >= 2, got {list(self.n_train)!r}")
        if self.n_val < 1 or self.n_test < 1:
            raise ValueError(f"n_val and n_test must be >= 1, got {self.n_val}, {self.n_test}")
        if self.bandlimit < 1:
            raise ValueError(f"bandlimit must be >= 1, got {self.bandlimit}")
        bad = [k for k in self.kernels if k not in ("so3", "mlp")]
        if bad or not self.kernels:
            raise ValueError(f"kernels must be 'so3' and/or 'mlp', got {list(self.kernels)!r}")
        if self.target not in ENERGY_TARGETS:
            raise ValueError(f"target must be one of {ENERGY_TARGETS} (atomization energies), got {self.target!r}")
        if not self.ridges or any(not (r >= 0 and np.isfinite(r)) for r in self.ridges):
            raise ValueError(f"ridges must be finite numbers >= 0, got {list(self.ridges)!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if not (self.w_std > 0):
            raise ValueError(f"w_std must be > 0, got {self.w_std}")
        if self.nonlinearity not in NONLINEARITIES:
            raise ValueError(f"nonlinearity must be one of {NONLINEARITIES}, got {self.nonlinearity!r}")
        if not (self.gamma > 0 and np.isfinite(self.gamma)):
            raise ValueError(f"gamma must be a finite number > 0, got {self.gamma}")
        if self.rtol is not None and not (np.isfinite(self.rtol) and 0 < self.rtol < 1):
            raise ValueError(f"rtol must be None or a number in (0, 1), got {self.rtol!r}")
        if self.landmarks is not None and not (isinstance(self.landmarks, (int, np.integer)) and self.landmarks >= 1):
            raise ValueError(f"landmarks must be None or an integer >= 1, got {self.landmarks!r}")
        self.environment_spec()  # the environment settings raise here, before any data is loaded
        self.n_train = tuple(sorted(set(n_train)))

    def environment_spec(self):
        """The :class:`eqntk.data.EnvironmentSpec` of these settings."""
        from ..data import EnvironmentSpec

        return EnvironmentSpec(bandlimit=self.bandlimit, cutoff=self.cutoff, width=self.width,
                               powers=tuple(self.powers), radial=self.radial, n_radial=self.n_radial,
                               radial_scaling=self.radial_scaling, r_min=self.r_min)

    def nonlinearity_layer(self):
        """The layer ``nonlinearity`` names (Erf(), Relu() or Rbf(gamma))."""
        from .. import stax

        return {"erf": stax.Erf, "relu": stax.Relu, "rbf": lambda: stax.Rbf(self.gamma)}[self.nonlinearity]()


def networks(cfg: QM9Config, n_channels: int) -> dict:
    """The ``kernel_fn`` of each requested network, and how its input is shaped."""
    from .. import stax

    out = {}
    L = cfg.bandlimit
    if "so3" in cfg.kernels:
        _, _, kf = stax.serial(stax.S2ConvSO3(256, L, W_std=cfg.w_std), cfg.nonlinearity_layer(),
                               stax.SO3Pool(oversampling=cfg.oversampling), stax.Dense(1))
        out["so3"] = (kf, lambda x: x)
    if "mlp" in cfg.kernels:
        # Same pre-activation variance as the SO(3) lift: its channel average is 1/(4π C) Σ |f̂|²,
        # Dense's is 1/(L² C) Σ f̂².
        w = cfg.mlp_w_std if cfg.mlp_w_std is not None else cfg.w_std * float(np.sqrt(L * L / (4 * np.pi)))
        _, _, kf = stax.serial(stax.Dense(256, W_std=w), cfg.nonlinearity_layer(), stax.Dense(1))
        out["mlp"] = (kf, lambda x: x.reshape(x.shape[0], -1))
    return out


def molecular_grams(kernel_fn, x1: np.ndarray, mol1, x2: Optional[np.ndarray] = None, mol2=None, *,
                    same_element: bool = True, tile: int = 128, block_atoms: int = 4096, store: Optional[str] = None,
                    progress: Optional[bool] = None, label: str = "", log=print) -> dict:
    """``{'nngp': K, 'ntk': Θ}`` molecular Grams ``(n_mol1, n_mol2)`` (float64) of an atom ``kernel_fn``.

    ``x2=None``: the symmetric Gram of the first set. The atom kernel is evaluated in blocks of
    at most ``block_atoms`` atoms (per element block with ``same_element``), each padded to a
    multiple of ``tile`` so one compilation serves all, and reduced to molecules as soon as it is
    computed (:func:`eqntk.data.molecular_kernel_fn`). ``store``: a directory for a resumable
    store of finished blocks.
    """
    from ..data import molecular_kernel_fn

    if log:
        n2 = mol1.n_atoms_total if mol2 is None else mol2.n_atoms_total
        log(f"  {label}{mol1.n_atoms_total} x {n2} atoms, {'same-element pairs' if same_element else 'all pairs'}")
    res = molecular_kernel_fn(kernel_fn, x1, mol1, x2, mol2, get=("nngp", "ntk"), same_element=same_element,
                              block_atoms=block_atoms, block_store=store, progress=progress, tile_size=tile)
    return {"nngp": res.nngp, "ntk": res.ntk}


def lift_variance(x: np.ndarray) -> float:
    """Mean over atoms of the lift's pre-activation variance at W_std = 1, ``Σ |f̂|² / (4π C)``; ``x``: (n, L², C)."""
    x = np.asarray(x, dtype=np.float64)
    return float(np.mean(np.sum(x**2, axis=(1, 2)))) / (4 * np.pi * x.shape[2])


def environments(cfg: QM9Config, pool, test=None, dtype=np.float32):
    """Atomic environments ``(x_pool, x_test)`` of ``cfg`` (``x_test`` None without ``test``).

    With ``cfg.normalize`` both are divided by ``√lift_variance(x_pool)``: one number, from the
    pool (training + validation molecules) only, so that ``w_std`` and ``gamma`` are in units of
    the data's own scale.
    """
    from .. import data as D

    spec = cfg.environment_spec()
    x_pool = D.atomic_environments(pool, spec, dtype=np.float64)
    x_test = None if test is None else D.atomic_environments(test, spec, dtype=np.float64)
    if cfg.normalize:
        s = 1.0 / np.sqrt(lift_variance(x_pool))
        x_pool = x_pool * s
        x_test = None if x_test is None else x_test * s
    return x_pool.astype(dtype), (None if x_test is None else x_test.astype(dtype))


def element_baseline(counts_train: np.ndarray, y_train: np.ndarray):
    """Least-squares per-element energies (no intercept); returns ``predict(counts)``."""
    coef, *_ = np.linalg.lstsq(counts_train, y_train, rcond=None)
    return lambda c: c @ coef


def element_counts(ms, elements=(1, 6, 7, 8, 9)) -> np.ndarray:
    """``(n_mol, n_elements)`` number of atoms of each element per molecule."""
    onehot = (ms.Z[:, None] == np.asarray(elements)[None, :]).astype(np.float64)
    return np.add.reduceat(onehot, ms.offsets[:-1], axis=0)


def split_qm9(n_total: int, n_pool: int, n_test: int, seed: int, test_seed: int):
    """``(test, rest)`` indices: test drawn with ``test_seed``; ``rest`` (first ``n_pool``) with ``seed``."""
    if n_pool + n_test > n_total:
        raise ValueError(f"the data set has {n_total} molecules, fewer than the {n_pool + n_test} requested "
                         f"({n_pool} train/validation + {n_test} test)")
    test = np.random.default_rng(test_seed).permutation(n_total)[:n_test]
    rest = np.setdiff1d(np.arange(n_total), test)
    rest = np.random.default_rng(seed).permutation(rest)[:n_pool]
    return test, rest


def _residuals(y_pool, y_test, c_pool, c_test, tr, val_idx):
    """Targets minus the per-element baseline fitted on the training molecules ``tr``: (train, val, test)."""
    base = element_baseline(c_pool[tr], y_pool[tr])
    return y_pool[tr] - base(c_pool[tr]), y_pool[val_idx] - base(c_pool[val_idx]), y_test - base(c_test)


def evaluate_curve(grams_pool: dict, grams_test: dict, y_pool: np.ndarray, y_test: np.ndarray,
                   c_pool: np.ndarray, c_test: np.ndarray, val_idx: np.ndarray, train_idx: np.ndarray,
                   n_train: Sequence[int], ridges: Sequence[float], prefix: str,
                   psd_rtol: Optional[float] = None) -> list:
    """Learning curve of one network from Grams over a pool (train/validation candidates) and a test set.

    ``grams_pool[kind]``: ``(P, P)``; ``grams_test[kind]``: ``(S, P)``. ``train_idx`` (nested
    prefixes give the training sets) and ``val_idx`` index the pool. Returns one dict per
    (kind, N) with MAE/RMSE in meV, the chosen ridge and the validation MAE.
    """
    rows = []
    for n in n_train:
        tr = train_idx[:n]
        r_tr, r_val, r_te = _residuals(y_pool, y_test, c_pool, c_test, tr, val_idx)
        for kind in ("ntk", "nngp"):
            K = grams_pool[kind]
            k_tr, k_val, k_te = K[np.ix_(tr, tr)], K[np.ix_(val_idx, tr)], grams_test[kind][:, tr]
            mae = lambda p, y: float(np.mean(np.abs(p - y)))  # noqa: E731
            # the test predictions are those of the validated model (its coefficients), not of a refit
            ridge, val_mae, trials, coef = select_ridge(k_tr, r_tr, k_val, r_val, mae, ridges, psd_rtol=psd_rtol,
                                                        with_coef=True)
            pred = np.asarray(k_te, dtype=np.float64) @ coef
            err = pred - r_te
            rows.append({"kernel": f"{prefix}_{kind}", "n_train": int(n), "mae_meV": 1e3 * float(np.mean(np.abs(err))),
                         "rmse_meV": 1e3 * float(np.sqrt(np.mean(err ** 2))), "ridge_rel": ridge,
                         "val_mae_meV": 1e3 * val_mae, "ridge_trials": [[r, 1e3 * s] for r, s in trials]})
    return rows


def evaluate_curve_landmarks(grams_pool: dict, grams_test: dict, grams_landmarks: dict, y_pool: np.ndarray,
                             y_test: np.ndarray, c_pool: np.ndarray, c_test: np.ndarray, val_idx: np.ndarray,
                             train_idx: np.ndarray, n_train: Sequence[int], ridges: Sequence[float], prefix: str,
                             psd_rtol: Optional[float] = None, rcond: Optional[float] = None) -> list:
    """:func:`evaluate_curve` with landmark (Nyström) regression (:mod:`eqntk.landmarks`).

    ``grams_pool[kind]``: ``(P, M)`` pool molecules × landmarks; ``grams_test[kind]``: ``(S, M)``;
    ``grams_landmarks[kind]``: ``(M, M)``, or its :class:`eqntk.landmarks.LandmarkBasis` (reused
    across calls; ``psd_rtol`` and ``rcond`` then belong to its :func:`~eqntk.landmarks.landmark_basis`).
    One basis per kind serves every N, one factorisation per (kind, N) the ridge grid; rows as
    :func:`evaluate_curve`'s, plus ``rank`` (landmark directions kept). ``psd_rtol``, ``rcond``:
    those of :func:`eqntk.landmarks.landmark_model`.
    """
    from ..landmarks import LandmarkBasis, landmark_basis, landmark_model, landmark_predict

    rows = []
    mae = lambda p, y: float(np.mean(np.abs(p - y)))  # noqa: E731
    bases = {kind: (grams_landmarks[kind] if isinstance(grams_landmarks[kind], LandmarkBasis)
                    else landmark_basis(grams_landmarks[kind], psd_rtol=psd_rtol, rcond=rcond))
             for kind in ("ntk", "nngp")}
    for n in n_train:
        tr = train_idx[:n]
        r_tr, r_val, r_te = _residuals(y_pool, y_test, c_pool, c_test, tr, val_idx)
        for kind in ("ntk", "nngp"):
            g = grams_pool[kind]
            model = landmark_model(g[tr], bases[kind])
            both = landmark_predict(model, r_tr, np.concatenate([g[val_idx], grams_test[kind]]), ridges)
            trials = [(float(r), mae(p[: len(val_idx)], r_val)) for r, p in zip(ridges, both)]
            best = min(range(len(trials)), key=lambda i: trials[i][1])
            err = both[best, len(val_idx):] - r_te
            rows.append({"kernel": f"{prefix}_{kind}", "n_train": int(n), "mae_meV": 1e3 * mae(err, 0.0),
                         "rmse_meV": 1e3 * float(np.sqrt(np.mean(err ** 2))), "ridge_rel": trials[best][0],
                         "val_mae_meV": 1e3 * trials[best][1], "ridge_trials": [[r, 1e3 * v] for r, v in trials],
                         "landmarks": int(bases[kind].proj.shape[0]), "rank": model.rank})
    return rows


def baseline_rows(y_pool, y_test, c_pool, c_test, train_idx, n_train) -> list:
    rows = []
    for n in n_train:
        tr = train_idx[:n]
        err = element_baseline(c_pool[tr], y_pool[tr])(c_test) - y_test
        rows.append({"kernel": "element_baseline", "n_train": int(n), "mae_meV": 1e3 * float(np.mean(np.abs(err))),
                     "rmse_meV": 1e3 * float(np.sqrt(np.mean(err ** 2)))})
    return rows


def run(cfg: QM9Config, log=print) -> dict:
    """Run the QM9 experiment of ``cfg``; returns the JSON-ready result dict (no files written)."""
    from .. import data as D

    cfg.validate()
    if not x64_enabled():
        log("warning: jax_enable_x64 is off; the regressions run in float32 (enable it for reliable ridges)")
    timer = Timer()
    with timer("load"):
        ms = D.load_qm9(cfg.source)
        y_all = D.atomization_energy(ms, cfg.target, unit="eV")
    n_max = max(cfg.n_train)
    test_idx, pool_idx = split_qm9(len(ms), cfg.n_val + n_max, cfg.n_test, cfg.seed, cfg.test_seed)
    pool, test = ms.subset(pool_idx), ms.subset(test_idx)
    val_idx = np.arange(cfg.n_val)
    train_idx = np.arange(cfg.n_val, cfg.n_val + n_max)
    log(f"QM9 {cfg.target} atomization energy: {len(ms)} molecules available; pool {len(pool)} "
        f"({cfg.n_val} validation + {n_max} train, {pool.n_atoms_total} atoms), test {len(test)} "
        f"({test.n_atoms_total} atoms)")
    dt = np.float32 if cfg.dtype == "float32" else np.float64
    with timer("environments"):
        x_pool, x_test = environments(cfg, pool, test, dt)
    log(f"atomic environments: bandlimit {cfg.bandlimit}, {x_pool.shape[2]} channels "
        f"({x_pool.shape[1] * x_pool.shape[2]} coefficients per atom), {timer.seconds['environments']:.1f} s")
    y_pool, y_test = y_all[pool_idx], y_all[test_idx]
    c_pool, c_test = element_counts(pool), element_counts(test)
    rows = baseline_rows(y_pool, y_test, c_pool, c_test, train_idx, cfg.n_train)
    accuracy = None
    if cfg.rtol is not None and "so3" in cfg.kernels:
        from ..core.accuracy import choose_oversampling

        n_ch = x_pool.shape[2]
        build = lambda o: networks(dataclasses.replace(cfg, oversampling=o, kernels=("so3",)), n_ch)["so3"][0]  # noqa: E731
        lo = int(pool.offsets[cfg.n_val])  # training atoms only
        with timer("choose_oversampling"):
            choice = choose_oversampling(build, x_pool[lo:], cfg.rtol, seed=cfg.seed)
        cfg = dataclasses.replace(cfg, oversampling=choice.oversampling)
        accuracy = {"rtol": cfg.rtol, "oversampling": choice.oversampling, "estimate": choice.estimate,
                    "estimates": [list(e) for e in choice.estimates], "sampled_atoms": 16}
        log(f"oversampling {choice.oversampling:g} for rtol {cfg.rtol:g}: estimated relative error "
            f"{choice.estimate:.1e} on 16 training atoms")
    nets = networks(cfg, x_pool.shape[2])
    lm = x_lm = None
    if cfg.landmarks is not None:  # landmark atoms from the training molecules only (never validation/test)
        n_tr_atoms = int(pool.offsets[-1] - pool.offsets[cfg.n_val])
        if cfg.landmarks > n_tr_atoms:
            raise ValueError(f"landmarks={cfg.landmarks} exceeds the {n_tr_atoms} atoms of the training molecules")
        atoms = D.landmark_atoms(pool.subset(train_idx), cfg.landmarks, seed=cfg.seed) + int(pool.offsets[cfg.n_val])
        lm, x_lm = D.atoms_as_molecules(pool, atoms), x_pool[atoms]
        log(f"landmark regression: {cfg.landmarks} landmark atoms of the {n_tr_atoms} training atoms")
    for name, (kf, shape) in nets.items():
        store = None if cfg.store is None else os.path.join(cfg.store, name)
        sub = (lambda part: None) if store is None else (lambda part: os.path.join(store, part))
        log(f"{KERNEL_LABELS[name + '_ntk'].replace(' NTK', '')} kernel (NNGP + NTK):")
        common = dict(same_element=cfg.same_element, tile=cfg.tile, progress=cfg.progress, log=log)
        with timer(f"kernel_{name}"):
            if lm is None:
                g_pool = molecular_grams(kf, shape(x_pool), pool, store=sub("pool"), label="pool x pool, ", **common)
                g_test = molecular_grams(kf, shape(x_test), test, shape(x_pool), pool, store=sub("test"),
                                         label="test x pool, ", **common)
            else:
                g_pool = molecular_grams(kf, shape(x_pool), pool, shape(x_lm), lm, store=sub("pool_landmarks"),
                                         label="pool x landmarks, ", **common)
                g_test = molecular_grams(kf, shape(x_test), test, shape(x_lm), lm, store=sub("test_landmarks"),
                                         label="test x landmarks, ", **common)
                g_lm = molecular_grams(kf, shape(x_lm), lm, store=sub("landmarks"), label="landmarks x landmarks, ",
                                       **common)
        log(f"  {timer.seconds[f'kernel_{name}']:.1f} s")
        with timer("regression"):
            if lm is None:
                rows += evaluate_curve(g_pool, g_test, y_pool, y_test, c_pool, c_test, val_idx, train_idx,
                                       cfg.n_train, cfg.ridges, name, psd_tolerance(cfg.dtype))
            else:
                rows += evaluate_curve_landmarks(g_pool, g_test, g_lm, y_pool, y_test, c_pool, c_test, val_idx,
                                                 train_idx, cfg.n_train, cfg.ridges, name,
                                                 psd_tolerance(cfg.dtype, atoms=True))
    config = dataclasses.asdict(cfg)
    config["n_train"] = list(cfg.n_train)
    return {"experiment": "qm9", "config": config, "results": rows,
            "split": {"test_ids": ms.ids[test_idx].tolist(), "pool_ids": ms.ids[pool_idx].tolist(),
                      "n_atoms_pool": int(pool.n_atoms_total), "n_atoms_test": int(test.n_atoms_total)},
            "accuracy": accuracy,
            "seconds": {**timer.seconds, "total": timer.total}, "environment": environment_info()}


def summary_table(result: dict) -> str:
    rows = result["results"]
    ns = sorted({r["n_train"] for r in rows})
    kernels = [k for k in ["element_baseline", *KERNEL_LABELS] if any(r["kernel"] == k for r in rows)]
    labels = {"element_baseline": "per-element linear baseline", **KERNEL_LABELS}
    table = []
    for k in kernels:
        line = [labels[k]]
        for n in ns:
            r = next((r for r in rows if r["kernel"] == k and r["n_train"] == n), None)
            line.append("-" if r is None else f"{r['mae_meV']:.0f} / {r['rmse_meV']:.0f}")
        table.append(line)
    return format_table(["test MAE / RMSE [meV]"] + [f"N={n}" for n in ns], table)


def print_summary(result: dict, log=print):
    log("")
    log(summary_table(result))
    s = result["seconds"]
    log(f"\ntotal {s['total']:.1f} s (" + ", ".join(f"{k} {v:.1f} s" for k, v in s.items() if k != "total") + ")")


def plot_curve(result: dict, path: str, title: Optional[str] = None) -> str:
    """Learning curve (test MAE vs N_train, log-log) of every kernel; error bars if ``mae_std_meV``."""
    plt = pyplot()
    labels = {"element_baseline": "per-element linear baseline", **KERNEL_LABELS}
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for k in labels:
        rs = sorted((r for r in result["results"] if r["kernel"] == k), key=lambda r: r["n_train"])
        if not rs:
            continue
        n = [r["n_train"] for r in rs]
        m = [r["mae_meV"] for r in rs]
        e = [r.get("mae_std_meV", 0.0) for r in rs]
        style = "--" if k == "element_baseline" else ("-" if k.endswith("ntk") else ":")
        ax.errorbar(n, m, yerr=e if any(e) else None, marker="o", ls=style, capsize=3, label=labels[k])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training molecules N")
    ax.set_ylabel("test MAE [meV]")
    cfg = result.get("config", {})
    ax.set_title(title or f"QM9 {cfg.get('target', 'U0')} atomization energy, kernel regression")
    return save_figure(fig, ax, path)


def save(result: dict, out_dir: str, stem: str = "qm9") -> tuple[str, Optional[str]]:
    """Write ``<stem>.json`` and ``<stem>_learning_curve.png`` into ``out_dir``.

    The PNG path is ``None`` (nothing drawn) when matplotlib is not installed.
    """
    j = write_json(os.path.join(out_dir, f"{stem}.json"), result)
    p = plot_if_available(plot_curve, result, os.path.join(out_dir, f"{stem}_learning_curve.png"))
    return j, p
