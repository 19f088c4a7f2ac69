"""Planar GCNN layers (GrouPy names) and the plain CNN layers they reduce to.

* ``Z2ConvP4``, ``Z2ConvP4M``, ``Z2ConvP2``: lifting convolutions from images
  ``(N, H, W, C)`` to functions on ``R ⋉ Z²``, layout ``(N, |G|, H, W, C)``;
* ``P4ConvP4``, ``P4MConvP4M``, ``P2ConvP2``: group convolutions;
* ``GroupPool``: mean over the group and space → ``(N, C)``;
* ``Conv``, ``GlobalAvgPool``: the plain CNN (the trivial group);
* ``AvgPool``: spatial average pooling (neural-tangents' ``AvgPool``) of CNN and GCNN maps;
* ``Flatten``: the maps as one vector per input, for a ``Dense`` readout (neural-tangents' ``Flatten``).

Normalisation (docs/mathematics.md, "Normalisation": NTK parameterisation): each layer averages over its
filter support (``q²`` pixels × ``C`` channels for a lift or ``Conv``, times ``|G|``
for a group convolution): ``K' = W² A[K] + b²``, ``Θ' = K' + W² A[Θ]``, and the first
layer's ``Θ`` is its ``K`` (unlike the authors' code, whose first layer counts it
twice). Filters are square with an odd side ``q``; padding ``'SAME'`` (zeros),
``'VALID'`` or ``'CIRCULAR'``.

Kernels (``kernel_fn``): after ``GroupPool``/``GlobalAvgPool`` one number per pair;
before pooling the per-element kernels ``M_d(t, t') = Cov(h_x(e, t), h_x'(d, t'))``
of shape ``(N1, N2, |G|, H, W, H, W)`` (``(N1, N2, H, W, H, W)`` for the plain CNN);
:func:`eqntk.planar.irreps.group_fourier` turns them into irrep blocks.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import jax
import jax.numpy as jnp

from ..core.checks import check_int, check_std
from ..core.kernel import Inputs, InvariantKernel, first_layer, wrong_state
from ..core.layers import KernelFn, Layer
from .features import conv2d, group_conv_apply, lift_apply
from .groups import P2, P4, P4M, TRIVIAL, PlanarGroup
from .kernel_state import SpatialPairs, lift_pairs
from .spatial import PADDINGS, output_size, pool_maps, pool_matrix

__all__ = ["Z2ConvP4", "P4ConvP4", "Z2ConvP4M", "P4MConvP4M", "Z2ConvP2", "P2ConvP2", "GroupPool",
           "Conv", "GlobalAvgPool", "AvgPool", "Flatten"]


def _check_filter(where: str, filter_shape) -> int:
    if np.ndim(filter_shape) == 0:
        shape = (filter_shape, filter_shape)
    else:
        shape = tuple(np.ravel(filter_shape).tolist()) if np.ndim(filter_shape) == 1 else ()
    if len(shape) != 2 or any(isinstance(s, bool) or int(s) != s or s < 1 for s in shape):
        raise ValueError(f"{where}: filter_shape must be an odd integer q or a pair (q, q), got {filter_shape!r}")
    if shape[0] != shape[1]:
        raise ValueError(
            f"{where}: filters must be square (q × q) so that the point group maps the filter window onto "
            f"itself, got filter_shape {shape}"
        )
    if shape[0] % 2 == 0:
        raise ValueError(
            f"{where}: filters must have an odd side q (a window centred on a pixel, rotated about it), got "
            f"filter_shape {shape}"
        )
    return int(shape[0])


def _check_padding(where: str, padding) -> str:
    p = str(padding).upper()
    if p not in PADDINGS:
        raise ValueError(f"{where}: padding must be one of {PADDINGS}, got {padding!r}")
    return p


def _check_grid(where: str, H: int, W: int, q: int, padding: str, group: PlanarGroup, what: str):
    if padding == "VALID" and (H < q or W < q):
        raise ValueError(f"{where}: {what} of size {H}×{W} are smaller than the {q}×{q} VALID filter")
    if group.square_only and H != W:
        raise ValueError(f"{where}: {group.name} needs square {what}, got {H}×{W}")


def _check_images(where: str, shape, q: int, padding: str, group: PlanarGroup):
    if len(shape) != 4:
        raise ValueError(f"{where}: inputs must be images of shape (N, H, W, C), got shape {tuple(shape)}")
    _check_grid(where, shape[1], shape[2], q, padding, group, "images")


def _check_group_maps(where: str, shape, group: PlanarGroup, q: int, padding: str):
    if len(shape) != 5 or shape[1] != group.order:
        raise ValueError(
            f"{where}: inputs must be functions on {group.name} of shape (N, {group.order}, H, W, C), got shape "
            f"{tuple(shape)}"
        )
    _check_grid(where, shape[2], shape[3], q, padding, group, "feature maps")


def _planar_state(where: str, state, group: Optional[PlanarGroup], fix: str, needs: Optional[str] = None
                  ) -> SpatialPairs:
    """The one check of this group's layers that they received spatial feature maps (on ``group``, if given)."""
    if not isinstance(state, SpatialPairs) or (group is not None and state.group != group):
        needs = needs or ("spatial feature maps" if group is None else
                          "plain CNN feature maps" if group.order == 1 else f"functions on {group.name}")
        raise wrong_state(where, state, needs, fix)
    return state


