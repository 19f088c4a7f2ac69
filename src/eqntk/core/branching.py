"""Branching layers for residual networks: ``Identity``, ``FanOut``, ``parallel``, ``FanInSum``.

A residual block is, as in neural-tangents' ``stax``::

    serial(FanOut(2), parallel(serial(Conv(C, 3), Relu(), Conv(C, 3)), Identity()), FanInSum())

Between ``FanOut`` and ``FanInSum`` the finite network's value is a list of branch outputs (one per
branch) and its parameters/shapes are lists too; the kernel state is a :class:`Branches`, a tuple of
ordinary kernel states (one per branch) that ``parallel`` advances branch by branch.

Kernel of a sum. For branches ``f_1 … f_n`` computed from one common input,
``NNGP(Σ_i f_i) = Σ_i Σ_j E[f_i(x) f_j(x')]``, cross terms included: after ``FanOut`` the branches
are the *same* random function. ``FanInSum`` returns ``Σ_i K_i`` and ``Σ_i Θ_i`` (neural-tangents'
rule), which is exact when every cross term vanishes. It does when at most one branch is not
*centred*: a branch whose last parameterised layer (``Dense``, a convolution, a lift; only
``Identity`` after it) is linear in zero-mean parameters drawn for that layer alone,
``f_i = W h + b`` with ``W, b`` independent of everything else, has
``E[f_i(x) f_j(x')] = E[W] E[h(x) f_j(x')] = 0`` for every other branch ``j`` (and likewise for the
NTK's cross terms: each has a factor ``W`` or a zero derivative). The typical block — a branch
ending in ``Dense``/``Conv`` next to ``Identity()`` — is exact. Two non-centred branches are refused
with a ``ValueError``: ``FanOut(2) → parallel(Identity(), Identity()) → FanInSum()`` is ``2x``, whose
NNGP is ``4K``, not ``2K``; ``parallel(Relu(), Identity())`` has the cross term ``E[relu(u) v] ≠ 0``;
``parallel(serial(Dense(), Relu()), Identity())`` has ``E[relu(Wh)] ≠ 0``. Each layer's
:attr:`~eqntk.core.layers.KernelFn.centred` says whether it makes its output centred.

State sums go through one protocol method, ``state.add(other)`` (:mod:`eqntk.core.kernel`):
implemented for raw flat inputs and invariant kernels (MLP ResNets), planar/CNN spatial kernels
(residual CNNs and GCNNs on equal grids) and SO(3) pair functions (residual SO(3) GCNNs on equal
bandlimits: :meth:`eqntk.so3.kernel_state.SO3Pairs.add` keeps the sum as a node of the pair function,
each branch's deferred pointwise maps evaluated on the next integrating layer's grid and the values
added there; the finite network's :class:`eqntk.so3.features.SO3Sum` does the same).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Optional

import jax
import jax.numpy as jnp

from .checks import check_int
from .deferred import Deferred
from .kernel import Cost, held_cost, pytree_dataclass
from .layers import KernelFn, Layer, _op_of

__all__ = ["Branches", "Identity", "FanOut", "parallel", "FanInSum"]


@pytree_dataclass(static=("centred", "cost"))
class Branches:
    """Kernel state between ``FanOut`` and ``FanInSum``: one ordinary state per branch.

    ``states``: the branches' states (pytrees); ``centred``: per branch, whether its output is centred
    and fresh (see the module docstring); ``cost``: the peak working memory so far, with the other
    branches' states counted as held while one branch is computed.
    """

    states: tuple
    centred: tuple
    cost: Cost = Cost()

    def _misuse(self, what: str) -> ValueError:
        return ValueError(f"{what} acts on {len(self.states)} branches (after FanOut): wrap the branches' layers "
                          f"in parallel(...) and close them with FanInSum()")

    def pointwise(self, m):
        raise self._misuse(type(m).__name__.removesuffix("Map"))

    def add(self, other):
        raise ValueError("FanInSum: a branch still holds several branches (a FanOut inside it without its own "
                         "FanInSum)")

    def output(self):
        raise ValueError(f"the network ends with {len(self.states)} branches: close them with FanInSum()")

    @property
    def kind(self) -> str:
        return f"{len(self.states)} branches (after FanOut)"


def _is_shape(s) -> bool:
    return isinstance(s, (tuple, list)) and all(not isinstance(d, (tuple, list)) for d in s)


def _shape_list(where: str, shapes, n: Optional[int] = None) -> list:
    """The branches' shapes (``n`` of them when given)."""
    if not isinstance(shapes, (tuple, list)) or not shapes or _is_shape(shapes):
        got = f"one shape {tuple(shapes)}" if _is_shape(shapes) and shapes else repr(shapes)
        raise ValueError(f"{where}: expected a list of branch shapes (put FanOut(n) first), got {got}")
    if n is not None and len(shapes) != n:
        raise ValueError(f"{where}: expected the shapes of {n} branches, got {len(shapes)}")
    return list(shapes)


