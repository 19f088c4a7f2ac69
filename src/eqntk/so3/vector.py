"""Equivariant vector outputs: the degree-1 blocks of an unpooled SO(3) kernel as a 3 × 3 matrix kernel.

A network that ends in a group convolution (``... → SO3ConvSO3(·, bandlimit ≥ 2)``, no pool)
has, per pair of inputs, the Wigner-D blocks ``ψ̂^l`` of its kernel (``kernel_fn`` returns them
packed, ``(N1, N2, Σ_{l<L} (2l+1)²)``). Its degree-1 output — a vector per input, e.g. the force
on an atom — is the Fourier coefficient ``v = ∫ f(g) D¹(g) dg`` of the last feature map, and
``Cov(v_a, v_b) ∝ ψ̂¹(a, b)`` (docs/mathematics.md, "Equivariant vector outputs"). Rotating the
inputs rotates the blocks: ``ψ̂¹(R·a, R'·b) = D¹(R) ψ̂¹(a, b) D¹(R')ᵀ``. In the real spherical-
harmonic order of the inputs (``m = -1, 0, 1`` ~ ``y, z, x``) ``D¹(R)`` is ``R`` with its rows and
columns permuted, so in Cartesian order

    K(R·a, R'·b) = R K(a, b) R'ᵀ,        K(b, a) = K(a, b)ᵀ,

a matrix-valued kernel for vector targets (kernel ridge regression on the ``(3 N1, 3 N2)`` block
matrix of :func:`as_block_matrix`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["SH_OF_CARTESIAN", "vector_kernel", "vector_blocks", "as_block_matrix"]

#: index of the real l = 1 harmonic (order m = -1, 0, 1 ~ y, z, x) carrying each Cartesian axis x, y, z
SH_OF_CARTESIAN = np.array([2, 0, 1])


def vector_kernel(kernel_fn, x1, x2=None, *, get: str = "ntk", **kwargs) -> np.ndarray:
    """The ``(N1, N2, 3, 3)`` Cartesian matrix kernel of a network's degree-1 output.

    Args:
        kernel_fn: an eqntk SO(3) ``kernel_fn`` whose network ends in ``SO3ConvSO3`` with
            bandlimit ≥ 2 (not pooled): it returns packed Wigner-D blocks.
        x1: ``(N1, L_in², C)`` inputs; ``x2``: ``(N2, L_in², C)`` or ``None`` (``x1``).
        get: ``'ntk'`` or ``'nngp'``.
        kwargs: passed to ``kernel_fn`` (``tile_size``, ``memory_budget``, ``store``, …).

    Returns:
        ``K[i, j, a, b]``: covariance of component ``a`` (x, y, z) of input ``i``'s vector with
        component ``b`` of input ``j``'s; ``K(R·x, R'·x') = R K R'ᵀ``.
    """
    from ..core.checks import check_kind

    check_kind("vector_kernel", get)
    return vector_blocks(kernel_fn(x1, x2, get=get, **kwargs))


def vector_blocks(blocks) -> np.ndarray:
    """Packed Wigner-D blocks ``(N1, N2, Σ_{l<L} (2l+1)²)``, ``L ≥ 2`` → the Cartesian ``(N1, N2, 3, 3)``
    degree-1 matrix kernel (what :func:`vector_kernel` returns; for one ``kernel_fn`` call that
    computes both kernels)."""
    k = np.asarray(blocks)
    if k.ndim != 3 or k.shape[-1] < 10:
        raise ValueError(
            f"vector_kernel: the network must end in SO3ConvSO3 with bandlimit ≥ 2 (unpooled Wigner-D "
            f"blocks of shape (N1, N2, ≥ 10)); its kernel has shape {k.shape}")
    # ψ̂¹[m, m'] is packed m-major at 1..9: one gather, in Cartesian order (one copy of the degree-1 part)
    packed = 1 + 3 * SH_OF_CARTESIAN[:, None] + SH_OF_CARTESIAN[None, :]
    return k[..., packed.ravel()].reshape(k.shape[:2] + (3, 3))


def as_block_matrix(K: np.ndarray) -> np.ndarray:
    """``(N1, N2, 3, 3)`` → ``(3 N1, 3 N2)``, row ``3 i + a``: the Gram of the stacked vectors ``v_i[a]``."""
    K = np.asarray(K)
    n1, n2 = K.shape[:2]
    return np.transpose(K, (0, 2, 1, 3)).reshape(3 * n1, 3 * n2)
