"""The CNN kernel operator: the mean of a spatial pair kernel over a filter window.

A convolution with a white ``q × q`` filter maps the covariance ``K(t, t')`` of
its (padded) input maps to ``A[K](t, t') = (1/q²) Σ_y K(t + y, t' + y)``, the
sum over the window offsets ``y ∈ {−r..r}²`` (``q = 2r + 1``). This is the hot
loop of every planar kernel. It is a convolution of the 4-d array
``K(i, j, i', j')`` with a diagonal filter, and it is separable: a diagonal
filter on the ``(i, i')`` plane, then on ``(j, j')``. Each one is evaluated as
the sum of its ``q`` taps, i.e. of ``q`` shifted views of the array, which XLA
fuses into one memory pass per plane: ``2q`` adds per element instead of the
``q⁴`` multiply-adds of a dense 4-d convolution or the ``2q²`` of two dense 2-d
ones. The ``(j, j')`` plane runs first, as an XLA computation of its own
(:func:`eqntk.core.fusion.apart`), then the ``(i, i')`` plane. The lift's window
mean is instead one matrix product of the images' patches (:func:`patches`).

Padding (of the layer's input maps, hence of the kernel in each argument):

* ``'SAME'``: zeros outside the grid; output grid = input grid;
* ``'CIRCULAR'``: periodic; output grid = input grid;
* ``'VALID'``: no padding; the grid shrinks by ``q − 1`` per axis.

The self-variance maps ``v(t) = K(t, t)`` follow the same operator on the
diagonal: ``v'(t) = (1/q²) Σ_y v(t + y)``, a ``q × q`` box filter.
"""

from __future__ import annotations

import functools

import numpy as np
import jax
import jax.numpy as jnp

from ..core.fusion import apart

__all__ = ["PADDINGS", "window_mean", "window_mean_diag", "output_size", "patches", "pool_matrix", "pool_pairs",
           "pool_maps"]

PADDINGS = ("SAME", "VALID", "CIRCULAR")


def output_size(n: int, q: int, padding: str) -> int:
    """Grid size after a ``q``-tap window along an axis of size ``n``."""
    return n - q + 1 if padding == "VALID" else n


def _pad(x, axes, r: int, padding: str):
    """Pad ``axes`` by ``r`` on both sides: zeros (SAME) or periodic (CIRCULAR).

    Written as a ``take`` along each axis (out-of-range rows filled with 0 for SAME):
    XLA fuses it into the tap sums that follow, where ``jnp.pad`` would materialise
    the padded array (2–4× slower on CPU).
    """
    if padding == "VALID" or r == 0:
        return x
    for a in axes:
        n = x.shape[a]
        idx = np.arange(-r, n + r)
        if padding == "CIRCULAR":
            x = jnp.take(x, idx % n, axis=a, mode="clip")
        else:
            x = jnp.take(x, np.where((idx < 0) | (idx >= n), n, idx), axis=a, mode="fill", fill_value=0)
    return x


def _diag_taps(x, ax1: int, ax2, q: int, n_out: int):
    """``Σ_{a<q} x[.., a:a+n_out (ax1), .., a:a+n_out (ax2), ..]`` (``ax2`` may be ``None``)."""

    def view(a):
        idx = [slice(None)] * x.ndim
        idx[ax1] = slice(a, a + n_out)
        if ax2 is not None:
            idx[ax2] = slice(a, a + n_out)
        return x[tuple(idx)]

    acc = view(0)
    for a in range(1, q):  # the q taps of the (diagonal) filter; unrolled at trace time
        acc = acc + view(a)
    return acc


def _plane(x, ax1: int, ax2: int, q: int, n_out: int, padding: str):
    r = (q - 1) // 2
    return _diag_taps(_pad(x, (ax1, ax2), r, padding), ax1, ax2, q, n_out)


def window_mean(K: jax.Array, q: int, padding: str) -> jax.Array:
    """``A[K](t, t') = (1/q²) Σ_{y ∈ window} K(t + y, t' + y)``.

    ``K``: ``(..., H, W, H', W')`` pair kernel (first argument's grid ``(H, W)``,
    second's ``(H', W')``; both the same size). Returns ``(..., Ho, Wo, Ho, Wo)``,
    ``Ho = output_size(H, q, padding)``.
    """
    H, W = K.shape[-4], K.shape[-3]
    nd = K.ndim
    # the (j, j') plane first, as a computation of its own: XLA otherwise recomputes it inside a
    # transposing gather for the padded views of the (i, i') plane (1.3-1.8x slower for the 32 x 32
    # CNN kernel in quick timings during issue 12)
    x = apart(functools.partial(_plane, ax1=nd - 3, ax2=nd - 1, q=q, n_out=output_size(W, q, padding),
                                padding=padding), K)
    x = _plane(x, nd - 4, nd - 2, q, output_size(H, q, padding), padding)
    return x * (1.0 / (q * q))