def _params(key, shape, out_channels, b_std):
    kw, kb = jax.random.split(key)
    w = jax.random.normal(kw, shape)
    b = jax.random.normal(kb, (out_channels,)) if b_std is not None else None
    return w, b


def _b2(b_std):
    return 0.0 if b_std is None else b_std**2


def _lift_layer(group: PlanarGroup, where: str, out_channels, filter_shape, padding, W_std, b_std) -> Layer:
    O = check_int(where, "out_channels", out_channels)
    q = _check_filter(where, filter_shape)
    padding = _check_padding(where, padding)
    W_std = check_std(where, "W_std", W_std, allow_none=False)
    b_std = check_std(where, "b_std", b_std)
    plain = group.order == 1

    def init_fn(key, input_shape):
        _check_images(where, input_shape, q, padding, group)
        N, H, W, C = input_shape
        Ho, Wo = output_size(H, q, padding), output_size(W, q, padding)
        out = (N, Ho, Wo, O) if plain else (N, group.order, Ho, Wo, O)
        return out, _params(key, (q, q, C, O), O, b_std)

    def apply_fn(params, x, **kwargs):
        x = jnp.asarray(x)
        _check_images(where, x.shape, q, padding, group)
        w, b = params
        y = lift_apply(x, w, b, group, padding, W_std, b_std)
        return y[:, 0] if plain else y

    def op(state):
        state = first_layer(where, state, "images")
        _check_images(where, state.x1.shape, q, padding, group)
        return lift_pairs(state.x1, state.x2, group, q, padding, W_std**2, _b2(b_std), state.with_ntk, state.cost)

    return Layer(init_fn, apply_fn, KernelFn(op, name=f"{where}({O}, {q}x{q}, {padding}, W_std={W_std}, b_std={b_std})",
                                             spec=(where, group.name, O, q, padding, W_std, b_std), centred=True))


def _group_layer(group: PlanarGroup, where: str, out_channels, filter_shape, padding, W_std, b_std) -> Layer:
    O = check_int(where, "out_channels", out_channels)
    q = _check_filter(where, filter_shape)
    padding = _check_padding(where, padding)
    W_std = check_std(where, "W_std", W_std, allow_none=False)
    b_std = check_std(where, "b_std", b_std)
    G = group.order

    def init_fn(key, input_shape):
        _check_group_maps(where, input_shape, group, q, padding)
        N, _, H, W, C = input_shape
        out = (N, G, output_size(H, q, padding), output_size(W, q, padding), O)
        return out, _params(key, (G, q, q, C, O), O, b_std)

    def apply_fn(params, x, **kwargs):
        x = jnp.asarray(x)
        _check_group_maps(where, x.shape, group, q, padding)
        w, b = params
        return group_conv_apply(x, w, b, group, padding, W_std, b_std)

    def op(state):
        state = _planar_state(where, state, group, "put its lifting layer first")
        H, W = state.grid
        _check_grid(where, H, W, q, padding, group, "feature maps")
        return state.conv(q, padding, W_std**2, _b2(b_std))

    return Layer(init_fn, apply_fn, KernelFn(op, name=f"{where}({O}, {q}x{q}, {padding}, W_std={W_std}, b_std={b_std})",
                                             spec=(where, group.name, O, q, padding, W_std, b_std), centred=True))


