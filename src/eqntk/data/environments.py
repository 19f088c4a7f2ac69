"""Atomic environments as spherical signals with analytic harmonic coefficients.

For each atom ``i`` of a molecule, every other atom ``j`` of the same molecule
within the cutoff contributes a smeared bump on S² centred at the direction
``r̂_ij`` of ``r_ij = R_j − R_i``. By the Funk–Hecke theorem a zonal bump
``b(x · r̂)`` has real-SH coefficients ``c_l · Y_lm(r̂)``, with
``c_l = 2π ∫_{-1}^{1} b(t) P_l(t) dt``; no S² grid is needed. The signal of
channel ``(e, p)`` (neighbour element ``e``, power ``p``) is

    f_i,(e,p)(x) = Σ_{j ≠ i, Z_j = e} Z_j · |r_ij|^(−p) · f_cut(|r_ij|) · b(x · r̂_ij),

so its coefficients are ``f̂_i,(e,p)[l, m] = c_l Σ_j Z_j |r_ij|^(−p) f_cut(|r_ij|) Y_lm(r̂_ij)``
(``Z_j`` only with ``charge_weight=True``; distances in Å, so the weights are in Å^(−p)).

Radial bases (``radial``): the distance weight ``|r|^(−p)`` of channel ``(e, p)`` is one choice
of radial function ``g_k(r)``; the signal of channel ``(e, k)`` is
``Σ_{j, Z_j = e} Z_j g_k(|r_ij|) f_cut(|r_ij|) b(x · r̂_ij)`` for

* ``'powers'`` (default) — ``g_k(r) = r^(−p_k)``, one channel per entry of ``powers``;
* ``'gaussian'`` — ``n_radial`` Gaussians ``g_k(r) = exp(−(r − μ_k)² / (2 s²))``, centres
  ``μ_k`` evenly spaced from ``r_min`` to the cutoff, width ``s = radial_width`` (default: the
  spacing of the centres), so that the channels of one element, taken together, resolve the
  distance of each neighbour: their inner product ``Σ_k g_k(r) g_k(r')`` is a smooth kernel
  in ``r − r'`` of width about ``√2 s``, and the S² signals form a neighbour density
  resolved in direction (the bump) and in distance (the basis), as in SOAP;
* ``'bessel'`` — ``n_radial`` spherical Bessel functions of order 0,
  ``g_k(r) = sin(k π r / r_c) / r`` (``k = 1 … n_radial``; needs a cutoff), the orthogonal
  basis of ``[0, r_c]`` used by DimeNet.

Both take a radial scaling ``r^(−q)`` (``radial_scaling=q``), as SOAP does: without it the
many far neighbours outweigh the few near ones.

More channels cost the SO(3) kernels almost nothing: the lift contracts them into one Wigner-D
block per degree before any grid is touched (``so3.kernel_state.LiftBase``).

Smoothings (unit-mass bumps, ``c_0 = 1``; ``width`` σ in radians):

* ``'vmf'`` (default) — von Mises–Fisher, ``b(t) = κ exp(κ t) / (4π sinh κ)`` with
  ``κ = 1/σ²``; ``c_l = i_l(κ) / i_0(κ)`` (modified spherical Bessel functions).
  Its closed form in real space makes the coefficients checkable on a grid.
* ``'heat'`` — the heat kernel of S² at time σ²/2, ``c_l = exp(−σ² l(l+1)/2)``
  (the spherical analogue of a Gaussian of standard deviation σ).

For small σ both are ≈ a Gaussian ``exp(−θ²/(2σ²))`` in the angle θ to ``r̂``.

Cutoff: ``f_cut(r) = ½ (1 + cos(π r / r_c))`` for ``r < r_c``, else 0 (smooth at
``r_c``); ``cutoff=None`` keeps all atoms of the molecule with ``f_cut = 1``.

Output layout: ``(n_atoms, L², C)`` float64, the input layout of ``stax.S2ConvSO3``
(flat index ``l² + l + m``, sphericart's real harmonics, z pole). Channels are
ordered element-major: ``c = e_index · n_radial_channels + k``; with
``include_center=True``, ``n_elements`` more channels follow, holding the
one-hot element of the central atom as a uniform unit-mass signal (coefficient
``Z_i^{charge_weight} / √(4π)`` at ``l = 0``).

Rotating a molecule, ``R ↦ Q R``, maps every environment's coefficients to
``D^l(Q) f̂_l`` exactly (``eqntk.so3.wigner.rotate_coeffs``); reordering atoms
permutes the environments.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Optional, Sequence

import numpy as np
import scipy.sparse
import scipy.special

from .elements import QM9_ELEMENTS, canonical_elements, check_elements, symbol
from .molecules import MoleculeSet

__all__ = [
    "EnvironmentSpec",
    "atomic_environments",
    "smoothing_coefficients",
    "bump_coefficients",
    "bump_profile",
    "cosine_cutoff",
    "radial_functions",
]

RADIAL_BASES = ("powers", "gaussian", "bessel")

_MAX_PAIRS_PER_CHUNK = 1 << 19


@dataclasses.dataclass(frozen=True)
class EnvironmentSpec:
    """How atomic environments are turned into S² signals (see the module docstring).

    Attributes:
        bandlimit: ``L``; coefficients of degrees ``l < L`` (``L²`` per channel).
        cutoff: neighbour cutoff radius in Å (``None``: the whole molecule, no cutoff function).
        powers: exponents ``p`` of the distance weights ``|r|^(−p)`` (one channel each per element;
            ``radial='powers'`` only).
        radial: the radial basis, ``'powers'``, ``'gaussian'`` or ``'bessel'`` (module docstring).
        n_radial: number of radial functions per element (``'gaussian'``, ``'bessel'``).
        r_min: centre of the first Gaussian in Å (``'gaussian'``).
        radial_width: width ``s`` of the Gaussians in Å (``None``: the spacing of the centres).
        radial_scaling: ``q ≥ 0``: the ``'gaussian'``/``'bessel'`` functions are multiplied by
            ``r^(−q)``, so that near neighbours weigh more than the many far ones (SOAP's radial scaling).
        elements: the element set (atomic numbers or symbols), one channel group each;
            atoms of other elements raise ``ValueError`` (QM7 needs S: ``(1, 6, 7, 8, 16)``).
        smoothing: ``'vmf'`` (von Mises–Fisher) or ``'heat'`` (heat kernel).
        width: angular width σ of the bump in radians.
        charge_weight: multiply each neighbour's weight by its atomic number.
        include_center: append one channel per element holding the central atom's element.
        allow_isolated: atoms without neighbours (one-atom molecules, or nothing within
            the cutoff) get an all-zero neighbour signal instead of raising ``ValueError``.
    """

    bandlimit: int = 8
    cutoff: Optional[float] = 5.0
    powers: Sequence[float] = (1.0, 2.0, 3.0)
    radial: str = "powers"
    n_radial: int = 8
    r_min: float = 0.5
    radial_width: Optional[float] = None
    radial_scaling: float = 0.0
    elements: Sequence = QM9_ELEMENTS
    smoothing: str = "vmf"
    width: float = 0.5
    charge_weight: bool = True
    include_center: bool = False
    allow_isolated: bool = False

    def __post_init__(self):
        if int(self.bandlimit) != self.bandlimit or self.bandlimit < 1:
            raise ValueError(f"bandlimit must be a positive integer, got {self.bandlimit!r}")
        if self.cutoff is not None and not (np.isfinite(self.cutoff) and self.cutoff > 0):
            raise ValueError(f"cutoff must be a positive distance in Å or None, got {self.cutoff!r}")
        powers = tuple(float(p) for p in np.atleast_1d(self.powers))
        if not powers or not all(np.isfinite(powers)):
            raise ValueError(f"powers must be a non-empty sequence of finite numbers, got {self.powers!r}")
        if self.radial not in RADIAL_BASES:
            raise ValueError(f"radial must be one of {RADIAL_BASES}, got {self.radial!r}")
        if self.radial != "powers":
            if isinstance(self.n_radial, bool) or int(self.n_radial) != self.n_radial or self.n_radial < 1:
                raise ValueError(f"n_radial must be a positive integer, got {self.n_radial!r}")
            object.__setattr__(self, "n_radial", int(self.n_radial))
            if self.cutoff is None:
                raise ValueError(f"radial={self.radial!r} spans [0, cutoff]: it needs a cutoff, got None")
        if self.radial != "powers" and not (np.isfinite(self.radial_scaling) and self.radial_scaling >= 0):
            raise ValueError(f"radial_scaling must be a finite number >= 0, got {self.radial_scaling!r}")
        if self.radial == "gaussian":
            if not (np.isfinite(self.r_min) and 0 <= self.r_min < self.cutoff):
                raise ValueError(f"r_min must be a distance in [0, cutoff) Å, got {self.r_min!r}")
            if self.radial_width is not None and not (np.isfinite(self.radial_width) and self.radial_width > 0):
                raise ValueError(f"radial_width must be a positive distance in Å or None, got {self.radial_width!r}")
        if self.smoothing not in ("vmf", "heat"):
            raise ValueError(f"smoothing must be 'vmf' or 'heat', got {self.smoothing!r}")
        if not (np.isfinite(self.width) and self.width > 0):
            raise ValueError(f"width must be a positive angle in radians, got {self.width!r}")
        object.__setattr__(self, "bandlimit", int(self.bandlimit))
        object.__setattr__(self, "powers", powers)
        object.__setattr__(self, "elements", canonical_elements(self.elements))

    @property
    def n_radial_channels(self) -> int:
        """Radial functions per neighbour element: ``len(powers)`` or ``n_radial``."""
        return len(self.powers) if self.radial == "powers" else self.n_radial

    @property
    def n_channels(self) -> int:
        """``C = n_elements · n_radial_channels (+ n_elements with include_center)``."""
        n = len(self.elements) * self.n_radial_channels
        return n + (len(self.elements) if self.include_center else 0)

    @property
    def gaussian_centres(self) -> np.ndarray:
        """``(μ, s)``: the centres ``μ_k`` (n_radial,) and the width ``s`` of the ``'gaussian'`` basis, in Å."""
        mu = np.linspace(self.r_min, self.cutoff, self.n_radial)
        s = self.radial_width if self.radial_width is not None else (
            (self.cutoff - self.r_min) / max(self.n_radial - 1, 1))
        return mu, float(s)

    @property
    def channel_names(self) -> list[str]:
        """Human-readable channel labels, e.g. ``'C r^-1'``, ``'C g(1.2 Å)'``, ``'O j0(2)'``, ``'center O'``."""
        if self.radial == "powers":
            radial = [f"r^-{p:g}" for p in self.powers]
        elif self.radial == "gaussian":
            radial = [f"g({m:.2f} Å)" for m in self.gaussian_centres[0]]
        else:
            radial = [f"j0({k})" for k in range(1, self.n_radial + 1)]
        names = [f"{symbol(e)} {g}" for e in self.elements for g in radial]
        if self.include_center:
            names += [f"center {symbol(e)}" for e in self.elements]
        return names


def smoothing_coefficients(bandlimit: int, smoothing: str = "vmf", width: float = 0.5) -> np.ndarray:
    """Funk–Hecke coefficients ``c_l`` (l < L) of the unit-mass bump (``c_0 = 1``), shape ``(L,)``."""
    l = np.arange(int(bandlimit), dtype=np.float64)
    if smoothing == "heat":
        return np.exp(-0.5 * width**2 * l * (l + 1))
    if smoothing == "vmf":
        kappa = 1.0 / width**2
        # i_l(κ)/i_0(κ) = I_{l+1/2}(κ)/I_{1/2}(κ); exponentially scaled Bessel functions avoid overflow
        return scipy.special.ive(l + 0.5, kappa) / scipy.special.ive(0.5, kappa)
    raise ValueError(f"smoothing must be 'vmf' or 'heat', got {smoothing!r}")


def bump_profile(cos_angle, smoothing: str = "vmf", width: float = 0.5) -> np.ndarray:
    """The bump ``b(t)`` as a function of ``t = x · r̂`` (values on S², integral 1).

    ``'vmf'``: the closed form; ``'heat'``: its Legendre series
    ``Σ_l c_l (2l+1)/(4π) P_l(t)``, summed until ``c_l < 1e-18``.
    """
    t = np.asarray(cos_angle, dtype=np.float64)
    if smoothing == "vmf":
        kappa = 1.0 / width**2
        # κ e^{κt} / (4π sinh κ) = κ e^{κ(t−1)} / (2π (1 − e^{−2κ}))
        return kappa * np.exp(kappa * (t - 1.0)) / (2 * np.pi * -np.expm1(-2 * kappa))
    if smoothing == "heat":
        lmax = int(np.ceil(np.sqrt(2 * 18 * np.log(10)) / width)) + 2
        c = smoothing_coefficients(lmax + 1, "heat", width)
        return np.polynomial.legendre.legval(t, c * (2 * np.arange(lmax + 1) + 1) / (4 * np.pi))
    raise ValueError(f"smoothing must be 'vmf' or 'heat', got {smoothing!r}")


@functools.lru_cache(maxsize=16)
def _sphericart(bandlimit: int):
    import sphericart  # numpy package; independent of JAX's version

    return sphericart.SphericalHarmonics(bandlimit - 1)


def _harmonics(xyz: np.ndarray, bandlimit: int) -> np.ndarray:
    """Real orthonormal SH of directions ``xyz`` (P, 3) (normalised internally) → (P, L²)."""
    if xyz.shape[0] == 0:
        return np.zeros((0, bandlimit**2))
    return _sphericart(bandlimit).compute(np.ascontiguousarray(xyz, dtype=np.float64))


def bump_coefficients(directions, bandlimit: int, smoothing: str = "vmf", width: float = 0.5) -> np.ndarray:
    """Coefficients ``c_l Y_lm(r̂)`` of unit-mass bumps at ``directions`` (..., 3) → (..., L²)."""
    d = np.asarray(directions, dtype=np.float64)
    if d.shape[-1] != 3:
        raise ValueError(f"directions must have shape (..., 3), got {d.shape}")
    flat = d.reshape(-1, 3)
    if np.any(np.linalg.norm(flat, axis=1) == 0) or not np.all(np.isfinite(flat)):
        raise ValueError("directions must be finite and non-zero")
    c = smoothing_coefficients(bandlimit, smoothing, width)
    Y = _harmonics(flat, bandlimit) * np.repeat(c, 2 * np.arange(bandlimit) + 1)
    return Y.reshape(d.shape[:-1] + (bandlimit**2,))


def cosine_cutoff(r, cutoff: Optional[float], xp=np):
    """Smooth cutoff ``½ (1 + cos(π r / r_c))`` for ``r < r_c``, 0 beyond; all ones for ``cutoff=None``.

    ``xp``: the array namespace (``numpy``, or ``jax.numpy`` for a differentiable version;
    its derivative vanishes at ``r_c`` from both sides).
    """
    r = np.asarray(r, dtype=np.float64) if xp is np else r
    if cutoff is None:
        return xp.ones_like(r)
    return xp.where(r < cutoff, 0.5 * (1.0 + xp.cos(np.pi * xp.minimum(r, cutoff) / cutoff)), 0.0)


def radial_functions(r, spec: EnvironmentSpec, xp=np):
    """The radial functions ``g_k(r)`` of ``spec`` (module docstring) at distances ``r`` (P,) Å → (P, K).

    Without the cutoff function and the charge weight; ``K = spec.n_radial_channels``.
    ``xp``: the array namespace (``numpy``, or ``jax.numpy``); ``r > 0``.
    """
    r = (np.asarray(r, dtype=np.float64) if xp is np else r)[:, None]
    if spec.radial == "powers":
        return r ** (-np.asarray(spec.powers)[None, :])
    scale = r ** (-spec.radial_scaling) if spec.radial_scaling else 1.0
    if spec.radial == "gaussian":
        mu, s = spec.gaussian_centres
        return scale * xp.exp(-0.5 * ((r - mu[None, :]) / s) ** 2)
    k = np.arange(1, spec.n_radial + 1)[None, :]
    return scale * xp.sin(k * np.pi * r / spec.cutoff) / r


def _chunks(counts: np.ndarray, max_pairs: int):
    """Molecule ranges ``[a, b)`` whose Σ n² stays below ``max_pairs`` (at least one molecule each)."""
    cum = np.concatenate([[0], np.cumsum(counts.astype(np.int64) ** 2)])
    a = 0
    n = counts.size
    while a < n:
        b = int(np.searchsorted(cum, cum[a] + max_pairs, side="right")) - 1
        b = min(max(b, a + 1), n)
        yield a, b
        a = b


def atomic_environments(molecules: MoleculeSet, spec: Optional[EnvironmentSpec] = None, *, dtype=np.float64,
                        **kwargs) -> np.ndarray:
    """Real-SH coefficients of every atom's environment.

    Args:
        molecules: a :class:`MoleculeSet` (positions in Å).
        spec: an :class:`EnvironmentSpec`; keyword arguments override its fields
            (e.g. ``atomic_environments(ms, bandlimit=6, cutoff=4.0)``).
        dtype: dtype of the result (computed in float64; ``np.float32`` halves the memory,
            ``n_atoms · L² · C`` numbers: 0.7 GB in float64 for 5,000 QM9 molecules at the defaults).

    Returns:
        array ``(n_atoms, L², C)`` in atom order (the order of ``molecules.Z``),
        ready for ``stax.S2ConvSO3`` (see the module docstring for the channels).

    Raises:
        ValueError: unknown elements (named), one-atom molecules or atoms without a
            neighbour within the cutoff (unless ``allow_isolated=True``), coinciding atoms.
    """
    if not isinstance(molecules, MoleculeSet):
        raise TypeError(f"atomic_environments expects a MoleculeSet, got {type(molecules).__name__}; "
                        "build one with MoleculeSet.from_molecules([(Z, R), ...])")
    spec = dataclasses.replace(spec or EnvironmentSpec(), **kwargs) if kwargs else (spec or EnvironmentSpec())
    check_elements(molecules.Z, spec.elements, where="atomic_environments")
    L, K, E = spec.bandlimit, spec.n_radial_channels, len(spec.elements)
    C_nb = E * K
    counts = molecules.counts
    if not spec.allow_isolated and np.any(counts == 1):
        i = int(np.nonzero(counts == 1)[0][0])
        raise ValueError(
            f"molecule {i} (id {int(molecules.ids[i])}) has a single atom: its environment is empty. Remove "
            f"one-atom molecules, or pass allow_isolated=True to give such atoms a zero neighbour signal")
    lookup = np.full(max(max(spec.elements), int(molecules.Z.max())) + 1, -1)
    lookup[list(spec.elements)] = np.arange(E)
    elem = lookup[molecules.Z]
    charge = molecules.Z.astype(np.float64) if spec.charge_weight else np.ones(molecules.n_atoms_total)
    cl_flat = np.repeat(smoothing_coefficients(L, spec.smoothing, spec.width), 2 * np.arange(L) + 1)

    out = np.zeros((molecules.n_atoms_total, L * L, spec.n_channels), dtype=dtype)
    off = molecules.offsets
    for a, b in _chunks(counts, _MAX_PAIRS_PER_CHUNK):
        c = counts[a:b]
        atom0, atom1 = int(off[a]), int(off[b])
        size_of_atom = np.repeat(c, c)  # size of each atom's molecule
        start_of_atom = np.repeat(off[a:b], c)
        i = np.repeat(np.arange(atom0, atom1), size_of_atom)
        first = np.repeat(np.cumsum(size_of_atom) - size_of_atom, size_of_atom)
        j = np.repeat(start_of_atom, size_of_atom) + (np.arange(i.size) - first)
        keep = i != j
        i, j = i[keep], j[keep]
        d = molecules.R[j] - molecules.R[i]
        r = np.linalg.norm(d, axis=1)
        if np.any(r == 0):
            k = int(np.nonzero(r == 0)[0][0])
            raise ValueError(f"atoms {int(i[k])} and {int(j[k])} of molecule {int(np.searchsorted(off, i[k], 'right') - 1)} "
                             "are at the same position")
        if spec.cutoff is not None:
            near = r < spec.cutoff
            i, j, d, r = i[near], j[near], d[near], r[near]
        if not spec.allow_isolated:
            n_nb = np.bincount(i - atom0, minlength=atom1 - atom0)
            if np.any(n_nb == 0):
                k = atom0 + int(np.nonzero(n_nb == 0)[0][0])
                m = int(np.searchsorted(off, k, "right") - 1)
                raise ValueError(
                    f"atom {k} ({symbol(molecules.Z[k])}, molecule {m}, id {int(molecules.ids[m])}) has no neighbour "
                    f"within the cutoff {spec.cutoff} Å; increase the cutoff or pass allow_isolated=True")
        if i.size:
            w = (charge[j] * cosine_cutoff(r, spec.cutoff))[:, None] * radial_functions(r, spec)  # (P, K)
            rows = ((i - atom0) * C_nb + elem[j] * K)[:, None] + np.arange(K)[None, :]
            cols = np.broadcast_to(np.arange(i.size)[:, None], rows.shape)
            A = scipy.sparse.csr_matrix((w.ravel(), (rows.ravel(), cols.ravel())),
                                        shape=((atom1 - atom0) * C_nb, i.size))
            f = np.asarray(A @ _harmonics(d, L))  # ((atoms·C_nb), L²)
            f = f.reshape(atom1 - atom0, C_nb, L * L).transpose(0, 2, 1) * cl_flat[None, :, None]
            out[atom0:atom1, :, :C_nb] = f
    if spec.include_center:
        out[np.arange(molecules.n_atoms_total), 0, C_nb + elem] = charge / np.sqrt(4 * np.pi)
    return out