def window_mean_diag(v: jax.Array, q: int, padding: str) -> jax.Array:
    """The operator on the diagonal: ``v'(t) = (1/q²) Σ_y v(t + y)`` for ``v`` of shape ``(..., H, W)``."""
    H, W = v.shape[-2], v.shape[-1]
    r = (q - 1) // 2
    nd = v.ndim
    x = _pad(v, (nd - 2, nd - 1), r, padding)
    x = _diag_taps(x, nd - 2, None, q, output_size(H, q, padding))
    x = _diag_taps(x, nd - 1, None, q, output_size(W, q, padding))
    return x * (1.0 / (q * q))


def patches(x: jax.Array, q: int, padding: str) -> jax.Array:
    """The ``q × q`` window of every output pixel: ``(..., H, W, C)`` → ``(..., Ho, Wo, q²·C)``.

    ``out[..., t, (y, c)] = x_padded[..., t + y, c]`` for the window offsets ``y`` (row-major), with
    the layer's padding. The lift's window mean is the patches' Gram matrix,
    ``A[x x'ᵀ / C](t, u) = P(t) · P'(u) / (q² C)``: one matrix product with contraction ``q² C``
    instead of a product with contraction ``C`` followed by two window passes over the
    ``(HW)²`` kernel.
    """
    H, W = x.shape[-3], x.shape[-2]
    r = (q - 1) // 2
    nd = x.ndim
    xp = _pad(x, (nd - 3, nd - 2), r, padding)
    Ho, Wo = output_size(H, q, padding), output_size(W, q, padding)
    views = [xp[..., a : a + Ho, b : b + Wo, :] for a in range(q) for b in range(q)]
    return jnp.concatenate(views, axis=-1)


def pool_matrix(n: int, k: int, s: int, padding: str) -> np.ndarray:
    """Average pooling along one axis as a matrix ``P`` of shape ``(n_out, n)``: ``y = P x``.

    Windows of ``k`` pixels every ``s`` pixels, divided by ``k`` (neural-tangents' ``AvgPool`` with
    ``normalize_edges=False``). ``'VALID'``: ``n_out = ⌊(n − k)/s⌋ + 1``, no padding; ``'SAME'``/``'CIRCULAR'``:
    ``n_out = ⌈n/s⌉``, padded by ``max((n_out − 1) s + k − n, 0)`` pixels, the lower half (rounded down)
    before the grid, as XLA's ``SAME``; zeros for ``'SAME'``, periodic for ``'CIRCULAR'``.
    """
    if padding == "VALID":
        if n < k:
            raise ValueError(f"a VALID window of {k} pixels does not fit an axis of {n} pixels")
        n_out, lo = (n - k) // s + 1, 0
    else:
        n_out = -(-n // s)
        lo = max((n_out - 1) * s + k - n, 0) // 2
    P = np.zeros((n_out, n))
    for i in range(n_out):
        for a in range(i * s - lo, i * s - lo + k):
            if padding == "CIRCULAR":
                P[i, a % n] += 1.0
            elif 0 <= a < n:
                P[i, a] += 1.0
    return P / k


def pool_pairs(K: jax.Array, ph: np.ndarray, pw: np.ndarray) -> jax.Array:
    """Both spatial arguments of a pair kernel ``(..., H, W, H, W)`` pooled: ``K' = (P ⊗ P) K (P ⊗ P)ᵀ``.

    ``P = ph ⊗ pw`` acts on ``(row, col)``; four contractions with the small 1-d matrices, the last
    axis first. Returns ``(..., Ho, Wo, Ho, Wo)``.
    """
    ph, pw = jnp.asarray(ph, K.dtype), jnp.asarray(pw, K.dtype)
    K = jnp.einsum("...abcd,ld->...abcl", K, pw)
    K = jnp.einsum("...abcl,kc->...abkl", K, ph)
    K = jnp.einsum("...abkl,jb->...ajkl", K, pw)
    return jnp.einsum("...ajkl,ia->...ijkl", K, ph)


def pool_maps(x: jax.Array, ph: np.ndarray, pw: np.ndarray) -> jax.Array:
    """Finite feature maps ``(..., H, W, C)`` pooled: ``y(i, j) = Σ ph[i, a] pw[j, b] x(a, b)``."""
    return jnp.einsum("ia,jb,...abc->...ijc", jnp.asarray(ph, x.dtype), jnp.asarray(pw, x.dtype), x)
