"""Structural fingerprints: what identifies a computation, for resumable stores.

A tile store must never hand back tiles of another computation. Display names are not enough:
``Elementwise(lambda z: jnp.sin(z))`` and ``Elementwise(lambda z: jnp.tanh(z))`` print the same.
A fingerprint is a SHA-256 over a canonical JSON *description* of an object:

* numbers, strings, ``None``, booleans: their type and ``repr`` (so ``1`` ≠ ``1.0`` ≠ ``True``);
* tuples, lists, dicts: their items, recursively;
* NumPy / JAX arrays: shape, dtype and bytes;
* dataclasses (layer specs, pointwise maps, groups): the class's qualified name and every field;
* classes: their qualified name;
* Python functions and lambdas: their bytecode, constants, names, defaults, closure values and
  the values of the globals they read (recursively; line numbers are left out, so moving a
  function in its file keeps its fingerprint);
* modules, builtins, NumPy ufuncs, JAX's jitted functions and other callables that can be
  found again by their ``module.qualname`` (``jnp.sin``, ``jax.nn.relu``): that name;
* ``functools.partial``: its function, arguments and keywords;
* any object with a ``__fingerprint__()`` method (eqntk's ``KernelFn``; a user's callable
  class can define one): what that method returns, described in turn.

Modules are identified by their name only: a function reached through a module attribute
(``mymodule.act`` inside a lambda) is not fingerprinted by its code — edit such a helper and the
store will not notice; pass the helper itself (``Elementwise(mymodule.act)``) or a ``name=``.
Values are taken as they are when the fingerprint is made: a function whose closure holds a
list that it appends to gets a new fingerprint each time the list grows (a store then refuses
to resume: loud, never wrong).

Anything else (an arbitrary callable object, an open file, ...) raises :class:`Unfingerprintable`,
with a reason; a store then refuses the computation unless the user names it explicitly
(``Elementwise(fn, name=...)``).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import json
import sys
import types
from typing import Any

import numpy as np

__all__ = ["Unfingerprintable", "describe", "fingerprint", "fingerprint_arrays"]


class Unfingerprintable(TypeError):
    """An object has no structural description (the message says which and why)."""


def fingerprint_arrays(*arrays) -> str:
    """SHA-256 over shapes, dtypes and bytes of the arrays (``None`` entries allowed)."""
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"none")
            continue
        a = np.ascontiguousarray(np.asarray(a))
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def fingerprint(obj: Any) -> str:
    """SHA-256 hex digest of :func:`describe` ``(obj)``; raises :class:`Unfingerprintable`."""
    text = json.dumps(describe(obj), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def describe(obj: Any, _seen: frozenset = frozenset()) -> Any:
    """A canonical, JSON-serialisable description of ``obj`` (see the module docstring)."""
    if obj is None or obj is Ellipsis or isinstance(obj, (bool, int, float, complex, str, bytes)):
        return [type(obj).__name__, repr(obj)]
    if isinstance(obj, np.dtype):
        return ["dtype", str(obj)]
    if isinstance(obj, np.generic):
        return ["scalar", str(obj.dtype), repr(obj.item())]
    if isinstance(obj, (tuple, list)):
        return [type(obj).__name__, [describe(o, _seen) for o in obj]]
    if isinstance(obj, dict):
        items = sorted(((json.dumps(describe(k, _seen)), describe(v, _seen)) for k, v in obj.items()))
        return ["dict", items]
    if isinstance(obj, (frozenset, set)):
        return [type(obj).__name__, sorted(json.dumps(describe(o, _seen)) for o in obj)]
    if _is_array(obj):
        return ["array", fingerprint_arrays(obj)]
    if id(obj) in _seen:  # recursion (a function calling itself): its name suffices
        return ["recursion", getattr(obj, "__qualname__", type(obj).__name__)]
    seen = _seen | {id(obj)}
    if callable(getattr(obj, "__fingerprint__", None)) and not isinstance(obj, type):
        return ["custom", describe(obj.__fingerprint__(), seen)]
    if isinstance(obj, types.ModuleType):
        return ["module", obj.__name__]
    if isinstance(obj, functools.partial):
        return ["partial", describe(obj.func, seen), describe(obj.args, seen), describe(obj.keywords, seen)]
    if isinstance(obj, types.MethodType):
        return ["method", describe(obj.__func__, seen), describe(obj.__self__, seen)]
    if isinstance(obj, types.FunctionType):
        return _describe_function(obj, seen)
    if isinstance(obj, type):  # a class by its name (its body is not fingerprinted)
        return ["class", f"{obj.__module__}.{obj.__qualname__}"]
    if dataclasses.is_dataclass(obj):
        return ["dataclass", f"{type(obj).__module__}.{type(obj).__qualname__}",
                [[f.name, describe(getattr(obj, f.name), seen)] for f in dataclasses.fields(obj)]]
    name = _importable_name(obj)
    if name is not None:  # builtins, ufuncs, jitted library functions, custom_jvp wrappers
        return ["named", name]
    return _refuse(obj, "it is neither a function, a dataclass, an array, a number nor an importable object")


def _is_array(obj) -> bool:
    if isinstance(obj, np.ndarray):
        return True
    jax = sys.modules.get("jax")
    return jax is not None and isinstance(obj, jax.Array)


def _refuse(obj, why: str):
    raise Unfingerprintable(f"cannot fingerprint {type(obj).__name__} object {obj!r:.80}: {why}")


def _importable_name(obj) -> str | None:
    """``module.qualname`` if importing it gives back ``obj`` itself, else ``None``."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname or module == "__main__":
        return None
    try:
        target = importlib.import_module(module)
        for part in qualname.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError):
        return None
    return f"{module}.{qualname}" if target is obj else None


def _describe_code(code: types.CodeType) -> list:
    consts = [_describe_code(c) if isinstance(c, types.CodeType) else describe(c) for c in code.co_consts]
    return ["code", code.co_code.hex(), consts, list(code.co_names), list(code.co_varnames),
            list(code.co_freevars), code.co_argcount, code.co_kwonlyargcount, code.co_flags]


def _global_names(code: types.CodeType) -> set:
    names = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names |= _global_names(c)
    return names


def _describe_function(fn: types.FunctionType, seen: frozenset) -> list:
    code = fn.__code__
    closure = []
    for name, cell in zip(code.co_freevars, fn.__closure__ or ()):
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell (a name assigned later in the enclosing function)
            closure.append([name, "empty"])
            continue
        closure.append([name, _describe_named(value, name, fn, seen)])
    globals_ = []
    g = fn.__globals__
    builtins = g.get("__builtins__", {})
    for name in sorted(_global_names(code)):
        if name in g:
            globals_.append([name, _describe_named(g[name], name, fn, seen)])
        elif not (isinstance(builtins, dict) and name in builtins) and not hasattr(builtins, name):
            globals_.append([name, "attribute"])  # an attribute name (jnp.sin's "sin"): in the code already
    return ["function", _describe_code(code), describe(fn.__defaults__, seen), describe(fn.__kwdefaults__, seen),
            closure, globals_]


def _describe_named(value, name: str, fn, seen: frozenset):
    try:
        return describe(value, seen)
    except Unfingerprintable as e:
        raise Unfingerprintable(f"{fn.__qualname__} uses {name!r}, and {e}") from None
