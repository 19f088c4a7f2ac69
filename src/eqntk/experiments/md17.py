r"""Forces of MD17-style data (``eqntk md17``): the equivariant (l = 1) matrix kernel, or energy + force training.

Data: an ``.npz`` with ``z (n_atoms,)`` atomic numbers, ``R (n_conf, n_atoms, 3)`` positions in Å
and ``F (n_conf, n_atoms, 3)`` forces (any unit; MD17's kcal/mol/Å, reported also in meV/Å);
e.g. the MD17 ethanol conformations. :func:`load` checks them.

Model: each atom's environment is an S² signal (:func:`eqntk.data.atomic_environments` with the
``eqntk qm9`` settings); the network ``S2ConvSO3(·, L) → Rbf(γ) → SO3ConvSO3(·, 2)`` ends unpooled,
and the degree-1 blocks of its kernel are a 3 × 3 matrix kernel ``K(a, a')`` with
``K(R a, R' a') = R K(a, a') R'ᵀ`` (:mod:`eqntk.so3.vector`). The force on an atom is predicted by
kernel ridge regression on the atoms of the same element in the training conformations, one
regression per element. The predicted force field is rotation-equivariant; it is not the gradient
of an energy.

Splits: ``n_test`` test conformations drawn with ``test_seed``, then ``n_val`` validation
conformations and nested training sets from the rest with ``seed``. The relative ridge is chosen
per element and training size on the validation conformations' forces; test conformations are
never used for a choice. MAE per Cartesian component over all atoms of the test conformations.

``model='energy-forces'`` (:func:`energy_force_curve`): instead, the invariant energy model of the
``eqntk qm9`` SO(3) network (``S2ConvSO3 → Rbf → SO3Pool → Dense``), fitted by kernel ridge regression
to the energies *and* forces of the training conformations (the joint Gram of
:func:`eqntk.forces.energy_force_gram`, by the Fourier-side derivatives of :mod:`eqntk.so3.derivatives`),
test energies and forces ``−∂E/∂R`` from the test–training Gram; the ridge chosen on the validation
conformations' forces. Energies and forces are both reported. It costs ``N (N + 1) / 2`` conformation
pairs of ``(1 + 3n)²`` kernel derivatives for the training Gram and ``N`` per validation or test
conformation (~10 ms per pair at its default oversampling 8 on a 2-core CPU, ethanol; 0.15 s by
autodiff), so its defaults are smaller than the vector model's.
Its quadrature must be finer than the vector model's: on the same MD17 ethanol split, oversampling 6
instead of 8 raised the test force MAE at N = 100 from 39.7 to 64.6 meV/Å (docs/forces.md).
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Optional, Sequence

import numpy as np

from .common import DEFAULT_RIDGES, Timer, environment_info, format_table, psd_tolerance, pyplot, \
    plot_if_available, save_figure, select_ridge, write_json

__all__ = ["MD17Config", "RIDGES", "MODELS", "network", "energy_network", "split", "element_kernels", "fit_forces",
           "fit_energy_forces", "gram_rows", "energy_force_curve", "run", "print_summary", "plot_curve", "save",
           "KCAL_MOL_IN_MEV"]

from ..data.units import HARTREE_IN_EV, HARTREE_IN_KCAL_MOL
from ..core.checks import check_real

#: 1 kcal/mol in meV
KCAL_MOL_IN_MEV = 1e3 * HARTREE_IN_EV / HARTREE_IN_KCAL_MOL

KINDS = ("ntk", "nngp")
#: the relative ridge grid: the experiments' default extended down to 1e-9 (force kernels are fitted closely)
RIDGES = (1e-9, 1e-8) + tuple(DEFAULT_RIDGES)
#: ``'vector'``: per-atom forces from the l = 1 matrix kernel; ``'energy-forces'``: an energy model trained
#: on energies and forces (module docstring)
MODELS = ("vector", "energy-forces")
#: per model: the defaults of ``n_train``, ``n_val``, ``n_test``, ``oversampling`` (energy + force training costs far
#: more per pair, and its force-force blocks need the finer quadrature: docs/forces.md)
DEFAULTS = {"vector": ((50, 100, 200), 50, 200, 6.0), "energy-forces": ((25, 50), 20, 50, 8.0)}
#: relative negative eigenvalue tolerated in the joint energy-force Gram (``select_ridge``'s ``psd_rtol``): the
#: pool's quadrature leaves it PSD to ~1e-11 at oversampling 8 (md17_force_kernel_accuracy.json); the validation
#: ridge absorbs the rest
ENERGY_FORCE_PSD_RTOL = 1e-4


@dataclasses.dataclass
class MD17Config:
    """Settings of :func:`run` (the defaults are those of ``eqntk md17``)."""

    source: Optional[str] = None   # the .npz (z, R, F[, E]); None: the embedded MD17 ethanol subset (500 conformations)
    model: str = "vector"          # one of MODELS
    n_train: Optional[Sequence[int]] = None  # None: DEFAULTS[model] (nested training sets), as n_val, n_test
    n_val: Optional[int] = None
    n_test: Optional[int] = None
    seed: int = 0
    test_seed: int = 0
    bandlimit: int = 4
    # Accuracy of the kernel, not a fit: with float32 and oversampling 4 the ridge chosen on validation
    # forces sat at 1e-5..1e-4 (the kernel's own error) and the curve stalled at ~130 meV/Å on MD17
    # ethanol; float64 and oversampling 6 let it fall to the grid's 1e-7 (docs/forces.md).
    # of the final SO3ConvSO3 ('vector', default 6) or of the SO3Pool ('energy-forces', default 8); None: DEFAULTS
    oversampling: Optional[float] = None
    dtype: str = "float64"         # of the kernel computation (regressions are solved in float64)
    ridges: Sequence[float] = RIDGES
    tile: int = 128
    progress: Optional[bool] = None
    store: Optional[str] = None    # a directory keeping finished kernel tiles: an interrupted run resumes from them
    # 'energy-forces' only: the energy rows' ridge relative to the force-chosen one, chosen on validation energies
    # among the ratios whose validation forces stay within (1 + force_rtol) of ratio 1's (fit_energy_forces)
    energy_ratios: Sequence[float] = (1.0,)
    force_rtol: Optional[float] = None

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"md17: model must be one of {MODELS}, got {self.model!r}")
        sizes = DEFAULTS[self.model]
        self.n_train = tuple(sizes[0] if self.n_train is None else self.n_train)
        self.n_val = sizes[1] if self.n_val is None else self.n_val
        self.n_test = sizes[2] if self.n_test is None else self.n_test
        self.oversampling = sizes[3] if self.oversampling is None else self.oversampling
        if not self.n_train or any(int(n) != n or n < 1 for n in self.n_train):
            raise ValueError(f"md17: n_train must be positive integers, got {self.n_train!r}")
        for name in ("n_val", "n_test"):
            v = getattr(self, name)
            if int(v) != v or v < 1:
                raise ValueError(f"md17: {name} must be a positive integer, got {v!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"md17: dtype must be 'float32' or 'float64', got {self.dtype!r}")
        self.energy_ratios = check_energy_ratios("md17", self.energy_ratios, self.force_rtol)
        if self.model != "energy-forces" and (self.energy_ratios != (1.0,) or self.force_rtol is not None):
            raise ValueError("md17: energy_ratios and force_rtol belong to model 'energy-forces'")


def check_energy_ratios(where: str, energy_ratios: Sequence[float], force_rtol: Optional[float]) -> tuple:
    """The energy rows' ridge ratios as floats, or a ``ValueError`` naming ``where``: each finite and > 0, and
    ``force_rtol`` finite and >= 0 or ``None`` (:func:`fit_energy_forces`)."""
    ratios = tuple(float(r) for r in energy_ratios)
    if not ratios or not all(np.isfinite(r) and r > 0 for r in ratios):
        raise ValueError(f"{where}: energy_ratios must be finite numbers > 0, got {list(energy_ratios)!r}")
    if force_rtol is not None:
        check_real(where, "force_rtol", force_rtol, lo=0.0)
    return ratios


def network(cfg: MD17Config):
    """``kernel_fn`` of ``S2ConvSO3(256, L) → Rbf(γ) → SO3ConvSO3(256, 2)`` and the environment spec."""
    from .. import stax
    from .qm9 import QM9Config

    q = QM9Config(bandlimit=cfg.bandlimit)
    _, _, kf = stax.serial(stax.S2ConvSO3(256, cfg.bandlimit, W_std=q.w_std), q.nonlinearity_layer(),
                           stax.SO3ConvSO3(256, 2, oversampling=cfg.oversampling))
    return kf, q.environment_spec()


def energy_network(cfg: MD17Config):
    """``kernel_fn`` of the ``eqntk qm9`` SO(3) energy network (``S2ConvSO3 → Rbf → SO3Pool(oversampling) →
    Dense``) and the environment spec: the energy model of ``model='energy-forces'``."""
    from .qm9 import QM9Config, networks

    q = QM9Config(bandlimit=cfg.bandlimit, oversampling=cfg.oversampling, kernels=("so3",))
    return networks(q, 0)["so3"][0], q.environment_spec()


def split(n_conf: int, n_test: int, n_val: int, n_train_max: int, seed: int, test_seed: int):
    """``(test, val, train)`` conformation indices: test fixed by ``test_seed``, the rest by ``seed``."""
    if n_test + n_val + n_train_max > n_conf:
        raise ValueError(f"md17: {n_conf} conformations: fewer than test ({n_test}) + validation ({n_val}) "
                         f"+ largest training set ({n_train_max})")
    test = np.random.default_rng(test_seed).permutation(n_conf)[:n_test]
    rest = np.setdiff1d(np.arange(n_conf), test)
    perm = np.random.default_rng(1000 + seed).permutation(rest)
    return test, perm[:n_val], perm[n_val:n_val + n_train_max]


def element_kernels(kernel_fn, x_all, z, pool, test, *, tile: int = 128, progress=None, log=None,
                    store: Optional[str] = None) -> dict:
    """Per element ``e``: ``(atoms of e, pool × pool, test × pool)`` matrix kernels ``{kind: (·, ·, 3, 3)}``.

    ``x_all``: ``(n_conf · n_atoms, L², C)`` environments, conformation-major; rows of the kernels
    are (conformation, atom of ``e``), conformation-major, in the order of ``pool`` / ``test``.
    ``store``: a directory; each kernel keeps its finished tiles in ``<store>/Z<e>_{pool,test}`` (resumable).
    """
    from ..so3.vector import vector_blocks

    out, n_at = {}, z.size
    for e in np.unique(z):
        ia = np.nonzero(z == e)[0]
        xp = x_all[(pool[:, None] * n_at + ia).ravel()]
        xt = x_all[(test[:, None] * n_at + ia).ravel()]
        # the packed blocks (10 per atom pair) are dropped as soon as their 3 × 3 blocks are taken: at N = 1,000
        # ethanol the hydrogens' pool kernels are 4.1 GB per kind packed, 3.7 GB as blocks
        kp = kernel_fn(xp, None, KINDS, tile_size=tile, progress=progress, store=_sub(store, f"Z{int(e)}_pool"))
        kp = {k: vector_blocks(getattr(kp, k)) for k in KINDS}
        kt = kernel_fn(xt, xp, KINDS, tile_size=tile, progress=progress, store=_sub(store, f"Z{int(e)}_test"))
        kt = {k: vector_blocks(getattr(kt, k)) for k in KINDS}
        out[int(e)] = (ia, kp, kt)
        if log:
            log(f"  element {int(e)}: {len(xp)} x {len(xp)} and {len(xt)} x {len(xp)} atom pairs")
    return out


def _sub(store: Optional[str], name: str) -> Optional[str]:
    """The store directory of one kernel inside ``store`` (``None`` without a store)."""
    return None if store is None else os.path.join(store, name)


def fit_forces(kernels: dict, F_pool, F_test_shape, n_val: int, n: int, kind: str, ridges, psd_rtol: float):
    """Predicted test forces ``(n_test, n_atoms, 3)`` from the first ``n`` training conformations.

    ``F_pool``: ``(n_val + n_train_max, n_atoms, 3)`` forces of the pool (validation first). The
    prediction is that of the validated model (``select_ridge(with_coef=True)``; from its ``CHOLESKY_ROWS``
    training rows, 3 per atom, by one Cholesky factorisation per ridge: N = 1,000 ethanol has 18,000
    hydrogen rows), with its PSD handling (eigenvalues within the tolerance clipped; on the Cholesky path a
    ridge that does not factorise is skipped; no jitter). Returns ``(prediction, {element: chosen relative
    ridge}, validation MAE over all atoms)``.
    """
    from ..so3.vector import as_block_matrix

    pred = np.zeros(F_test_shape)
    chosen, val_abs, val_count = {}, 0.0, 0
    mae = lambda a, b: float(np.mean(np.abs(a - b)))  # noqa: E731
    for e, (ia, kp, kt) in kernels.items():
        k_e = len(ia)
        tr = ((n_val + np.arange(n))[:, None] * k_e + np.arange(k_e)).ravel()
        va = (np.arange(n_val)[:, None] * k_e + np.arange(k_e)).ravel()
        K = kp[kind]
        k_tr, k_va = as_block_matrix(K[np.ix_(tr, tr)]), as_block_matrix(K[np.ix_(va, tr)])
        y_tr = F_pool[n_val:n_val + n][:, ia].reshape(-1)  # atom-major, xyz minor (the block matrix's rows)
        y_va = F_pool[:n_val][:, ia].reshape(-1)
        # the validated model's own coefficients (no second factorisation); k_tr is a copy, consumed here
        ridge, val_mae, _, coef = select_ridge(k_tr, y_tr, k_va, y_va, mae, ridges, psd_rtol=psd_rtol,
                                               with_coef=True, overwrite=True, method="auto")
        del k_tr
        pred[:, ia] = (as_block_matrix(kt[kind][:, tr]) @ coef).reshape(F_test_shape[0], k_e, 3)
        chosen[e] = ridge
        val_abs, val_count = val_abs + val_mae * y_va.size, val_count + y_va.size
    return pred, chosen, val_abs / val_count


def fit_energy_forces(g_train, g_val, E_train, F_train, E_val, F_val, ridges, psd_rtol: float,
                      overwrite: bool = False, method: str = "eigh",
                      energy_ratios: Sequence[float] = (1.0,), force_rtol: Optional[float] = None) -> dict:
    """Kernel ridge regression on energies and forces; the ridge chosen on validation forces.

    ``g_train``: ``(N (1 + 3n), N (1 + 3n))`` joint Gram of the training conformations and ``g_val``
    ``(V (1 + 3n), N (1 + 3n))`` that of the validation against the training ones
    (:func:`eqntk.forces.energy_force_gram`); ``E_* (·,)``, ``F_* (·, n, 3)`` their targets. Energies
    are centred on the training mean. The ridge is block-wise: ``r`` times the mean diagonal of the
    energy block on energy rows and of the force block on force rows (energies and forces have
    different units and scales), i.e. one relative ridge on ``D^{-1/2} G D^{-1/2}``.

    ``energy_ratios``: then, at the chosen ``r``, the energy rows' relative ridge ``ρ · r`` for each ``ρ``
    of this grid, ``ρ`` chosen on the validation *energies* (``1``, always tried, is the model above).
    Energies observed with less noise than the forces' fit implies are then fitted more closely; the
    forces hardly move. Each ``ρ ≠ 1`` costs one more factorisation (eigendecomposition below
    ``select_ridge``'s ``CHOLESKY_ROWS``, else Cholesky). ``force_rtol``: only the ratios whose validation
    force MAE is at most ``(1 + force_rtol)`` times that of ``ρ = 1`` are eligible (``None``: all), so the
    energies are not bought with the forces.

    ``overwrite``: ``g_train`` may be destroyed (scaled and symmetrised in place): memory ``g_train`` plus
    one matrix of its size (eigenvectors, or the Cholesky work matrix of ``select_ridge``), where a copy
    would not fit (N = 1,000 ethanol: 6.3 GB each); with ``energy_ratios`` on the eigendecomposition path
    one more copy. ``method``: ``select_ridge``'s (``'auto'``: one Cholesky factorisation per ridge from its
    ``CHOLESKY_ROWS``).

    Returns ``{'coef' (N (1 + 3n),): the coefficients of energy_force_predict, 'energy_mean',
    'ridge_rel', 'energy_ratio', 'val_force_mae', 'val_energy_mae', 'ratio_trials': [(ρ, validation
    energy MAE, validation force MAE), ...] in increasing ρ, 'trial_coefs': the coefficients of each
    trial, in the same order}`` (data units).
    """
    from .common import CHOLESKY_ROWS

    n, nv = len(E_train), len(E_val)
    ratios = check_energy_ratios("fit_energy_forces", energy_ratios, force_rtol)
    e_mean = float(np.mean(E_train))
    y = np.concatenate([np.asarray(E_train) - e_mean, np.asarray(F_train).reshape(-1)])
    y_val = np.concatenate([np.asarray(E_val) - e_mean, np.asarray(F_val).reshape(-1)])
    if g_train.shape != (y.size, y.size) or g_val.shape != (y_val.size, y.size):
        raise ValueError(f"fit_energy_forces: Grams {g_train.shape}, {g_val.shape} do not fit {n} training and "
                         f"{nv} validation conformations of {F_train.shape[1]} atoms")
    diag = np.diag(g_train)
    s = np.concatenate([np.full(n, diag[:n].mean()), np.full(y.size - n, diag[n:].mean())]) ** -0.5
    k = g_train if overwrite else g_train.copy()
    k *= s[:, None]
    k *= s[None, :]
    kv = g_val * s[None, :]

    def force_mae(pred, yv):
        return float(np.mean(np.abs(pred[nv:] - yv[nv:])))

    def energy_mae(pred, yv):
        return float(np.mean(np.abs(pred[:nv] - yv[:nv])))

    more = any(r != 1.0 for r in ratios)
    # select_ridge keeps k (symmetrised) on its Cholesky path; its eigendecomposition path consumes it
    keeps = method == "cholesky" or (method == "auto" and y.size >= CHOLESKY_ROWS)
    scale = float(np.mean(np.diag(k)))  # select_ridge's unit of ridge (1 up to round-off: each block's mean is 1)
    ridge, val_force, _, coef = select_ridge(k, y * s, kv, y_val, force_mae, ridges, psd_rtol=psd_rtol,
                                             with_coef=True, overwrite=keeps or not more, method=method)
    trials = [(1.0, energy_mae(kv @ coef, y_val), val_force, s * coef)]
    for rho in sorted(set(ratios) - {1.0}):
        # ridge ρ·r on the energy rows = ridge r on the Gram with its energy rows and columns scaled by ρ^(-1/2)
        c = np.ones(y.size)
        c[:n] = rho ** -0.5
        k_rho = k if keeps else k.copy()
        k_rho *= c[:, None]
        k_rho *= c[None, :]
        try:  # select_ridge's absolute ridge is its relative one times the mean diagonal: keep r·scale
            fit = select_ridge(k_rho, c * y * s, kv * c[None, :], y_val, energy_mae,
                               [ridge * scale / float(np.mean(np.diag(k_rho)))], psd_rtol=psd_rtol, with_coef=True,
                               overwrite=True, method=method)
        except ValueError:  # not positive definite at this ridge: that ratio is not tried
            fit = None
        if keeps:
            k_rho /= c[:, None]
            k_rho /= c[None, :]
        if fit is None:
            continue
        coef_rho = c * fit[3]
        pred = kv @ coef_rho  # = g_val @ (s * coef_rho): the MAEs are those of the returned coefficients
        trials.append((rho, energy_mae(pred, y_val), force_mae(pred, y_val), s * coef_rho))
    trials.sort(key=lambda t: t[0])
    limit = np.inf if force_rtol is None else (1.0 + force_rtol) * val_force
    rho, val_energy, val_force, coef = min((t for t in trials if t[2] <= limit or t[0] == 1.0), key=lambda t: (t[1], t[0] != 1.0))
    return {"coef": coef, "energy_mean": e_mean, "ridge_rel": ridge, "energy_ratio": rho,
            "val_force_mae": val_force, "val_energy_mae": val_energy,
            "ratio_trials": [t[:3] for t in trials], "trial_coefs": [t[3] for t in trials]}


def gram_rows(idx, n_total: int, n3: int) -> np.ndarray:
    """Rows of conformations ``idx`` in :func:`eqntk.forces.energy_force_gram`'s layout of ``n_total``
    conformations of ``n3 / 3`` atoms: their energies, then their ``n3`` force components each."""
    idx = np.asarray(idx)
    return np.concatenate([idx, n_total + (idx[:, None] * n3 + np.arange(n3)).ravel()])


def energy_force_curve(kernels: dict, R, E, F, train, val, test, n_train: Sequence[int], ridges, *,
                       psd_rtol: float = ENERGY_FORCE_PSD_RTOL, batch: int = 4, progress=None,
                       log=print, store: Optional[str] = None,
                       energy_ratios: Sequence[float] = (1.0,),
                       force_rtol: Optional[float] = None) -> tuple[list, dict]:
    """Test MAEs of energy + force kernel regression for nested training sets: ``(rows, seconds)``.

    Args:
        kernels: ``{name: k}``, conformation kernels ``k(R (n, 3), R' (n, 3))``
            (:func:`eqntk.forces.conformation_kernel`).
        R: ``(B, n, 3)`` positions [Å]; E: ``(B,)`` energies; F: ``(B, n, 3)`` forces (energy/Å).
        train: training conformation indices; the first ``N`` of them for each ``N`` in ``n_train``.
        val: validation conformations (the ridge is chosen on their force MAE); test: test conformations.
        ridges: relative ridges to choose from (block-wise, :func:`fit_energy_forces`).
        energy_ratios: the energy rows' ridge relative to the chosen one, chosen on validation energies
            (:func:`fit_energy_forces`; ``(1.0,)``: the energy rows regularised like the force rows).
        force_rtol: the guard of that choice on the validation forces (:func:`fit_energy_forces`).
        store: a directory; each Gram keeps its finished tiles in ``<store>/<name>_{train,val,test}``
            (``energy_force_gram(store=...)``), so an interrupted run resumes where it stopped. A Gram's
            cost per pair is then that of the pairs this call computed.

    The training Gram of the largest set and the validation–training Gram are computed once per
    kernel and sliced for the smaller sets. Test energies and forces: for kernels with the Fourier-side
    derivatives (:mod:`eqntk.so3.derivatives`) from the test–training Gram of the largest set, computed
    once and sliced (a pair costs about as much as one pair of :func:`eqntk.forces.energy_force_predict`,
    which would be paid again for every ``N``); for the others from ``energy_force_predict``
    (10x cheaper per pair than their autodiff Gram). The fits run in increasing ``N`` (each may consume its
    own slice of the Gram, and the largest the Gram itself). Returns rows ``{'kernel', 'n_train', 'energy_mae',
    'force_mae', 'energy_mae_meV', 'force_mae_meV_A', 'ridge_rel', 'val_energy_mae', 'val_force_mae'}``
    (MAEs in data units unless named meV, which assumes kcal/mol; also ``'energy_ratio'``, ``'ratio_trials'``, and
    where the test Gram is at hand ``'ratio_test'``: ``[ρ, test energy MAE, test force MAE]`` of every ratio tried,
    reported only, never used to choose) and ``seconds``, the times of each Gram and prediction with their cost
    per conformation pair.
    """
    from ..forces import _route, energy_force_gram, energy_force_predict

    train, val, test = (np.asarray(i) for i in (train, val, test))
    n_max, n3 = max(n_train), 3 * R.shape[1]
    if n_max > train.size:
        raise ValueError(f"energy_force_curve: n_train up to {n_max} but only {train.size} training conformations")
    mae = lambda a, b: float(np.mean(np.abs(a - b)))  # noqa: E731
    rows, seconds = [], {}
    for name, k in kernels.items():
        def gram(part, R1, R2=None):  # the Gram, its time, and its cost per conformation pair computed here
            info, t = {}, time.perf_counter()
            g = energy_force_gram(k, R1, R2, batch=batch, progress=progress, store=_sub(store, f"{name}_{part}"),
                                  info=info)
            seconds[f"{name}_{part}_gram"] = dt = time.perf_counter() - t
            if info["pairs_computed"]:  # (a resumed Gram computes only some pairs; the loaded ones cost nothing)
                seconds[f"{name}_{part}_gram_s_per_pair"] = dt / info["pairs_computed"]
            return g

        g_tr = gram("train", R[train[:n_max]])
        g_va = gram("val", R[val], R[train[:n_max]])
        g_te = gram("test", R[test], R[train[:n_max]]) if _route(k, "auto") == "fourier" else None
        ns = sorted(n_train)
        for pos, n in enumerate(ns):
            sel = gram_rows(np.arange(n), n_max, n3)
            # a slice is a copy, and the largest Gram is not needed after its own fit (the last): both may be
            # destroyed by the fit, which then needs no copy of its own
            g_n = g_tr if n == n_max else g_tr[np.ix_(sel, sel)]
            fit = fit_energy_forces(g_n, g_va[:, sel], E[train[:n]], F[train[:n]], E[val], F[val], ridges, psd_rtol,
                                    overwrite=n < n_max or pos == len(ns) - 1, method="auto",
                                    energy_ratios=energy_ratios, force_rtol=force_rtol)
            ratio_test = []
            if g_te is not None:  # every trial's test predictions from one slice of the test Gram
                tried = [t[0] for t in fit["ratio_trials"]]
                preds = g_te[:, sel] @ np.stack(fit["trial_coefs"], axis=1)  # (test rows, trials)
                pred = preds[:, tried.index(fit["energy_ratio"])]
                e_pred, f_pred = pred[:test.size], pred[test.size:].reshape(F[test].shape)
                if len(tried) > 1:
                    ratio_test = [[rho, mae(p[:test.size] + fit["energy_mean"], E[test]),
                                   mae(p[test.size:].reshape(F[test].shape), F[test])] for rho, p in zip(tried, preds.T)]
            else:
                t3 = time.perf_counter()
                e_pred, f_pred = energy_force_predict(k, R[train[:n]], fit["coef"], R[test], block=16, batch=16,
                                                      progress=progress)
                seconds[f"{name}_predict_{n}"] = dt = time.perf_counter() - t3
                seconds[f"{name}_predict_s_per_pair"] = dt / (n * test.size)
            e_mae, f_mae = mae(e_pred + fit["energy_mean"], E[test]), mae(f_pred, F[test])
            rows.append({"kernel": name, "n_train": int(n), "energy_mae": e_mae, "force_mae": f_mae,
                         "energy_mae_meV": e_mae * KCAL_MOL_IN_MEV, "force_mae_meV_A": f_mae * KCAL_MOL_IN_MEV,
                         "ridge_rel": fit["ridge_rel"], "energy_ratio": fit["energy_ratio"],
                         "val_energy_mae": fit["val_energy_mae"], "val_force_mae": fit["val_force_mae"],
                         "ratio_trials": [list(t) for t in fit["ratio_trials"]], "ratio_test": ratio_test})
            log(f"N = {n:5d} {name}: test energy MAE {e_mae:.4f}, force MAE {f_mae:.4f} (data units; ridge "
                f"{fit['ridge_rel']:g}, energy ratio {fit['energy_ratio']:g}, validation force MAE "
                f"{fit['val_force_mae']:.4f}, energy MAE {fit['val_energy_mae']:.4f})")
    return rows, seconds


def run(cfg: MD17Config, log=print) -> dict:
    """The force learning curve (JSON-ready dict): of the l = 1 NTK and NNGP (``cfg.model='vector'``), or of
    energy + force training with the SO(3) energy network's NTK and NNGP (``'energy-forces'``)."""
    from .. import data as D
    from .qm9 import lift_variance

    timer = Timer()
    d = D.load_md17(cfg.source)
    z, R, F = d["z"], d["R"], d["F"]
    if cfg.model == "energy-forces" and "E" not in d:
        raise ValueError(f"md17: model 'energy-forces' needs energies E (n_conf,) in "
                         f"{cfg.source or D.default_md17_path()}")
    n_conf, n_at = R.shape[0], z.size
    test, val, train = split(n_conf, cfg.n_test, cfg.n_val, max(cfg.n_train), cfg.seed, cfg.test_seed)
    pool = np.concatenate([val, train])
    kf, spec = network(cfg) if cfg.model == "vector" else energy_network(cfg)
    with timer("environments"):
        ms = D.MoleculeSet.from_counts(np.full(n_conf, n_at), np.tile(z, n_conf), R.reshape(-1, 3))
        x_all = D.atomic_environments(ms, spec)
        rows_pool = (pool[:, None] * n_at + np.arange(n_at)).ravel()
        scale = 1.0 / np.sqrt(lift_variance(x_all[rows_pool]))  # training and validation atoms only
        x_all = (x_all * scale).astype(cfg.dtype)
    log(f"md17: {n_conf} conformations of {n_at} atoms (elements {sorted(set(z.tolist()))}); "
        f"test {cfg.n_test}, validation {cfg.n_val}, training up to {max(cfg.n_train)}; model {cfg.model}")
    zero = float(np.mean(np.abs(F[test])))
    if cfg.model == "energy-forces":
        rows, seconds = _energy_force_rows(cfg, kf, spec, scale, d, train, val, test, timer, log)
        return _result(cfg, rows, zero, {**timer.seconds, "total": timer.total}, seconds,
                       zero_energy=float(np.mean(np.abs(d["E"][test] - np.mean(d["E"][train[:max(cfg.n_train)]])))))
    with timer("kernels"):
        kernels = element_kernels(kf, x_all, z, pool, test, tile=cfg.tile, progress=cfg.progress, log=log,
                                  store=cfg.store)
    rows = []
    with timer("regression"):
        for n in cfg.n_train:
            for kind in KINDS:
                pred, ridges, val_mae = fit_forces(kernels, F[pool], F[test].shape, cfg.n_val, n, kind, cfg.ridges,
                                                   psd_tolerance(cfg.dtype, atoms=True))
                mae = float(np.mean(np.abs(pred - F[test])))
                rows.append({"kernel": f"l1_{kind}", "n_train": int(n), "force_mae": mae,
                             "force_mae_meV_A": mae * KCAL_MOL_IN_MEV, "val_force_mae": val_mae,
                             "ridge_rel_by_element": ridges})
    return _result(cfg, rows, zero, {**timer.seconds, "total": timer.total})


def _energy_force_rows(cfg: MD17Config, kf, spec, scale: float, d: dict, train, val, test, timer, log):
    """Rows of ``model='energy-forces'``: the SO(3) NTK and NNGP (:func:`energy_force_curve`)."""
    from .. import data as D
    from ..forces import conformation_kernel

    z = d["z"]
    env0 = D.environment_fn(z, spec)

    def env(Rm, dtype=cfg.dtype):  # (n, 3) Å -> (n, L², C), scaled as the vector model's environments
        return (env0(Rm) * scale).astype(dtype)  # (only dtype from cfg: the kernel's fingerprint keys its store)

    kernels = {f"so3_{kind}": conformation_kernel(kf, z, env, get=kind) for kind in KINDS}
    with timer("energy-force kernels"):
        return energy_force_curve(kernels, d["R"], d["E"], d["F"], train, val, test, cfg.n_train, cfg.ridges,
                                  progress=cfg.progress, log=log, store=cfg.store, energy_ratios=cfg.energy_ratios,
                                  force_rtol=cfg.force_rtol)


def _result(cfg: MD17Config, rows: list, zero: float, seconds: dict, kernel_seconds: Optional[dict] = None,
            zero_energy: Optional[float] = None) -> dict:
    from .. import data as D

    config = dataclasses.asdict(cfg)
    config["n_train"], config["ridges"] = list(cfg.n_train), list(cfg.ridges)
    config["energy_ratios"] = list(cfg.energy_ratios)
    config["source"] = os.path.basename(cfg.source or D.default_md17_path())
    out = {"experiment": "md17", "config": config, "results": rows, "zero_predictor_force_mae": zero,
           "seconds": seconds, "environment": environment_info()}
    if kernel_seconds is not None:
        out["kernel_seconds"] = kernel_seconds
    if zero_energy is not None:
        out["mean_predictor_energy_mae"] = zero_energy
    return out


LABELS = {"l1_ntk": "l = 1 NTK", "l1_nngp": "l = 1 NNGP", "so3_ntk": "SO(3) NTK, energy + force trained",
          "so3_nngp": "SO(3) NNGP, energy + force trained"}


def _curves(result: dict, key: str) -> dict:
    """``{label: [(n_train, value)]}`` of the result's kernels, in LABELS order."""
    rows = result["results"]
    return {label: sorted((r["n_train"], r[key]) for r in rows if r["kernel"] == k)
            for k, label in LABELS.items() if any(r["kernel"] == k for r in rows)}


def summary_table(result: dict) -> str:
    ns = sorted({r["n_train"] for r in result["results"]})
    cell = lambda v: f"{v:.3f}"  # noqa: E731
    table = [[label] + [cell(v) for _, v in c] for label, c in _curves(result, "force_mae").items()]
    table.append(["predict zero"] + [cell(result["zero_predictor_force_mae"])] * len(ns))
    out = format_table(["test force MAE [data units]"] + [f"N={n}" for n in ns], table)
    if "mean_predictor_energy_mae" in result:
        table = [[label] + [cell(v) for _, v in c] for label, c in _curves(result, "energy_mae").items()]
        table.append(["predict the training mean"] + [cell(result["mean_predictor_energy_mae"])] * len(ns))
        out += "\n\n" + format_table(["test energy MAE [data units]"] + [f"N={n}" for n in ns], table)
    return out


def print_summary(result: dict, log=print):
    log("")
    log(summary_table(result))
    log(f"(MD17 energies are in kcal/mol, forces in kcal/mol/Å: ×{KCAL_MOL_IN_MEV:.2f} for meV, meV/Å)")
    s = result["seconds"]
    log(f"\ntotal {s['total']:.1f} s (" + ", ".join(f"{k} {v:.1f} s" for k, v in s.items() if k != "total") + ")")


def plot_curve(result: dict, path: str) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for label, c in _curves(result, "force_mae").items():
        ax.plot([n for n, _ in c], [v for _, v in c], marker="o", label=label)
    ax.axhline(result["zero_predictor_force_mae"], ls="--", color="gray", label="predict zero")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training conformations N")
    ax.set_ylabel("test force MAE per component [data units]")
    how = "the l = 1 matrix kernel" if result["config"].get("model", "vector") == "vector" else \
        "energy + force training"
    ax.set_title(f"{result['config']['source']}: forces from {how}")
    return save_figure(fig, ax, path)


def save(result: dict, out_dir: str, stem: str = "md17") -> tuple[str, Optional[str]]:
    """Write ``<stem>.json`` and ``<stem>_learning_curve.png`` into ``out_dir``.

    The PNG path is ``None`` (nothing drawn) when matplotlib is not installed.
    """
    j = write_json(os.path.join(out_dir, f"{stem}.json"), result)
    p = plot_if_available(plot_curve, result, os.path.join(out_dir, f"{stem}_learning_curve.png"))
    return j, p