def Z2ConvP4(out_channels: int, filter_shape, padding: str = "SAME", W_std: float = 1.0,
             b_std: Optional[float] = None) -> Layer:
    """Lifting convolution ``(N, H, W, C)`` → ``(N, 4, H', W', out_channels)`` on ``p4 = C_4 ⋉ Z²``.

    Output element ``r`` is the correlation with the filter rotated by ``r·90°``. Square images.
    """
    return _lift_layer(P4, "Z2ConvP4", out_channels, filter_shape, padding, W_std, b_std)


def P4ConvP4(out_channels: int, filter_shape, padding: str = "SAME", W_std: float = 1.0,
             b_std: Optional[float] = None) -> Layer:
    """Group convolution on ``p4``: ``(N, 4, H, W, C)`` → ``(N, 4, H', W', out_channels)``."""
    return _group_layer(P4, "P4ConvP4", out_channels, filter_shape, padding, W_std, b_std)


def Z2ConvP4M(out_channels: int, filter_shape, padding: str = "SAME", W_std: float = 1.0,
              b_std: Optional[float] = None) -> Layer:
    """Lifting convolution onto ``p4m = D_4 ⋉ Z²`` (rotations and flips): ``(N, 8, H', W', out_channels)``."""
    return _lift_layer(P4M, "Z2ConvP4M", out_channels, filter_shape, padding, W_std, b_std)


def P4MConvP4M(out_channels: int, filter_shape, padding: str = "SAME", W_std: float = 1.0,
               b_std: Optional[float] = None) -> Layer:
    """Group convolution on ``p4m``: ``(N, 8, H, W, C)`` → ``(N, 8, H', W', out_channels)``."""
    return _group_layer(P4M, "P4MConvP4M", out_channels, filter_shape, padding, W_std, b_std)


def Z2ConvP2(out_channels: int, filter_shape, padding: str = "SAME", W_std: float = 1.0,
             b_std: Optional[float] = None) -> Layer:
    """Lifting convolution onto ``p2 = C_2 ⋉ Z²`` (180° rotations): ``(N, 2, H', W', out_channels)``.

    Images may be rectangular.
    """
    return _lift_layer(P2, "Z2ConvP2", out_channels, filter_shape, padding, W_std, b_std)


def P2ConvP2(out_channels: int, filter_shape, padding: str = "SAME", W_std: float = 1.0,
             b_std: Optional[float] = None) -> Layer:
    """Group convolution on ``p2``: ``(N, 2, H, W, C)`` → ``(N, 2, H', W', out_channels)``."""
    return _group_layer(P2, "P2ConvP2", out_channels, filter_shape, padding, W_std, b_std)


def Conv(out_channels: int, filter_shape, padding: str = "SAME", W_std: float = 1.0,
         b_std: Optional[float] = None) -> Layer:
    """Plain 2-d convolution ``(N, H, W, C)`` → ``(N, H', W', out_channels)`` (the trivial group).

    Kernel before pooling: ``(N1, N2, H, W, H, W)``.
    """
    lift = _lift_layer(TRIVIAL, "Conv", out_channels, filter_shape, padding, W_std, b_std)
    q = _check_filter("Conv", filter_shape)
    padding = _check_padding("Conv", padding)
    W_std = check_std("Conv", "W_std", W_std, allow_none=False)
    b_std = check_std("Conv", "b_std", b_std)

    def apply_fn(params, x, **kwargs):
        x = jnp.asarray(x)
        _check_images("Conv", x.shape, q, padding, TRIVIAL)
        w, b = params
        y = conv2d(x, w.astype(x.dtype), padding) * (W_std / (q * jnp.sqrt(x.shape[-1])))
        return y if b is None else y + b_std * b.astype(x.dtype)

    def op(state):
        if isinstance(state, Inputs):
            return lift.kernel_fn.op(state)
        state = _planar_state("Conv", state, TRIVIAL, "on functions on a group use the group's convolution "
                              "(e.g. P4ConvP4)", needs="images or plain CNN feature maps")
        H, W = state.grid
        _check_grid("Conv", H, W, q, padding, TRIVIAL, "feature maps")
        return state.conv(q, padding, W_std**2, _b2(b_std))

    return Layer(lift.init_fn, apply_fn, KernelFn(op, name=lift.kernel_fn.name, spec=lift.kernel_fn.spec,
                                                                 centred=True))