def _branch_list(where: str, xs, n: int) -> list:
    if not isinstance(xs, (tuple, list)) or len(xs) != n:
        got = f"{len(xs)} branches" if isinstance(xs, (tuple, list)) else f"one array of shape {jnp.shape(xs)}"
        raise ValueError(f"{where}: expected a list of {n} branch outputs (from FanOut({n})), got {got}")
    return list(xs)


def _branches(where: str, state, n: Optional[int] = None) -> Branches:
    if not isinstance(state, Branches):
        raise ValueError(f"{where} needs branches as input: put FanOut(n) before it")
    if n is not None and len(state.states) != n:
        raise ValueError(f"{where} has {n} layers but its input has {len(state.states)} branches")
    return state


def Identity() -> Layer:
    """The identity ``x ↦ x``: no parameters, kernel state unchanged (``K' = K``, ``Θ' = Θ``).

    It keeps its input's *centred* status, so ``serial(Conv(...), Identity())`` is still centred.
    """

    def init_fn(key, input_shape):
        return input_shape, ()

    def apply_fn(params, x, **kwargs):
        return x

    return Layer(init_fn, apply_fn, KernelFn(lambda state: state, name="Identity", spec=("Identity",), centred=None))


def FanOut(num: int) -> Layer:
    """``num`` copies of the input: ``x ↦ [x] * num`` (shapes likewise); the copies are one random function.

    Kernel: a :class:`Branches` of ``num`` copies of the state, none centred.
    """
    num = check_int("FanOut", "num", num)

    def init_fn(key, input_shape):
        return [input_shape] * num, ()

    def apply_fn(params, x, **kwargs):
        if isinstance(x, (tuple, list)):
            raise ValueError(f"FanOut: its input is already {len(x)} branches; close them with FanInSum() first")
        return [x] * num

    def op(state):
        if isinstance(state, Branches):
            raise ValueError(f"FanOut: its input is already {len(state.states)} branches; close them with "
                             "FanInSum() first (or put the FanOut inside one branch of parallel)")
        return Branches(tuple([state] * num), (False,) * num, state.cost)

    return Layer(init_fn, apply_fn, KernelFn(op, name=f"FanOut({num})", spec=("FanOut", num)))


