"""stax-style layers: ``(init_fn, apply_fn, kernel_fn)`` triples and ``serial``.

Every layer is a :class:`Layer` (a named triple, so ``init_fn, apply_fn,
kernel_fn = layer`` works as in neural-tangents):

* ``init_fn(key, input_shape) -> (output_shape, params)``
* ``apply_fn(params, x) -> y`` — the finite-width network (NTK parameterisation:
  parameters are standard normal, scaled in the forward pass)
* ``kernel_fn(x1, x2=None, get=None, *, memory_budget, tile_size, progress, rtol, ...)``
  — the infinite-width NNGP / NTK, a :class:`KernelFn`.

This module holds the group-agnostic layers (``Dense``, nonlinearities) and
``serial``; group layers live in :mod:`eqntk.so3` and :mod:`eqntk.planar`.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from .checks import check_inputs, check_int, check_real, check_std
from .deferred import Deferred
from .driver import DEFAULT_MEMORY_BUDGET, choose_tile, evaluate_tiles, spans_processes
from .kernel import Inputs, InvariantKernel, KernelState
from .pointwise import ABReluMap, AffineMap, ElementwiseMap, ErfMap, NormaliseMap, PointwiseMap, ReluMap, SinMap, gelu

__all__ = ["Layer", "KernelFn", "serial", "Dense", "Relu", "ABRelu", "LeakyRelu", "Sin", "Erf", "Gelu", "Tanh",
           "Sigmoid", "Elementwise", "LayerNorm", "pointwise_layer",
           "map_values"]

_KINDS = ("nngp", "ntk")


def _canonical_get(get):
    if get is None:
        return _KINDS, False
    if isinstance(get, str):
        get = (get,)
        single = True
    else:
        get = tuple(get)
        single = False
    for g in get:
        if g not in _KINDS:
            raise ValueError(f"get must name 'nngp' and/or 'ntk', got {g!r}")
    if not get:
        raise ValueError("get is empty")
    return get, single


@dataclasses.dataclass(frozen=True)
class KernelFn:
    """Infinite-width kernel of a network; call it like neural-tangents' ``kernel_fn``.

    ``kernel_fn(x1, x2=None, get=None)`` returns, for inputs ``x1`` of shape
    ``(N1, ...)`` and ``x2`` of shape ``(N2, ...)`` (``x2 = x1`` when omitted),

    * ``get=None``: a named tuple ``Kernel(nngp, ntk)``,
    * ``get='nngp'`` or ``'ntk'``: that array,
    * ``get=('ntk', 'nngp')``: a named tuple with those fields, in that order.

    Each array has shape ``(N1, N2)`` for invariant (pooled) networks, or
    ``(N1, N2, ...)`` per pair before pooling (see the layer docs).

    Keyword args:
        memory_budget: bytes of working memory a tile may use (default 2 GiB);
            tiles of pairs are sized to fit it.
        tile_size: force tiles of ``tile_size × tile_size`` pairs.
        progress: show a progress bar (default: when there are ≥ 8 tiles and
            stderr is a terminal).
        store: a directory; finished tiles are saved there as they complete, and a
            re-run of the same computation resumes from them (see :mod:`eqntk.core.store`).
        devices: devices to shard tiles over (one tile per device at a time, with
            ``jax.shard_map``). Default: all visible devices; after ``jax.distributed.initialize``
            with a ``store``, this process's own devices: the processes then divide the tiles
            among themselves through the store (each tile computed once, by one process) and each
            returns the whole matrix. Without a store they compute every tile together.
        rtol: requested relative accuracy of the group quadratures (``SO3Pool``,
            ``SO3ConvSO3``): every such layer's ``oversampling`` is replaced by the coarsest
            level that reaches ``max|K − K_exact| ≤ rtol · max|K_exact|`` on a sample of
            the inputs, by :func:`eqntk.core.accuracy.at_rtol` (which also returns the
            estimate; the call here logs it on the ``eqntk`` logger at INFO). Raises when no
            level of the ladder reaches it. Networks without group quadrature are exact and
            ignore it (1-D Gauss–Hermite nonlinearities keep their own ``n_quadrature``).

    The computation runs in the dtype of the inputs (float64 when JAX's x64
    mode is on and the inputs are float64; float32 otherwise; float16/bfloat16 inputs in
    float32, with a warning).

    ``regrid(oversampling) -> KernelFn`` is the same network with every group-quadrature layer
    on the grid of ``oversampling`` (``None``: the network has no such layer); ``rtol`` uses it.

    ``centred`` says how the layer changes whether its output is *centred and fresh*: a zero-mean
    function linear in parameters drawn for this layer alone (so uncorrelated with any function of
    the other parameters). ``True``: it makes it so (``Dense``, convolutions, lifts); ``None``: it
    keeps its input's status (``Identity``); ``False`` (default): not known to be (nonlinearities,
    pooling, branching). :func:`eqntk.core.branching.FanInSum` relies on it (see there).

    ``needs_centred``: the layer is exact only on centred inputs (``LayerNorm``, whose channel mean must
    vanish at infinite width); :func:`serial` refuses it after a layer whose ``centred`` is ``False``.

    ``name`` is for display only. ``spec`` identifies the computation structurally (every
    layer's type and parameters; see :mod:`eqntk.core.fingerprint`); a tile store keys on its
    :meth:`fingerprint`, never on the name. Without a ``spec`` the ``op`` itself (its code and
    closure) is fingerprinted.
    """

    op: Callable
    name: str = "kernel_fn"
    spec: Any = dataclasses.field(default=None, compare=False)
    regrid: Optional[Callable[[float], "KernelFn"]] = dataclasses.field(default=None, compare=False, repr=False)
    centred: Optional[bool] = dataclasses.field(default=False, compare=False)
    needs_centred: bool = dataclasses.field(default=False, compare=False)
    _cache: dict = dataclasses.field(default_factory=dict, compare=False, hash=False, repr=False)

    def identity(self) -> Any:
        """What identifies this computation: ``spec``, or the ``op`` function when there is none."""
        return self.op if self.spec is None else self.spec

    def __fingerprint__(self) -> Any:
        return ["KernelFn", self.identity()]

    def fingerprint(self) -> str:
        """SHA-256 of the structure of the computation.

        Raises:
            ValueError: a part of the network (typically a user function in ``Elementwise``)
                cannot be fingerprinted; the message says which and how to name it.
        """
        from .fingerprint import Unfingerprintable, fingerprint

        try:
            return fingerprint(self)
        except Unfingerprintable as e:
            raise ValueError(
                f"cannot identify the network {self.name} for a tile store: {e}. Give each user function an "
                "explicit, unique name (Elementwise(fn, name='...')) or run without store=") from None

    def trace(self, x1, x2=None, with_ntk: bool = True):
        """Run the op eagerly on small inputs without tiling: the final state (for tests)."""
        x1, x2 = check_inputs(x1, x2)
        return self.op(Inputs(x1, x1 if x2 is None else x2, with_ntk))

    def tile(self, x1, x2=None, get=None):
        """The kernel of the pairs ``(x1[i], x2[j])`` as one pure JAX computation.

        Same arguments and outputs as a call, but no tiling, store, progress or host
        transfer: the result is a traced function of the inputs, so it can be jit-compiled,
        vmapped and differentiated (``jax.grad`` with respect to ``x1`` or ``x2``, e.g. for
        forces through :mod:`eqntk.forces`). Memory grows with ``N1 · N2``: keep tiles small.
        No input validation beyond the network's own shape checks.
        """
        kinds, single = _canonical_get(get)
        out = self.op(Inputs(x1, x1 if x2 is None else x2, "ntk" in kinds)).output()
        res = dict(zip(_KINDS, out))
        if single:
            return res[kinds[0]]
        return collections.namedtuple("Kernel", kinds)(*(res[k] for k in kinds))

    def _tile_fn(self, with_ntk: bool):
        if with_ntk not in self._cache:
            op = self.op

            def f(a, b):
                return op(Inputs(a, b, with_ntk)).output()

            self._cache[with_ntk] = jax.jit(f)
        return self._cache[with_ntk]

    def _batch_fn(self, with_ntk: bool, devices):
        """Tiles stacked along a leading axis, one per device, sharded with ``jax.shard_map``."""
        key = ("batch", with_ntk, tuple(d.id for d in devices))
        if key not in self._cache:
            import numpy as np
            from jax.sharding import Mesh, PartitionSpec

            op = self.op
            mesh = Mesh(np.array(devices), ("tiles",))
            spec = PartitionSpec("tiles")

            def per_device(a, b):
                out = op(Inputs(a[0], b[0], with_ntk)).output()
                return jax.tree_util.tree_map(lambda o: o[None], out)

            self._cache[key] = jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(spec, spec),
                                                     out_specs=spec))
        return self._cache[key]

    def _structure(self, x1, x2, with_ntk: bool):
        """``(cost, scalar_output)`` from tracing a 1×1 tile (cached per input shape and dtype).

        Tracing validates the network against the input shapes: errors are raised here, before
        any heavy work.
        """
        key = ("structure", x1.shape[1:], str(x1.dtype), with_ntk)
        if key not in self._cache:
            def probe(a, b):
                st = self.op(Inputs(a, b, with_ntk))
                if not isinstance(st, KernelState):
                    raise TypeError(f"{self.name}: its kernel op returned a {type(st).__name__}, which does not "
                                    "implement eqntk.core.kernel.KernelState (pointwise, add, output, cost)")
                return st, st.output()

            state, shapes = jax.eval_shape(probe, x1[:1], x2[:1])
            self._cache[key] = (state.cost, all(s is None or s.shape[2:] == () for s in shapes))
        return self._cache[key]

    def __call__(self, x1, x2=None, get=None, *, memory_budget: float = DEFAULT_MEMORY_BUDGET,
                 tile_size: Optional[int] = None, progress: Optional[bool] = None,
                 store: Optional[str] = None, devices=None, rtol: Optional[float] = None):
        if rtol is not None:
            import logging

            from .accuracy import at_rtol

            kfn, choice = at_rtol(self, x1, x2, rtol=rtol, get=get)
            if choice is not None:
                logging.getLogger("eqntk").info(
                    "%s: oversampling %g for rtol %g (estimated relative error %.1e)", self.name,
                    choice.oversampling, rtol, choice.estimate)
            return kfn(x1, x2, get, memory_budget=memory_budget, tile_size=tile_size, progress=progress,
                       store=store, devices=devices)
        kinds, single = _canonical_get(get)
        with_ntk = "ntk" in kinds
        x1, x2 = check_inputs(x1, x2)
        same = x2 is None
        x2v = x1 if same else x2

        cost, scalar = self._structure(x1, x2v, with_ntk)
        itemsize = jnp.dtype(x1.dtype).itemsize
        t1, t2 = choose_tile(x1.shape[0], x2v.shape[0], cost, itemsize, memory_budget, tile_size)
        symmetric = same and scalar
        keep = tuple(k in kinds for k in _KINDS)
        if devices is None:
            devices = jax.local_devices() if (store is not None and jax.process_count() > 1) else jax.devices()
        devices = list(devices)
        tile_store = None
        if store is not None:
            from .. import __version__
            from .store import TileStore, fingerprint_arrays

            tile_store = TileStore(store, {
                "network": self.name, "fingerprint": self.fingerprint(), "eqntk": __version__,
                "x1": fingerprint_arrays(x1),
                "x2": "x1" if same else fingerprint_arrays(x2), "dtype": str(x1.dtype),
                "tile": [t1, t2], "symmetric": symmetric, "outputs": [k for k in _KINDS if k in kinds],
            })
        outs = evaluate_tiles(self._tile_fn(with_ntk), x1, x2v, symmetric, t1, t2, n_out=2,
                              progress=progress, desc="eqntk kernel", store=tile_store,
                              batch_fn=self._batch_fn(with_ntk, devices) if len(devices) > 1 else None,
                              n_devices=len(devices), keep=keep, collective=spans_processes(devices))
        result = dict(zip(_KINDS, outs))
        del outs
        arrays = [jnp.asarray(result.pop(k)) for k in kinds]  # host buffers freed one by one
        if single:
            return arrays[0]
        return collections.namedtuple("Kernel", kinds)(*arrays)


class Layer(NamedTuple):
    """A stax layer: ``(init_fn, apply_fn, kernel_fn)``."""

    init_fn: Callable
    apply_fn: Callable
    kernel_fn: KernelFn


def _op_of(kernel_fn) -> Callable:
    if isinstance(kernel_fn, KernelFn):
        return kernel_fn.op
    raise TypeError("serial expects eqntk layers (their kernel_fn must be an eqntk KernelFn)")


def serial(*layers) -> Layer:
    """Compose layers: ``serial(l1, l2, ...)`` is ``l1`` followed by ``l2`` ..."""
    if not layers:
        raise ValueError("serial needs at least one layer")
    layers = [Layer(*l) for l in layers]
    ops = [_op_of(l.kernel_fn) for l in layers]

    def init_fn(key, input_shape):
        params = []
        for l in layers:
            key, sub = jax.random.split(key)
            input_shape, p = l.init_fn(sub, input_shape)
            params.append(p)
        return input_shape, tuple(params)

    def apply_fn(params, x, **kwargs):
        if len(params) != len(layers):
            raise ValueError(f"serial: expected {len(layers)} parameter entries, got {len(params)}")
        for l, p in zip(layers, params):
            x = l.apply_fn(p, x, **kwargs)
        return x

    def op(state):
        for o in ops:
            state = o(state)
        return state

    centred = None  # the last layer that sets the status decides it; Identity layers keep it
    needs_centred = False  # a layer needs centred inputs before any layer here has set the status
    for i, l in enumerate(layers):
        if l.kernel_fn.needs_centred:
            if centred is False:
                raise ValueError(
                    f"{l.kernel_fn.name} needs centred inputs (a Dense layer or a convolution before it, possibly "
                    f"followed by AvgPool or Flatten), got the output of {layers[i - 1].kernel_fn.name}, whose "
                    "channel mean does not vanish at infinite width (e.g. after a nonlinearity; neural-tangents "
                    "refuses it too)")
            needs_centred = needs_centred or centred is None
        if l.kernel_fn.centred is not None:
            centred = l.kernel_fn.centred
    names = "→".join(getattr(l.kernel_fn, "name", "?") for l in layers)
    spec = ("serial", tuple(l.kernel_fn.identity() for l in layers))
    regrid = None
    if any(l.kernel_fn.regrid is not None for l in layers):
        def regrid(oversampling: float) -> KernelFn:
            return serial(*(l if l.kernel_fn.regrid is None else l._replace(kernel_fn=l.kernel_fn.regrid(oversampling))
                            for l in layers)).kernel_fn
    return Layer(init_fn, apply_fn, KernelFn(op, name=names, spec=spec, regrid=regrid, centred=centred,
                                             needs_centred=needs_centred))


def map_values(x, fn: Callable, linear: bool = False):
    """Apply ``fn`` to the channel-last values of ``x``.

    Plain arrays are mapped at once. A lazy group signal — an instance of
    :class:`~eqntk.core.deferred.Deferred` (SO(3)'s ``SO3Signal``), which knows how to
    evaluate itself on a quadrature grid — records ``fn`` (``linear``: a 1×1 layer, which
    leaves the quadrature grid exact) and replays it where its next integrating layer samples it.
    """
    if isinstance(x, Deferred):
        return x.map_values(fn, linear=linear)
    return fn(x)


def pointwise_layer(m: PointwiseMap, name: str, spec: Any = None) -> Layer:
    """A parameter-free layer applying the nonlinearity ``m`` elementwise.

    ``spec`` identifies it for tile stores (default: the map ``m`` itself, a dataclass whose
    fields, user functions included, are fingerprinted).
    """

    def init_fn(key, input_shape):
        return input_shape, ()

    def apply_fn(params, x, **kwargs):
        return map_values(x, m.fn)

    return Layer(init_fn, apply_fn, KernelFn(lambda s: s.pointwise(m), name=name,
                                             spec=("pointwise", m) if spec is None else spec))


def Dense(out_channels: int, W_std: float = 1.0, b_std: Optional[float] = None) -> Layer:
    """Fully connected layer on the last (channel) axis; a 1×1 convolution on group signals.

    Kernel: ``K' = W_std² K + b_std²``, ``Θ' = K' + W_std² Θ`` (NTK parameterisation,
    weights scaled by ``W_std / √C_in``).
    """
    out_channels = check_int("Dense", "out_channels", out_channels)
    W_std = check_std("Dense", "W_std", W_std, allow_none=False)
    b_std = check_std("Dense", "b_std", b_std)
    m = AffineMap(W_std, b_std)

    def init_fn(key, input_shape):
        kw, kb = jax.random.split(key)
        c = input_shape[-1]
        W = jax.random.normal(kw, (c, out_channels))
        b = jax.random.normal(kb, (out_channels,)) if b_std is not None else None
        return tuple(input_shape[:-1]) + (out_channels,), (W, b)

    def apply_fn(params, x, **kwargs):
        W, b = params

        def f(v):
            y = v @ W.astype(v.dtype) * (W_std / jnp.sqrt(v.shape[-1]))
            return y if b is None else y + b_std * b.astype(v.dtype)

        return map_values(x, f, linear=True)

    return Layer(init_fn, apply_fn, KernelFn(lambda s: s.pointwise(m), name=f"Dense({out_channels}, W_std={W_std}, b_std={b_std})",
                                             spec=("Dense", out_channels, m), centred=True))


def Relu() -> Layer:
    """ReLU, ``max(x, 0)`` (closed-form arc-cosine kernel)."""
    return pointwise_layer(ReluMap(), "Relu")


def ABRelu(a: float, b: float) -> Layer:
    """``a·min(x, 0) + b·max(x, 0)`` (closed form; neural-tangents' ``ABRelu``)."""
    a, b = check_real("ABRelu", "a", a), check_real("ABRelu", "b", b)
    return pointwise_layer(ABReluMap(a, b), f"ABRelu(a={a}, b={b})")


def LeakyRelu(alpha: float) -> Layer:
    """``max(x, 0) + alpha·min(x, 0)`` (closed form): ``ABRelu(alpha, 1)``."""
    alpha = check_real("LeakyRelu", "alpha", alpha)
    return pointwise_layer(ABReluMap(alpha, 1.0), f"LeakyRelu(alpha={alpha})")


def Sin(a: float = 1.0, b: float = 1.0, c: float = 0.0) -> Layer:
    """``a · sin(b x + c)`` (closed form; neural-tangents' ``Sin``)."""
    a, b, c = (check_real("Sin", k, v) for k, v in (("a", a), ("b", b), ("c", c)))
    return pointwise_layer(SinMap(a, b, c), f"Sin(a={a}, b={b}, c={c})")


def Rbf(gamma: float = 1.0) -> Layer:
    """``√2 · sin(√(2γ) x + π/4)``, whose dual kernel is the Gaussian (RBF) kernel (neural-tangents' ``Rbf``).

    For pre-activations ``u, v`` of variances ``q11, q22`` and covariance ``q12`` (:class:`SinMap`
    with ``cos 2c = 0``):

        E[σ(u) σ(v)]   = exp(−γ (q11 + q22 − 2 q12)) = exp(−γ E(u − v)²),
        E[σ'(u) σ'(v)] = 2γ · exp(−γ (q11 + q22 − 2 q12)),

    so after a linear layer the NNGP is ``exp(−γ W² |x − x'|² / d)`` (random Fourier features).
    After ``S2ConvSO3`` and before ``SO3Pool`` it gives the rotation-integrated Gaussian kernel of
    two spherical signals, ``∫ exp(−γ c |f − g·f'|²) dg`` (``c = W²/(4π C)``).
    ``gamma`` (> 0): the inverse squared length scale, in units of the pre-activation variance.
    """
    gamma = check_real("Rbf", "gamma", gamma, lo=0.0, strict=True)
    return pointwise_layer(SinMap(math.sqrt(2.0), math.sqrt(2.0 * gamma), math.pi / 4), f"Rbf(gamma={gamma})")


def Tanh(n_quadrature: int = 32) -> Layer:
    """``tanh``; its kernel by Gauss–Hermite quadrature with ``n_quadrature²`` nodes."""
    n = check_int("Tanh", "n_quadrature", n_quadrature)
    return pointwise_layer(ElementwiseMap(jnp.tanh, n=n), f"Tanh(n_quadrature={n})")


def Sigmoid(n_quadrature: int = 32) -> Layer:
    """The logistic function ``1 / (1 + e^{−x})``; its kernel by Gauss–Hermite quadrature."""
    n = check_int("Sigmoid", "n_quadrature", n_quadrature)
    return pointwise_layer(ElementwiseMap(jax.nn.sigmoid, n=n), f"Sigmoid(n_quadrature={n})")


def Erf(a: float = 1.0, b: float = 1.0, c: float = 0.0) -> Layer:
    """``a · erf(b x) + c`` (closed form)."""
    a, b, c = (check_real("Erf", k, v) for k, v in (("a", a), ("b", b), ("c", c)))
    return pointwise_layer(ErfMap(a, b, c), f"Erf(a={a}, b={b}, c={c})")


def Gelu(n_quadrature: int = 32) -> Layer:
    """Exact GELU ``x Φ(x)``; its kernel by Gauss–Hermite quadrature with ``n_quadrature²`` nodes."""
    n = check_int("Gelu", "n_quadrature", n_quadrature)
    return pointwise_layer(ElementwiseMap(gelu, n=n), f"Gelu(n_quadrature={n})")


def Elementwise(fn: Callable, nngp_fn: Optional[Callable] = None, d_nngp_fn: Optional[Callable] = None,
                n_quadrature: int = 32, name: Optional[str] = None) -> Layer:
    """Any elementwise nonlinearity ``fn`` (a JAX-differentiable function of arrays).

    Its dual kernel ``E[fn(a) fn(b)]`` and ``E[fn'(a) fn'(b)]`` are computed by
    bivariate Gauss–Hermite quadrature (``fn'`` by autodiff) unless closed forms
    ``nngp_fn(cov12, var1, var2)`` and ``d_nngp_fn(cov12, var1, var2)`` are given
    (neural-tangents' signature).

    ``name``: what identifies this nonlinearity in a tile store (``kernel_fn(..., store=)``).
    Without it the store fingerprints ``fn`` (and the closed forms) by their code, constants,
    closures and the globals they read; a function it cannot fingerprint (say, a callable object)
    makes the store refuse the network and ask for a ``name``. With it, the name is trusted:
    give different functions different names.
    """
    if not callable(fn):
        raise ValueError("Elementwise: fn must be callable")
    for k, f in (("nngp_fn", nngp_fn), ("d_nngp_fn", d_nngp_fn)):
        if f is not None and not callable(f):
            raise ValueError(f"Elementwise: {k} must be callable or None")
    if name is not None and (not isinstance(name, str) or not name):
        raise ValueError(f"Elementwise: name must be a non-empty string, got {name!r}")
    n = check_int("Elementwise", "n_quadrature", n_quadrature)
    label = name or getattr(fn, "__qualname__", repr(fn))
    return pointwise_layer(ElementwiseMap(fn, nngp_fn, d_nngp_fn, n), f"Elementwise({label}, n_quadrature={n})",
                           spec=None if name is None else ("Elementwise", name, n))


def LayerNorm(axis: int = -1, eps: float = 1e-12) -> Layer:
    """Layer normalisation over the channels, neural-tangents' ``LayerNorm(axis=-1)``.

    Finite network: ``(x − mean) / √(var + eps)`` over the last (channel) axis, per input (and per
    pixel and group element of feature maps). Infinite width (:class:`~eqntk.core.pointwise.NormaliseMap`):
    the channel mean of centred features vanishes and their variance is the kernel's diagonal ``v``, so
    ``K' = K / √((v₁ + ε)(v₂ + ε))``, ``Θ'`` alike, and every output variance is ``v / (v + ε) ≈ 1``.

    Implemented for one number per pair (vectors, pooled or flattened features) and, per pixel, for CNN and
    planar GCNN maps; other states (raw inputs, SO(3) signals) are refused with a ``ValueError``. Its inputs
    must be centred, as neural-tangents requires Gaussian ones: ``serial`` refuses it right after a layer
    that is not centred (a nonlinearity, or a pooling layer or branch sum that does not say it keeps the
    status), since the channel mean of, e.g., ReLU features does not vanish.
    ``axis``: only ``-1`` (the channels); ``eps`` > 0.
    """
    if isinstance(axis, bool) or axis not in (-1,):
        raise ValueError(f"LayerNorm: only axis=-1 (the channels) is implemented, got axis={axis!r}; normalising "
                         "over spatial axes too has no per-pixel kernel in this library")
    eps = check_real("LayerNorm", "eps", eps, lo=0.0, strict=True)
    m = NormaliseMap(eps)

    def init_fn(key, input_shape):
        return input_shape, ()

    def apply_fn(params, x, **kwargs):
        return m.fn(jnp.asarray(x))

    def op(state):
        from ..planar.kernel_state import SpatialPairs

        if isinstance(state, Inputs):
            raise ValueError("LayerNorm cannot act on raw inputs (their channel mean does not vanish): put a Dense "
                             "layer or a convolution first")
        if not isinstance(state, (InvariantKernel, SpatialPairs)):
            raise ValueError(f"LayerNorm is implemented for vectors (one number per pair) and planar feature maps, "
                             f"not for a {type(state).__name__}")
        return state.pointwise(m)

    return Layer(init_fn, apply_fn, KernelFn(op, name=f"LayerNorm(eps={eps})", spec=("LayerNorm", axis, m),
                                             centred=None, needs_centred=True))