def _pool_op(where: str, plain_only: bool):
    def op(state):
        state = _planar_state(where, state, None, "put a Conv or a lifting layer first")
        if plain_only:
            state = _planar_state(where, state, TRIVIAL, "use GroupPool for functions on a group")
        return state.pool()

    return op


def GroupPool() -> Layer:
    """Mean over the group and space: ``(N, |G|, H, W, C)`` → ``(N, C)`` (also ``(N, H, W, C)`` → ``(N, C)``)."""

    def init_fn(key, input_shape):
        return (input_shape[0], input_shape[-1]), ()

    def apply_fn(params, x, **kwargs):
        x = jnp.asarray(x)
        if x.ndim not in (4, 5):
            raise ValueError(f"GroupPool: expected (N, |G|, H, W, C) or (N, H, W, C), got shape {x.shape}")
        return jnp.mean(x, axis=tuple(range(1, x.ndim - 1)))

    return Layer(init_fn, apply_fn, KernelFn(_pool_op("GroupPool", False), name="GroupPool", spec=("GroupPool",)))


def GlobalAvgPool() -> Layer:
    """Mean over space of plain CNN maps: ``(N, H, W, C)`` → ``(N, C)``."""

    def init_fn(key, input_shape):
        return (input_shape[0], input_shape[-1]), ()

    def apply_fn(params, x, **kwargs):
        x = jnp.asarray(x)
        if x.ndim != 4:
            raise ValueError(f"GlobalAvgPool: expected (N, H, W, C), got shape {x.shape}")
        return jnp.mean(x, axis=(1, 2))

    return Layer(init_fn, apply_fn, KernelFn(_pool_op("GlobalAvgPool", True), name="GlobalAvgPool",
                                             spec=("GlobalAvgPool",)))


def _pair(where: str, what: str, v) -> tuple[int, int]:
    shape = (v, v) if np.ndim(v) == 0 else (tuple(np.ravel(v).tolist()) if np.ndim(v) == 1 else ())
    if len(shape) != 2 or any(isinstance(a, bool) or int(a) != a or a < 1 for a in shape):
        raise ValueError(f"{where}: {what} must be a positive integer or a pair of them, got {v!r}")
    return int(shape[0]), int(shape[1])


def _pool_matrices(where: str, H: int, W: int, window, strides, padding, group_order: int):
    """``(ph, pw)`` for a grid ``H × W``; for group maps (``group_order > 1``) checks that pooling commutes
    with the point group: each matrix symmetric under reversing both axes (180° rotations, flips), and
    ``ph == pw`` for 90° rotations (``group_order ≥ 4``)."""
    (kh, kw), (sh, sw) = window, strides
    if padding == "VALID" and (H < kh or W < kw):
        raise ValueError(f"{where}: a VALID {kh}×{kw} window does not fit feature maps of size {H}×{W}")
    ph, pw = pool_matrix(H, kh, sh, padding), pool_matrix(W, kw, sw, padding)
    if group_order > 1:
        why = None
        if group_order >= 4 and (ph.shape != pw.shape or not np.array_equal(ph, pw)):
            why = "90° rotations need a square window, equal strides on both axes and square maps"
        elif not (np.array_equal(ph, ph[::-1, ::-1]) and np.array_equal(pw, pw[::-1, ::-1])):
            why = ("the windows must be placed symmetrically about the centre of the maps: with VALID padding "
                   "(size − window) must be a multiple of the stride, with SAME/CIRCULAR padding the padding "
                   "(ceil(size/stride) − 1)·stride + window − size must be even")
        if why is not None:
            raise ValueError(
                f"{where}: window {kh}×{kw}, strides {sh}×{sw}, {padding} padding on {H}×{W} maps does not commute "
                f"with the group's rotations, so the pooled maps would not be equivariant: {why}")
    return ph, pw


