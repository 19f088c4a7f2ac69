"""Forces of kernel-regression energy models, by automatic differentiation through the kernel.

A kernel-regression energy model over atomic environments (same-element pairs, as in
:func:`eqntk.data.molecular_kernel`) predicts, for a molecule ``M`` with positions ``R``,

    E(R) = b(M) + Σ_a w_a Σ_{j ∈ M, Z_j = Z_a} k(x_a, x_j(R)),

a sum over reference atoms ``a`` with weights ``w_a``: for exact kernel ridge regression on
molecular energies, the training molecules' atoms with ``w_a = α_mol(a)`` (the dual coefficient
of their molecule, :func:`reference_weights`); for landmark regression, the landmark atoms with
their weights. ``b(M)`` (a per-element baseline) does not depend on the positions. The forces
are ``F = −∂E/∂R``; here they are computed by reverse-mode differentiation through the
environments (:func:`eqntk.data.environments_jax.environment_fn`) and the kernel
(:meth:`eqntk.core.layers.KernelFn.tile`), never forming a Jacobian of the environments.

Units: ``E`` in the units of the weights' targets (e.g. kcal/mol), ``R`` in Å, ``F`` in
energy/Å.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Optional

import numpy as np
import jax
import jax.numpy as jnp

from .core.checks import check_kind

__all__ = ["reference_weights", "EnergyModel", "energy_fn", "energies_and_forces", "ConformationKernel",
           "conformation_kernel", "energy_force_kernel", "energy_force_gram", "energy_force_predict"]


def reference_weights(molecules, alpha) -> np.ndarray:
    """Per-atom weights ``w_a = α_mol(a)`` of exact kernel ridge regression: ``(n_atoms,)``.

    ``molecules``: the training :class:`~eqntk.data.MoleculeSet`; ``alpha``: ``(n_molecules,)``,
    the dual coefficients ``(K + λI)⁻¹ y`` of its molecular Gram.
    """
    alpha = np.asarray(alpha)
    if alpha.shape != (len(molecules),):
        raise ValueError(f"reference_weights: alpha must have shape ({len(molecules)},) (one per molecule), "
                         f"got {alpha.shape}")
    return np.repeat(alpha, molecules.counts)


@dataclasses.dataclass(frozen=True, eq=False)
class EnergyModel:
    """The kernel part of the energy model above; call it on positions ``R (n, 3)`` for ``E``.

    ``model(R)`` is a pure JAX function of the positions (differentiable, jit-able, vmap-able).
    :func:`energies_and_forces` evaluates it block by block of reference atoms with one compiled
    program per element, reused for every model with the same ``kernel_fn``, ``environment``,
    molecule and ``block`` (any number of reference atoms or weights): compiling the gradient
    through the kernel costs far more than evaluating it.

    ``groups``: per element of the molecule, ``(atoms (k,), x (nb, block, ...), w (nb, block))``.
    """

    kernel_fn: Any
    environment: Callable
    get: str
    groups: tuple

    def __call__(self, R):
        x = self.environment(R)
        total = jnp.zeros((), x.dtype)
        for atoms, xs, ws in self.groups:
            xe = x[atoms]

            @jax.checkpoint
            def body(acc, blk, xe=xe):
                xa, wa = blk
                return acc + _block_energy(self.kernel_fn, self.get, xa, wa, xe), None

            e, _ = jax.lax.scan(body, jnp.zeros((), x.dtype), (jnp.asarray(xs, x.dtype), jnp.asarray(ws, x.dtype)))
            total = total + e
        return total


def _block_energy(kernel_fn, get: str, xa, wa, xe):
    """``Σ_a w_a Σ_i k(x_a, x_i)``: one block of reference atoms ``xa`` (weights ``wa``) against the
    molecule's atoms ``xe`` of the same element; the one definition of the energy's terms."""
    return jnp.sum(wa @ kernel_fn.tile(xa, xe, get=get))


def energy_fn(kernel_fn, x_ref, Z_ref, w_ref, Z, environment: Callable, *, get: str = "ntk",
              block: int = 256) -> EnergyModel:
    """``R (n, 3) → E``: the kernel part of the energy model above, an :class:`EnergyModel`.

    Args:
        kernel_fn: an eqntk ``kernel_fn`` of atomic environments (its :meth:`tile` is used).
        x_ref: ``(A, ...)`` environments of the reference atoms (the kernel's input layout).
        Z_ref: ``(A,)`` their atomic numbers; ``w_ref``: ``(A,)`` their weights.
        Z: ``(n,)`` atomic numbers of the molecule whose positions vary.
        environment: ``R (n, 3) → (n, ...)`` environments (e.g. ``environment_fn(Z, spec)``);
            pass the same function object to every model to share compiled programs.
        get: ``'ntk'`` or ``'nngp'``.
        block: reference atoms per kernel evaluation (memory ∝ ``block · n``). Inside ``model(R)``
            each block is recomputed in the backward pass (``jax.checkpoint``) instead of stored.

    Returns:
        an :class:`EnergyModel`: a function of the positions, differentiable (``jax.grad``).
    """
    Z, Z_ref = np.asarray(Z), np.asarray(Z_ref)
    x_ref, w_ref = np.asarray(x_ref), np.asarray(w_ref)
    if Z_ref.shape != (x_ref.shape[0],) or w_ref.shape != Z_ref.shape:
        raise ValueError(f"energy_fn: Z_ref {Z_ref.shape} and w_ref {w_ref.shape} must have shape "
                         f"({x_ref.shape[0]},), one per reference environment")
    check_kind("energy_fn", get)
    groups = []
    for e in np.unique(Z):
        ref = np.nonzero(Z_ref == e)[0]
        if ref.size == 0:
            continue
        nb = -(-ref.size // block)
        pad = nb * block - ref.size
        xs = np.concatenate([x_ref[ref], np.zeros((pad,) + x_ref.shape[1:], x_ref.dtype)])
        ws = np.concatenate([w_ref[ref], np.zeros(pad, w_ref.dtype)])  # padding: weight 0
        groups.append((np.nonzero(Z == e)[0], xs.reshape((nb, block) + x_ref.shape[1:]), ws.reshape(nb, block)))
    return EnergyModel(kernel_fn, environment, get, tuple(groups))


@functools.lru_cache(maxsize=32)
def _block_program(kernel_fn, environment: Callable, get: str, atoms: tuple) -> Callable:
    """``(x_block, w_block, R (b, n, 3)) → (E, ∂E/∂R)`` of one reference block, compiled once."""
    atoms = np.asarray(atoms)

    def e(xa, wa, R):
        return _block_energy(kernel_fn, get, xa, wa, environment(R)[atoms])

    return jax.jit(jax.vmap(jax.value_and_grad(e, argnums=2), (None, None, 0)))


def _padded_batch(R, start: int, batch: int) -> tuple[np.ndarray, int]:
    """``R[start:start + batch]`` padded to ``batch`` rows with copies of its last row (one compiled
    shape for every batch), and the number of real rows."""
    part = R[start:start + batch]
    n = part.shape[0]
    if n < batch:
        part = np.concatenate([part, np.repeat(part[-1:], batch - n, axis=0)])
    return part, n


def energies_and_forces(energy: Callable, R, *, batch: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """``(E (B,), F (B, n, 3))`` for conformations ``R (B, n, 3)``; ``F = −∂E/∂R``.

    Conformations are evaluated ``batch`` at a time (vmapped; memory ∝ ``batch``). An
    :class:`EnergyModel` is summed block by block of reference atoms by a program compiled
    once per element (see the class); any other ``energy(R)`` is differentiated whole.
    """
    R = np.asarray(R)
    if R.ndim != 3 or R.shape[-1] != 3:
        raise ValueError(f"energies_and_forces: R must have shape (B, n, 3), got {R.shape}")
    if isinstance(energy, EnergyModel):
        programs = [(_block_program(energy.kernel_fn, energy.environment, energy.get, tuple(int(a) for a in atoms)),
                     xs, ws) for atoms, xs, ws in energy.groups]

        def f(Rb):
            e, g = 0.0, 0.0
            for prog, xs, ws in programs:
                for xa, wa in zip(xs, ws):
                    eb, gb = prog(xa, wa, Rb)
                    e, g = e + np.asarray(eb), g + np.asarray(gb)
            return e, g
    else:
        f = jax.jit(jax.vmap(jax.value_and_grad(energy)))
    es, gs = [], []
    for s in range(0, R.shape[0], batch):
        part, n = _padded_batch(R, s, batch)
        e, g = f(part)
        es.append(np.asarray(e)[:n])
        gs.append(np.asarray(g)[:n])
    return np.concatenate(es), -np.concatenate(gs)


# ---------------------------------------------------------------------------------------------
# Derivative kernels: training on forces
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class ConformationKernel:
    """``k(R, R')``: the molecular same-element kernel between two conformations of one molecule.

    ``k(R, R') = Σ_{i, j: Z_i = Z_j} k_atom(x_i(R), x_j(R'))`` with ``x = environment(R)``; calling it
    is a pure JAX function of the two ``(n, 3)`` position arrays (differentiable in both). It keeps
    the atom ``kernel_fn``, so :func:`energy_force_gram` can use a faster route for the networks
    that have one (:mod:`eqntk.so3.derivatives`). Compiled programs are kept per object: build it
    once and reuse it.
    """

    kernel_fn: Any
    Z: np.ndarray
    environment: Callable
    get: str = "ntk"

    def __call__(self, R1, R2):
        x1, x2 = self.environment(R1), self.environment(R2)
        return sum(jnp.sum(self.kernel_fn.tile(x1[g], x2[g], get=self.get)) for g in _element_groups(self.Z))


def _element_groups(Z) -> list:
    return [np.nonzero(Z == e)[0] for e in np.unique(Z)]


def conformation_kernel(kernel_fn, Z, environment: Callable, *, get: str = "ntk") -> ConformationKernel:
    """``k(R, R')``, a :class:`ConformationKernel`: the same-element kernel of the atoms ``Z (n,)`` of two
    conformations, with ``environment: R (n, 3) → (n, ...)`` the kernel's inputs."""
    check_kind("conformation_kernel", get)
    return ConformationKernel(kernel_fn, np.asarray(Z), environment, get)


def energy_force_kernel(kernel: Callable) -> Callable:
    """The blocks of the joint energy–force covariance of a conformation kernel ``k(R, R')``.

    With forces ``F = −∂E/∂R`` and ``Cov(E(R), E(R')) = k(R, R')``, for one pair of
    conformations ``(R (n, 3), R' (n, 3))`` the returned function gives

    * ``ee = k(R, R')`` (scalar),
    * ``ef = Cov(E(R), F(R')) = −∂k/∂R'`` ``(3n,)``,
    * ``fe = Cov(F(R), E(R')) = −∂k/∂R`` ``(3n,)``,
    * ``ff = Cov(F(R), F(R')) = ∂²k/∂R∂R'`` ``(3n, 3n)``,

    by forward-over-reverse differentiation (``3n`` tangents through one reverse pass): no
    Jacobian of the environments and no second derivative of the atom kernel in its inputs is
    ever formed.
    """

    def blocks(R1, R2):
        n3 = R1.size
        ee, (g1, g2) = jax.value_and_grad(kernel, argnums=(0, 1))(R1, R2)
        ff = jax.jacfwd(jax.grad(kernel, argnums=0), argnums=1)(R1, R2).reshape(n3, n3)
        return ee, -g2.reshape(n3), -g1.reshape(n3), ff

    return blocks


METHODS = ("auto", "fourier", "autodiff")


@functools.lru_cache(maxsize=8)
def _tile_program(kernel: Callable, method: str = "autodiff") -> Callable:
    """The compiled tile ``(R1 (b1, n, 3), R2 (b2, n, 3)) → (ee, ef, fe, ff)`` of :func:`energy_force_kernel`
    blocks, vmapped over both sets (one program per kernel object and method).

    ``'fourier'``: :func:`eqntk.so3.derivatives.energy_force_tile` (pooled SO(3) networks only);
    ``'autodiff'``: forward-over-reverse differentiation of ``kernel``.
    """
    if method == "fourier":
        from .so3.derivatives import energy_force_tile, pooled_lift

        return energy_force_tile(pooled_lift(kernel.kernel_fn), kernel.Z, kernel.environment, kernel.get)
    return jax.jit(jax.vmap(jax.vmap(energy_force_kernel(kernel), (None, 0)), (0, None)))


def _route(kernel: Callable, method: str) -> str:
    """``'fourier'`` or ``'autodiff'``: the route :func:`energy_force_gram` takes for ``kernel`` and ``method``."""
    from .so3.derivatives import pooled_lift

    if method not in METHODS:
        raise ValueError(f"energy_force_gram: method must be one of {METHODS}, got {method!r}")
    fits = isinstance(kernel, ConformationKernel) and pooled_lift(kernel.kernel_fn) is not None
    if method == "fourier" and not fits:
        raise ValueError("energy_force_gram: method='fourier' needs a ConformationKernel (conformation_kernel) of a "
                         "S2ConvSO3 -> pointwise layers -> SO3Pool -> Dense network; use method='autodiff' "
                         "(or 'auto') for other kernels")
    return "fourier" if method == "fourier" or (method == "auto" and fits) else "autodiff"


def _put_tile(gram, i: int, j: int, blocks, b1: int, b2: int, n3: int) -> None:
    """Write one tile's blocks ``(ee (a, b), ef (a, b, 3n), fe (a, b, 3n), ff (a, b, 3n, 3n))`` for conformations
    ``i:i+a`` of the rows and ``j:j+b`` of the columns into ``gram`` (:func:`energy_force_gram`'s layout)."""
    ee, ef, fe, ff = blocks
    a, b = ee.shape
    fi, fj = slice(b1 + i * n3, b1 + (i + a) * n3), slice(b2 + j * n3, b2 + (j + b) * n3)
    gram[i:i + a, j:j + b] = ee
    gram[i:i + a, fj] = ef.reshape(a, b * n3)
    gram[fi, j:j + b] = fe.transpose(0, 2, 1).reshape(a * n3, b)
    gram[fi, fj] = ff.transpose(0, 2, 1, 3).reshape(a * n3, b * n3)


def energy_force_gram(kernel: Callable, R1, R2=None, *, batch: int = 4, method: str = "auto",
                      progress=None, store: Optional[str] = None, info: Optional[dict] = None) -> np.ndarray:
    """The joint energy–force Gram ``(B1 (1 + 3n), B2 (1 + 3n))`` of two sets of conformations.

    Row/column layout: the ``B`` energies first, then the forces conformation by conformation
    (``F[b, atom, xyz]`` flattened). ``R1 (B1, n, 3)``, ``R2 (B2, n, 3)`` (``None``: ``R1``, and only
    the upper triangle of conformation-pair tiles is computed; the result is symmetric).
    ``kernel``: :func:`conformation_kernel`'s (or any ``k(R, R')`` with ``method='autodiff'``).
    Pairs are evaluated ``batch × batch`` at a time, by one program compiled per ``kernel``, ``method``
    and ``batch`` (kept for the next call with the same ``kernel`` object: compiling the second
    derivatives takes far longer than evaluating a tile).

    ``method``: ``'fourier'`` differentiates a pooled SO(3) network's kernel on the Fourier side
    (:mod:`eqntk.so3.derivatives`; 8.3x / 9.8x faster for the NNGP / NTK of the ``eqntk qm9`` network in
    benchmarks/md17_force_kernel_fourier.py); ``'autodiff'`` by forward-over-reverse automatic differentiation
    of ``kernel`` (any network); ``'auto'``: Fourier where the network has it. The two agree to rounding
    (tests/test_forces.py). Force training needs the pool's oversampling 8 (docs/forces.md).

    ``store``: a directory (:class:`eqntk.core.store.TileStore`) where every finished tile is saved as soon
    as it is computed; a call with the same store reads the finished tiles back and computes only the rest
    (an interrupted N = 1,000 Gram, hours long, resumes where it stopped), and several processes sharing
    it compute different tiles. The store is keyed by the fingerprints of ``kernel`` (network, atoms,
    environment function), of ``R1, R2``, ``batch`` and the route; a store made for anything else is refused.
    ``kernel`` must then be fingerprintable (:mod:`eqntk.core.fingerprint`). ``info``: a dict, filled with
    ``tiles``, ``pairs`` and ``pairs_computed`` (conformation pairs computed by this call, not read from the
    store). Memory: the Gram, plus one tile's work.
    """
    from tqdm.auto import tqdm

    from .core.driver import run_shared

    R1 = np.asarray(R1)
    same = R2 is None
    R2 = R1 if same else np.asarray(R2)
    if R1.ndim != 3 or R2.ndim != 3 or R1.shape[1:] != R2.shape[1:] or R1.shape[2] != 3:
        raise ValueError(f"energy_force_gram: R1 {R1.shape} and R2 {R2.shape} must be (B, n, 3) of one molecule")
    b1, b2, n3 = R1.shape[0], R2.shape[0], R1.shape[1] * 3
    route = _route(kernel, method)
    tile_store = None if store is None else _gram_store(store, kernel, route, R1, None if same else R2, batch)
    f = _tile_program(kernel, route)
    gram = np.zeros((b1 * (1 + n3), b2 * (1 + n3)))
    tiles = [(i, j) for i in range(0, b1, batch) for j in range(0, b2, batch) if not (same and j < i)]
    quiet = progress is False or (progress is None and len(tiles) < 8)
    bar = tqdm(total=len(tiles), desc="energy-force Gram", unit="tile", disable=quiet)

    computed = [0]

    def compute(job):
        ((i, j),) = job
        (a, na), (b, nb) = _padded_batch(R1, i, batch), _padded_batch(R2, j, batch)
        computed[0] += na * nb
        return [[np.asarray(v)[:na, :nb] for v in f(a, b)]]

    def place(i, j, blocks):
        na, nb = blocks[0].shape
        _put_tile(gram, i, j, blocks, b1, b2, n3)
        if same and j > i:  # the mirrored tile: Cov(rows j, columns i) = Cov(rows i, columns j)ᵀ
            ee, ef, fe, ff = blocks
            _put_tile(gram, j, i, (ee.T, fe.transpose(1, 0, 2), ef.transpose(1, 0, 2), ff.transpose(1, 0, 3, 2)),
                      b1, b2, n3)
        elif same:  # a diagonal tile: symmetric up to rounding; make it exactly so
            rows = np.concatenate([np.arange(i, i + na), b1 + np.arange(i * n3, (i + na) * n3)])
            sub = gram[np.ix_(rows, rows)]
            gram[np.ix_(rows, rows)] = 0.5 * (sub + sub.T)
        bar.update(1)

    if tile_store is None:
        for i, j in tiles:
            place(i, j, compute([(i, j)])[0])
    else:
        run_shared(tiles, tile_store, 4, compute, place)
    bar.close()
    if info is not None:
        info.update(tiles=len(tiles), pairs_computed=computed[0],
                    pairs=b1 * (b1 + 1) // 2 if same else b1 * b2)
    return gram


def _gram_store(path: str, kernel: Callable, route: str, R1: np.ndarray, R2: Optional[np.ndarray], batch: int):
    """The :class:`~eqntk.core.store.TileStore` of one :func:`energy_force_gram` computation."""
    from . import __version__
    from .core.fingerprint import Unfingerprintable, fingerprint
    from .core.store import TileStore, fingerprint_arrays

    try:
        key = fingerprint(kernel)
    except Unfingerprintable as e:
        raise ValueError(f"energy_force_gram: store= needs a kernel whose fingerprint identifies it ({e}); "
                         "compute without a store") from None
    return TileStore(path, {"computation": "energy_force_gram", "kernel": key, "route": route, "batch": int(batch),
                            "R1": fingerprint_arrays(R1), "R2": "R1" if R2 is None else fingerprint_arrays(R2),
                            "eqntk": __version__})


@functools.lru_cache(maxsize=8)
def _predict_program(kernel: Callable) -> Callable:
    """``(R_ref (b, n, 3), α (b,), β (b, n, 3), R (B, n, 3)) → (E (B,), ∂E/∂R (B, n, 3))`` of one block of
    training conformations, compiled once per ``kernel`` (and shapes)."""

    def energy(R, R_ref, alpha, beta):
        def one(Rb, a, b):  # α_b k(R, R_b) + β_b · Cov(E(R), F(R_b)), Cov(E, F') = −∂k/∂R'
            k, dk = jax.jvp(lambda r: kernel(R, r), (Rb,), (b,))
            return a * k - dk

        return jnp.sum(jax.vmap(one)(R_ref, alpha, beta))

    return jax.jit(jax.vmap(jax.value_and_grad(energy), (0, None, None, None)))


def energy_force_predict(kernel: Callable, R_train, coef, R, *, block: int = 8, batch: int = 8,
                         progress=None) -> tuple[np.ndarray, np.ndarray]:
    """Energies and forces ``(E (B,), F (B, n, 3))`` of an energy–force kernel model at conformations ``R``.

    The model is ``E(R) = Σ_b α_b k(R, R_b) + Σ_b β_b · Cov(E(R), F(R_b))``, the posterior mean of
    the energy given energies and forces of the training conformations ``R_train (T, n, 3)``, with
    ``coef = (α (T,), β (T, n, 3))`` flattened in :func:`energy_force_gram`'s layout, ``(T (1 + 3n),)``
    (e.g. ``(G + λ)⁻¹ [E; F]`` with the training Gram ``G``); and ``F = −∂E/∂R``. It equals
    ``energy_force_gram(kernel, R, R_train) @ coef`` without forming the ``3n × 3n`` force–force
    blocks: one forward-mode derivative in ``R_b`` along ``β_b`` and one reverse pass in ``R`` per
    pair of conformations, against ``3n`` tangents for the Gram.

    ``block`` training and ``batch`` predicted conformations are evaluated together (padding with
    weight 0 / repeated rows); one program is compiled per ``kernel`` object and shapes.
    Units: those of the targets behind ``coef`` (energy, energy/Å).
    """
    from tqdm.auto import tqdm

    R_train, R, coef = np.asarray(R_train), np.asarray(R), np.asarray(coef, np.float64)
    if R_train.ndim != 3 or R.ndim != 3 or R.shape[1:] != R_train.shape[1:] or R.shape[2] != 3:
        raise ValueError(f"energy_force_predict: R_train {R_train.shape} and R {R.shape} must be (B, n, 3) "
                         "of one molecule")
    t, n3 = R_train.shape[0], R_train.shape[1] * 3
    if coef.shape != (t * (1 + n3),):
        raise ValueError(f"energy_force_predict: coef must have shape ({t * (1 + n3)},) = T (1 + 3n) in "
                         f"energy_force_gram's layout (energies, then forces), got {coef.shape}")
    alpha, beta = coef[:t], coef[t:].reshape(R_train.shape)
    nb = -(-t // block)
    pad = nb * block - t
    R_ref = np.concatenate([R_train, np.repeat(R_train[-1:], pad, axis=0)])
    alpha = np.concatenate([alpha, np.zeros(pad)])
    beta = np.concatenate([beta, np.zeros((pad,) + R_train.shape[1:])])
    f = _predict_program(kernel)
    starts = range(0, R.shape[0], batch)
    quiet = progress is False or (progress is None and len(starts) * nb < 8)
    es, gs = [], []
    for s in tqdm(starts, desc="energy-force prediction", unit="batch", disable=quiet):
        part, m = _padded_batch(R, s, batch)
        e, g = 0.0, 0.0
        for i in range(0, nb * block, block):
            eb, gb = f(part, R_ref[i:i + block], alpha[i:i + block], beta[i:i + block])
            e, g = e + np.asarray(eb), g + np.asarray(gb)
        es.append(np.asarray(e)[:m])
        gs.append(np.asarray(g)[:m])
    return np.concatenate(es), -np.concatenate(gs)
