"""Pointwise maps of kernels: affine (Dense / 1×1) layers and nonlinearities.

A pointwise map acts on a pair kernel value by value: with ``cov12`` the
cross-covariance of two pre-activations and ``var1``, ``var2`` their variances,

* a nonlinearity σ maps ``cov12 ↦ E[σ(a)σ(b)]`` and ``ntk ↦ E[σ'(a)σ'(b)] · ntk``,
  ``(a, b) ~ N(0, [[var1, cov12], [cov12, var2]])``, and ``var ↦ E[σ(a)²]``;
* an affine layer maps ``cov12 ↦ W² cov12 + b²`` and ``ntk ↦ W² ntk + (W² cov12 + b²)``.

Because they act value by value they apply unchanged to every kernel
representation: scalars per pair, spatial kernels, or functions on a group
sampled on a quadrature grid. Maps are static, hashable objects (they hold
only Python numbers and functions), so they can live in pytree aux data.

Closed forms follow neural-tangents (ReLU: arc-cosine kernel; Erf: Williams
1997). :class:`ElementwiseMap` handles any σ by bivariate Gauss–Hermite
quadrature, with σ' by autodiff.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional

import numpy as np
import jax
import jax.numpy as jnp

__all__ = ["PointwiseMap", "AffineMap", "NormaliseMap", "ReluMap", "ABReluMap", "SinMap", "ErfMap", "ElementwiseMap",
           "gelu"]


class PointwiseMap:
    """Base class. Subclasses implement :meth:`kernel`, :meth:`var` and :meth:`fn`."""

    nonlinear: bool = True
    #: whether the kernel needs each feature's own variance (a nonlinearity of single values), rather than
    #: their mean over the features (linear maps; LayerNorm's normaliser)
    per_feature: bool = True
    #: whether :meth:`weighted_kernel` puts the weights inside the map's evaluation (an exponential)
    #: rather than multiplying by them afterwards
    fuses_weights: bool = False

    def kernel(self, cov12, ntk, var1, var2):
        """Map ``(cov12, ntk)`` given broadcastable variances; ``ntk`` may be ``None``."""
        raise NotImplementedError

    def var(self, var):
        """Map the variance of a single pre-activation."""
        out, _ = self.kernel(var, None, var, var)
        return out

    def weighted_kernel(self, cov12, ntk, var1, var2, log_weight):
        """:meth:`kernel` times quadrature weights ``exp(log_weight)`` (broadcastable; ``-inf`` = weight 0).

        A quadrature sums these values. Maps whose output is an exponential override this to put
        the weight inside it, which XLA's CPU backend fuses into the evaluation; a separate
        multiplication by a per-point weight array is materialised at the array's full size
        before the reduction (measured 1.5-2x slower for the pool of a 128 x 128 tile).
        """
        out, t = self.kernel(cov12, ntk, var1, var2)
        w = jnp.exp(log_weight)
        return w * out, (None if t is None else w * t)

    def fn(self, x):
        """The finite-width elementwise function."""
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class AffineMap(PointwiseMap):
    """``K ↦ W² K + b²``, ``Θ ↦ W² Θ + (W² K + b²)``."""

    W_std: float = 1.0
    b_std: Optional[float] = None
    nonlinear = False
    per_feature = False

    def kernel(self, cov12, ntk, var1, var2):
        b2 = 0.0 if self.b_std is None else self.b_std**2
        out = self.W_std**2 * cov12 + b2
        return out, (None if ntk is None else self.W_std**2 * ntk + out)

    def var(self, var):
        b2 = 0.0 if self.b_std is None else self.b_std**2
        return self.W_std**2 * var + b2


@dataclasses.dataclass(frozen=True)
class NormaliseMap(PointwiseMap):
    """Layer normalisation over the channels at infinite width (neural-tangents' ``LayerNorm``).

    With infinitely many channels the channel mean of centred features vanishes and their mean square is
    the variance ``v``, so the layer divides each input's features by the deterministic ``√(v + ε)``:
    ``K ↦ K / √((v₁ + ε)(v₂ + ε))``, ``Θ`` alike (the normaliser's own gradient vanishes with the width),
    ``v ↦ v / (v + ε)``. ``fn``: the finite layer, ``(x − mean) / √(var + ε)`` over the last axis.
    """

    eps: float = 1e-12
    per_feature = False

    def kernel(self, cov12, ntk, var1, var2):
        scale = 1.0 / jnp.sqrt((var1 + self.eps) * (var2 + self.eps))
        return cov12 * scale, (None if ntk is None else ntk * scale)

    def var(self, var):
        return var / (var + self.eps)

    def fn(self, x):
        mean = jnp.mean(x, axis=-1, keepdims=True)
        return (x - mean) / jnp.sqrt(jnp.var(x, axis=-1, keepdims=True) + self.eps)


def _safe_sqrt(x):
    return jnp.sqrt(jnp.maximum(x, 0.0))


def _asin_series(y):
    """``arcsin(y)`` for ``0 ≤ y ≤ 1/2`` by its Taylor series in ``y²`` (Horner, vectorises).

    Terms ``(2k)! / (4^k k!² (2k+1)) y^(2k+1)`` shrink at least 4× per order: 24 orders give
    float64 accuracy (≤ 1e-16 relative), 11 float32's.
    """
    n = 24 if y.dtype == jnp.float64 else 11
    t = y * y
    p = jnp.full_like(t, math.comb(2 * (n - 1), n - 1) / (4 ** (n - 1) * (2 * n - 1)))
    for k in range(n - 2, -1, -1):
        p = p * t + math.comb(2 * k, k) / (4**k * (2 * k + 1))
    return y * p


def arcsin(x):
    """Elementwise ``arcsin`` on [-1, 1], vectorised (XLA's CPU ``asin`` is a scalar loop: ~3×
    slower here); accurate to a few ulp. Uses ``arcsin x = π/2 − 2 arcsin √((1−x)/2)`` for
    ``|x| > 1/2``."""
    a = jnp.abs(x)
    big = a > 0.5
    r = _asin_series(jnp.where(big, _safe_sqrt((1 - a) / 2), a))
    return jnp.sign(x) * jnp.where(big, jnp.pi / 2 - 2 * r, r)


def arccos(x):
    """Elementwise ``arccos`` on [-1, 1], vectorised, without cancellation near ±1."""
    a = jnp.abs(x)
    big = a > 0.5
    r = _asin_series(jnp.where(big, _safe_sqrt((1 - a) / 2), a))
    near = jnp.where(x > 0, 2 * r, jnp.pi - 2 * r)  # |x| > 1/2
    return jnp.where(big, near, jnp.pi / 2 - jnp.sign(x) * r)


def _relu_dual(cov12, var1, var2):
    """``(E[relu(a) relu(b)], E[1_{a>0} 1_{b>0}])`` for ``(a, b)`` with covariance ``cov12`` and
    variances ``var1``, ``var2``: ``((s + (π − θ) cov12) / 2π, (π − θ) / 2π)``, ``θ`` the angle
    between them and ``s = √(var1 var2 − cov12²)`` (the arc-cosine kernels of degrees 1 and 0).

    ``θ`` comes from one :func:`arcsin` evaluation: ``π/2 − arcsin ρ`` for ``|ρ| ≤ 1/√2``
    (``ρ = cov12 / √(var1 var2)``), else from ``arcsin(s / √(var1 var2)) ≤ π/4``, so that near
    ``|ρ| = 1`` it comes from ``s`` itself (as ``arctan2`` would) and the cancellation in
    ``s + (π − θ) cov12`` stays exact for self pairs. The reciprocal standard deviations are taken
    on the variances' own (often much smaller, broadcast) shapes.
    """
    inv1, inv2 = _inv_sqrt(var1), _inv_sqrt(var2)
    s = _safe_sqrt(var1 * var2 - cov12**2)
    inv = inv1 * inv2
    rc, rs = jnp.clip(cov12 * inv, -1.0, 1.0), jnp.clip(s * inv, 0.0, 1.0)
    a = jnp.abs(rc)
    small = a <= _SQRT_HALF
    g = arcsin(jnp.where(small, a, rs))
    theta = jnp.where(small, jnp.pi / 2 - jnp.sign(rc) * g, jnp.where(rc > 0, g, jnp.pi - g))
    return (s + (jnp.pi - theta) * cov12) / (2 * jnp.pi), (jnp.pi - theta) / (2 * jnp.pi)


_SQRT_HALF = math.sqrt(0.5)


def _inv_sqrt(v):
    """``1/√v``, and 0 where ``v = 0``."""
    v = jnp.asarray(v)
    pos = v > 0
    return jnp.where(pos, 1.0 / jnp.sqrt(jnp.where(pos, v, 1.0)), 0.0)


@dataclasses.dataclass(frozen=True)
class ReluMap(PointwiseMap):
    """σ(x) = max(x, 0): arc-cosine kernel of degree 1."""

    def kernel(self, cov12, ntk, var1, var2):
        out, dot = _relu_dual(cov12, var1, var2)
        return out, (None if ntk is None else ntk * dot)

    def var(self, var):
        return var / 2

    def fn(self, x):
        return jax.nn.relu(x)


@dataclasses.dataclass(frozen=True)
class ABReluMap(PointwiseMap):
    """σ(x) = a·min(x, 0) + b·max(x, 0) = a x + (b − a) relu(x) (neural-tangents' ``ABRelu``).

    With ``E[a relu(b)] = cov12 / 2``: ``E[σσ] = a b cov12 + (b − a)² K_relu`` and
    ``E[σ'σ'] = a b + (b − a)² (π − θ)/2π``. ``LeakyRelu(α)`` is ``(a, b) = (α, 1)``.
    """

    a: float = 0.0
    b: float = 1.0

    def kernel(self, cov12, ntk, var1, var2):
        k, dot = _relu_dual(cov12, var1, var2)
        d2 = (self.b - self.a) ** 2
        out = self.a * self.b * cov12 + d2 * k
        return out, (None if ntk is None else ntk * (self.a * self.b + d2 * dot))

    def var(self, var):
        return (self.a**2 + self.b**2) / 2 * var

    def fn(self, x):
        return self.a * jnp.minimum(x, 0) + self.b * jnp.maximum(x, 0)


@dataclasses.dataclass(frozen=True)
class SinMap(PointwiseMap):
    """σ(x) = a · sin(b x + c) (neural-tangents' ``Sin``), closed form.

    With ``E[cos(b(u ∓ v) + φ)] = cos φ · e^{−b² Var(u ∓ v)/2}``:
    ``E[σσ] = a²/2 (e^{−b²(v1 + v2 − 2 cov12)/2} − cos 2c · e^{−b²(v1 + v2 + 2 cov12)/2})``,
    ``E[σ'σ'] = a²b²/2 (e^{−b²(v1 + v2 − 2 cov12)/2} + cos 2c · e^{−b²(v1 + v2 + 2 cov12)/2})``.
    """

    a: float = 1.0
    b: float = 1.0
    c: float = 0.0
    fuses_weights = True

    def kernel(self, cov12, ntk, var1, var2):
        return self._kernel(cov12, ntk, var1, var2, 0.0)

    def weighted_kernel(self, cov12, ntk, var1, var2, log_weight):
        """The weights inside the exponentials (see :meth:`PointwiseMap.weighted_kernel`)."""
        return self._kernel(cov12, ntk, var1, var2, log_weight)

    def _kernel(self, cov12, ntk, var1, var2, log_weight):
        b2 = self.b**2
        minus = jnp.exp(-b2 * (var1 + var2 - 2 * cov12) / 2 + log_weight)  # ≤ weight: never overflows
        cos2c = math.cos(2 * self.c)
        if abs(cos2c) < 1e-15:  # c = π/4 + kπ/2 (Rbf): the second term vanishes (cos(π/2) is 6e-17 in floats)
            return self.a**2 / 2 * minus, (None if ntk is None else ntk * (self.a**2 * b2 / 2 * minus))
        plus = cos2c * jnp.exp(-b2 * (var1 + var2 + 2 * cov12) / 2 + log_weight)
        out = self.a**2 / 2 * (minus - plus)
        return out, (None if ntk is None else ntk * (self.a**2 * b2 / 2 * (minus + plus)))

    def fn(self, x):
        return self.a * jnp.sin(self.b * x + self.c)


@dataclasses.dataclass(frozen=True)
class ErfMap(PointwiseMap):
    """σ(x) = a · erf(b x) + c (neural-tangents' ``Erf(a, b, c)``)."""

    a: float = 1.0
    b: float = 1.0
    c: float = 0.0

    def kernel(self, cov12, ntk, var1, var2):
        b2 = self.b**2
        d1 = 1 + 2 * b2 * var1
        d2 = 1 + 2 * b2 * var2
        rho = 2 * b2 * cov12 / jnp.sqrt(d1 * d2)
        out = self.a**2 * (2 / jnp.pi) * arcsin(jnp.clip(rho, -1.0, 1.0)) + self.c**2
        if ntk is None:
            return out, None
        dot = self.a**2 * b2 * (4 / jnp.pi) / _safe_sqrt(d1 * d2 - 4 * b2**2 * cov12**2)
        return out, ntk * dot

    def fn(self, x):
        return self.a * jax.scipy.special.erf(self.b * x) + self.c


def gelu(x):
    """Exact GELU, ``x Φ(x)``."""
    return 0.5 * x * (1 + jax.scipy.special.erf(x / jnp.sqrt(2.0)))


@dataclasses.dataclass(frozen=True)
class ElementwiseMap(PointwiseMap):
    """Any σ by bivariate Gauss–Hermite quadrature (``n`` nodes per dimension).

    ``E[σ(a)σ(b)]`` and ``E[σ'(a)σ'(b)]`` (σ' by ``jax.grad``) are evaluated with
    ``b = ρ √var2 z1 + √(var2 (1 - ρ²)) z2``, ``a = √var1 z1``. Accurate to
    ~1e-10 for smooth σ of moderate growth with the default ``n = 32``; slower
    to converge for kinks (use a closed form such as :class:`ReluMap` there).
    Optional ``nngp_fn(cov12, var1, var2)`` and ``d_nngp_fn`` (its derivative in
    ``cov12``, i.e. ``E[σ'σ']``) replace the quadrature.
    """

    f: Callable = None
    nngp_fn: Optional[Callable] = None
    d_nngp_fn: Optional[Callable] = None
    n: int = 32

    def _nodes(self, dtype):
        z, w = np.polynomial.hermite_e.hermegauss(self.n)
        return jnp.asarray(z, dtype), jnp.asarray(w / np.sqrt(2 * np.pi), dtype)

    def _expect(self, g, cov12, var1, var2):
        dtype = jnp.result_type(cov12, var1, var2, float)
        z, w = self._nodes(dtype)
        s1 = jnp.sqrt(jnp.maximum(var1, 0.0))
        s2 = jnp.sqrt(jnp.maximum(var2, 0.0))
        denom = s1 * s2
        rho = jnp.where(denom > 0, cov12 / jnp.where(denom > 0, denom, 1.0), 0.0)
        rho = jnp.clip(rho, -1.0, 1.0)
        r = jnp.sqrt(1 - rho**2)
        shape = jnp.broadcast_shapes(jnp.shape(cov12), jnp.shape(var1), jnp.shape(var2))

        def outer(i, acc):
            ga = w[i] * g(s1 * z[i])
            u = rho * z[i]

            # node by node: a (n, *shape) array of inner values would be n kernel-sized temporaries
            def inner(j, acc):
                return acc + ga * (w[j] * g(s2 * (u + r * z[j])))

            return jax.lax.fori_loop(0, self.n, inner, acc)

        return jax.lax.fori_loop(0, self.n, outer, jnp.zeros(shape, dtype))

    def kernel(self, cov12, ntk, var1, var2):
        if self.nngp_fn is not None:
            out = self.nngp_fn(cov12, var1, var2)
        else:
            out = self._expect(self.f, cov12, var1, var2)
        if ntk is None:
            return out, None
        if self.d_nngp_fn is not None:
            dot = self.d_nngp_fn(cov12, var1, var2)
        else:
            dot = self._expect(_elementwise_grad(self.f), cov12, var1, var2)
        return out, ntk * dot

    def fn(self, x):
        return self.f(x)


def _elementwise_grad(f):
    def df(x):
        return jax.grad(lambda t: jnp.sum(f(t)))(x)

    return df