def parallel(*layers) -> Layer:
    """Layer ``i`` on branch ``i``: ``[x_1, …, x_n] ↦ [l_1(x_1), …, l_n(x_n)]`` (params and shapes: lists).

    Each branch's kernel state advances through its own layer; the state's cost counts the other
    branches' states as held in memory meanwhile (:func:`~eqntk.core.kernel.held_cost`).
    """
    if not layers:
        raise ValueError("parallel needs at least one layer")
    layers = [Layer(*l) for l in layers]
    ops = [_op_of(l.kernel_fn) for l in layers]
    effects = [l.kernel_fn.centred for l in layers]
    n = len(layers)

    def init_fn(key, input_shape):
        shapes = _shape_list("parallel", input_shape, n)
        keys = jax.random.split(key, n)
        outs = [l.init_fn(k, s) for l, k, s in zip(layers, keys, shapes)]
        return [o[0] for o in outs], tuple(o[1] for o in outs)

    def apply_fn(params, x, **kwargs):
        xs = _branch_list("parallel", x, n)
        if len(params) != n:
            raise ValueError(f"parallel: expected {n} parameter entries, got {len(params)}")
        return [l.apply_fn(p, xi, **kwargs) for l, p, xi in zip(layers, params, xs)]

    def op(state):
        state = _branches("parallel", state, n)
        states, cost = list(state.states), state.cost
        for i, o in enumerate(ops):
            states[i] = o(states[i])
            others = functools.reduce(Cost.plus, (held_cost(s) for j, s in enumerate(states) if j != i), Cost(0, 0))
            cost = cost.max(*states[i].cost.plus(others))
        centred = tuple(c if e is None else e for c, e in zip(state.centred, effects))
        return Branches(tuple(states), centred, cost)

    spec = ("parallel", tuple(l.kernel_fn.identity() for l in layers))
    regrid = None
    if any(l.kernel_fn.regrid is not None for l in layers):
        def regrid(oversampling: float) -> KernelFn:
            return parallel(*(l if l.kernel_fn.regrid is None
                              else l._replace(kernel_fn=l.kernel_fn.regrid(oversampling)) for l in layers)).kernel_fn
    name = "parallel(" + ", ".join(l.kernel_fn.name for l in layers) + ")"
    return Layer(init_fn, apply_fn, KernelFn(op, name=name, spec=spec, regrid=regrid))


def _check_sum(state: Branches) -> None:
    loose = [i for i, c in enumerate(state.centred) if not c]
    if len(loose) > 1:
        raise ValueError(
            f"FanInSum: branches {loose} do not end in their own parameterised linear layer (Dense, Conv, a "
            "group convolution; only Identity after it), so their outputs are correlated and the sum of their "
            "kernels would be wrong (e.g. FanOut(2) → parallel(Identity(), Identity()) is 2x, whose NNGP is 4K, "
            "not 2K). At most one branch may be free of such a layer")


def FanInSum() -> Layer:
    """Sum of the branches: ``[x_1, …, x_n] ↦ Σ_i x_i`` (equal shapes).

    Kernel: ``K = Σ_i K_i``, ``Θ = Σ_i Θ_i`` (and per-input variances likewise), by the states'
    ``add``; exact when at most one branch is not centred, refused (``ValueError``) otherwise — see
    :mod:`eqntk.core.branching`. SO(3) feature maps and kernels are summed lazily, on the next
    integrating layer's quadrature grid (:meth:`eqntk.so3.kernel_state.SO3Pairs.add`).
    """

    def init_fn(key, input_shape):
        shapes = [tuple(s) for s in _shape_list("FanInSum", input_shape)]
        if any(s != shapes[0] for s in shapes):
            raise ValueError(f"FanInSum: the branches' shapes differ: {shapes}")
        return shapes[0], ()

    def apply_fn(params, x, **kwargs):
        if not isinstance(x, (tuple, list)) or not x:
            raise ValueError("FanInSum: expected a list of branch outputs (put FanOut(n) and parallel(...) first)")
        lazy = [isinstance(xi, Deferred) for xi in x]
        if any(lazy):  # lazy group signals (SO(3) feature maps with pending pointwise functions)
            if not all(lazy):
                raise ValueError("FanInSum: cannot add an SO(3) signal to a plain array: the branches must end in "
                                 "features of the same kind and shape")
            return functools.reduce(lambda a, b: a.plus(b), x)
        shapes = [tuple(jnp.shape(xi)) for xi in x]
        if any(s != shapes[0] for s in shapes):
            raise ValueError(f"FanInSum: the branches' shapes differ: {shapes}")
        return functools.reduce(lambda a, b: a + b, x)

    def op(state):
        state = _branches("FanInSum", state)
        _check_sum(state)
        total = functools.reduce(lambda a, b: a.add(b), state.states)
        held = functools.reduce(Cost.plus, (held_cost(s) for s in state.states))
        return dataclasses.replace(total, cost=total.cost.max(*state.cost).max(*held))

    return Layer(init_fn, apply_fn, KernelFn(op, name="FanInSum", spec=("FanInSum",)))