def AvgPool(window_shape, strides=None, padding: str = "VALID") -> Layer:
    """Spatial average pooling, neural-tangents' ``AvgPool`` (``normalize_edges=False``).

    ``(N, H, W, C)`` → ``(N, H', W', C)`` for CNN maps, ``(N, |G|, H, W, C)`` → ``(N, |G|, H', W', C)``
    for group maps (pooling acts on the spatial axes only). ``window_shape``: ``k`` or ``(kh, kw)``;
    ``strides``: ``s`` or ``(sh, sw)``, default ``(1, 1)`` (as neural-tangents, not the window);
    ``padding``: ``'VALID'`` (``H' = ⌊(H − kh)/sh⌋ + 1``), ``'SAME'`` (zeros) or ``'CIRCULAR'``
    (periodic), both ``H' = ⌈H/sh⌉`` with XLA's split of the padding; every window sum is divided by
    ``kh·kw``, at the edges too.

    Kernel: ``K'(p, p') = mean_{a ∈ w(p), b ∈ w(p')} K(a, b)``, a linear map of both spatial arguments
    (the NTK alike). As a first layer it pools the raw images. For group maps the windows must commute
    with the point group (square windows centred on the maps' grid for p4/p4m; symmetric placement for
    p2), else ``ValueError``.
    """
    where = "AvgPool"
    window = _pair(where, "window_shape", window_shape)
    strides = (1, 1) if strides is None else _pair(where, "strides", strides)
    padding = _check_padding(where, padding)

    def matrices(shape):
        if len(shape) not in (4, 5):
            raise ValueError(f"{where}: expected CNN maps (N, H, W, C) or group maps (N, |G|, H, W, C), got shape "
                             f"{tuple(shape)}")
        G = 1 if len(shape) == 4 else shape[1]
        return _pool_matrices(where, shape[-3], shape[-2], window, strides, padding, G)

    def init_fn(key, input_shape):
        ph, pw = matrices(input_shape)
        return tuple(input_shape[:-3]) + (ph.shape[0], pw.shape[0], input_shape[-1]), ()

    def apply_fn(params, x, **kwargs):
        x = jnp.asarray(x)
        ph, pw = matrices(x.shape)
        return pool_maps(x, ph, pw)

    def op(state):
        if isinstance(state, Inputs) and state.x1.ndim == 4:  # raw images: pooled images, exactly
            ph, pw = matrices(state.x1.shape)
            return Inputs(pool_maps(state.x1, ph, pw), pool_maps(state.x2, ph, pw), state.with_ntk, state.cost)
        if not isinstance(state, SpatialPairs):
            raise ValueError(f"{where} needs images or spatial feature maps, got {type(state).__name__}")
        H, W = state.grid
        ph, pw = _pool_matrices(where, H, W, window, strides, padding, state.group.order)
        return state.avg_pool(ph, pw)

    name = f"AvgPool({window[0]}x{window[1]}, strides={strides[0]}x{strides[1]}, {padding})"
    # a linear map of the features: a centred, fresh input stays so
    return Layer(init_fn, apply_fn, KernelFn(op, name=name, spec=(where, window, strides, padding), centred=None))


def Flatten() -> Layer:
    """All non-batch axes as one feature vector, neural-tangents' ``Flatten``: ``(N, ...)`` → ``(N, prod)``.

    After a ``Dense`` readout, ``K' = W² mean_p K(p, p) + b²``: the mean over pixels of the *diagonal*
    (same pixel in both inputs), not the mean over all pixel pairs (that is ``GlobalAvgPool``). Flattened
    features have one variance per pixel, so the next layer must be ``Dense`` (a nonlinearity right after
    ``Flatten`` is refused). On group maps ``(N, |G|, H, W, C)`` the group axis is flattened too and the
    kernel is the same-element diagonal ``mean_t M_e(t, t)`` (independent of the element): it is **not**
    invariant under the group (use ``GroupPool`` for that). On raw images it is the linear kernel
    ``x·x' / (H W C)``; on vectors it does nothing.
    """

    def init_fn(key, input_shape):
        return (input_shape[0], int(np.prod(input_shape[1:]))), ()

    def apply_fn(params, x, **kwargs):
        x = jnp.asarray(x)
        return x.reshape(x.shape[0], -1)

    def op(state):
        if isinstance(state, SpatialPairs):
            return state.flatten()
        if isinstance(state, Inputs):
            t1, t2 = state.x1.shape[0], state.x2.shape[0]
            return Inputs(state.x1.reshape(t1, -1), state.x2.reshape(t2, -1), state.with_ntk, state.cost)
        if isinstance(state, InvariantKernel):
            return state
        raise ValueError(f"Flatten acts on raw inputs, planar (CNN or GCNN) feature maps or vectors, got "
                         f"{type(state).__name__}")

    return Layer(init_fn, apply_fn, KernelFn(op, name="Flatten", spec=("Flatten",), centred=None))
