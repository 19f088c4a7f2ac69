"""The point groups of the planar image groups, and their action on pixel grids.

A planar group ``G = R ⋉ Z²`` is given by its finite point group ``R`` ⊂ O(2)
acting on the pixel lattice: ``p2`` (``R = C_2``, 180° rotations), ``p4``
(``C_4``, 90° rotations), ``p4m`` (``D_4``, rotations and flips), and the
trivial group (the plain CNN). Elements are stored as 2×2 integer matrices
``A_d`` acting on ``(row, col)`` offsets; element 0 is the identity.

An element acts on an image ``x`` of shape ``(..., H, W, C)`` by
``(T_d x)(p) = x(c + A_d (p − c))`` with ``c`` the centre of the grid. With
``R = [[0, 1], [-1, 0]]`` and ``F = [[1, 0], [0, -1]]`` the elements are
``A_{4m+k} = R^k F^m``, so that ``T_{R^k} x = np.rot90(x, k, axes=(1, 2))``
on NHWC batches and ``T_F x = x[:, :, ::-1]``.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import jax.numpy as jnp

__all__ = ["PlanarGroup", "TRIVIAL", "P2", "P4", "P4M", "pixel_permutation", "transform_grid"]

_R = np.array([[0, 1], [-1, 0]])
_F = np.array([[1, 0], [0, -1]])


@dataclasses.dataclass(frozen=True)
class PlanarGroup:
    """A finite point group ``R`` ⊂ O(2) of the pixel lattice.

    ``matrices``: tuple of ``((a, b), (c, d))`` integer matrices (hashable), element 0 the identity;
    ``rotation[d]``, ``flip[d]``: ``A_d = R^rotation · F^flip`` with ``R`` the 360/n° rotation above.
    """

    name: str
    matrices: tuple
    n_rot: int

    @property
    def order(self) -> int:
        return len(self.matrices)

    @functools.cached_property
    def array(self) -> np.ndarray:
        """``(|G|, 2, 2)`` integer matrices."""
        return np.array(self.matrices, dtype=np.int64)

    def index(self, A) -> int:
        A = np.asarray(A)
        for i, B in enumerate(self.array):
            if np.array_equal(A, B):
                return i
        raise ValueError(f"{A.tolist()} is not an element of {self.name}")

    @functools.cached_property
    def table(self) -> np.ndarray:
        """``table[a, b]`` = index of ``A_a A_b``."""
        return np.array([[self.index(a @ b) for b in self.array] for a in self.array])

    @functools.cached_property
    def inverse(self) -> np.ndarray:
        """``inverse[a]`` = index of ``A_a⁻¹``."""
        return np.array([int(np.nonzero(self.table[a] == 0)[0][0]) for a in range(self.order)])

    @functools.cached_property
    def rotation(self) -> np.ndarray:
        return np.array([i % self.n_rot for i in range(self.order)])

    @functools.cached_property
    def flip(self) -> np.ndarray:
        return np.array([i // self.n_rot for i in range(self.order)])

    @property
    def square_only(self) -> bool:
        """Whether some element swaps rows and columns (then images must be square)."""
        return any(A[0, 0] == 0 for A in self.array)

    def __repr__(self):
        return f"PlanarGroup({self.name})"


def _make(name: str, n_rot: int, flips: bool) -> PlanarGroup:
    step = np.linalg.matrix_power(_R, 4 // n_rot) if n_rot > 1 else np.eye(2, dtype=int)
    mats = []
    for m in range(2 if flips else 1):
        for k in range(n_rot):
            A = np.linalg.matrix_power(step, k) @ np.linalg.matrix_power(_F, m)
            mats.append(tuple(tuple(int(v) for v in row) for row in A))
    return PlanarGroup(name, tuple(mats), n_rot)


TRIVIAL = _make("trivial", 1, False)
P2 = _make("p2", 2, False)
P4 = _make("p4", 4, False)
P4M = _make("p4m", 4, True)


@functools.lru_cache(maxsize=None)
def pixel_permutation(group: PlanarGroup, H: int, W: int) -> np.ndarray:
    """``(|G|, H·W)`` flat source indices: ``(T_d v).flat[p] = v.flat[perm[d, p]]``.

    ``T_d v(p) = v(c + A_d (p − c))`` about the grid centre ``c = ((H−1)/2, (W−1)/2)``.
    Raises ``ValueError`` when the grid is not mapped onto itself (90° rotations of
    non-square grids).
    """
    if group.square_only and H != W:
        raise ValueError(
            f"{group.name} rotates by 90°: images (and feature maps) must be square, got {H}×{W}"
        )
    i, j = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    p2 = np.stack([2 * i - (H - 1), 2 * j - (W - 1)], axis=-1)  # 2 (p − c)
    out = []
    for A in group.array:
        s2 = p2 @ A.T  # 2 A (p − c)
        si = (s2[..., 0] + (H - 1)) // 2
        sj = (s2[..., 1] + (W - 1)) // 2
        out.append((si * W + sj).reshape(-1))
    return np.stack(out)


def transform_grid(v, group: PlanarGroup, axes: tuple = (-3, -2), elements=None):
    """Apply every element (or ``elements``) of ``group`` to the grid axes of ``v``.

    ``v``: array with spatial axes ``axes = (row, col)``. Returns ``v`` with a new group
    axis of length ``|G|`` (or ``len(elements)``) inserted just before the row axis:
    ``out[..., d, :, :, ...] = T_d v``.
    """
    v = jnp.asarray(v)
    a0, a1 = (ax % v.ndim for ax in axes)
    if a1 != a0 + 1:
        raise ValueError("transform_grid: the row and column axes must be adjacent")
    H, W = v.shape[a0], v.shape[a1]
    perm = pixel_permutation(group, H, W)
    if elements is not None:
        perm = perm[np.asarray(elements)]
    flat = v.reshape(v.shape[:a0] + (H * W,) + v.shape[a1 + 1 :])
    out = jnp.take(flat, jnp.asarray(perm.reshape(-1)), axis=a0)
    return out.reshape(v.shape[:a0] + (perm.shape[0], H, W) + v.shape[a1 + 1 :])
