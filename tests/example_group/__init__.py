"""A minimal example group for eqntk: ``C_2`` acting on 1-D signals by reflection ``x[i] → x[n-1-i]``.

It shows what a new group needs (docs/architecture.md, "Adding a group"): this folder and nothing
in the library. :mod:`.kernel_state` holds the group's kernel state, :class:`~.kernel_state.C2Pairs`,
which implements :class:`eqntk.core.kernel.KernelState`; :mod:`.layers` holds the lift, the group
convolution and the pool, each an ordinary ``Layer(init_fn, apply_fn, KernelFn(op, name, spec))``.
They compose with eqntk's own ``Dense``, nonlinearities, ``serial``, ``FanOut``/``parallel``/
``FanInSum`` unchanged, because those layers only call the protocol's methods. The "registration"
of a library group is one import line in ``eqntk/stax.py`` (to expose its layers as ``stax.X``);
this example, living in tests/, needs none: its layers are used directly.

Tests: tests/test_example_group.py.
"""

from .kernel_state import C2Pairs
from .layers import C2Conv, C2Lift, C2Pool, reflect

__all__ = ["C2Pairs", "C2Lift", "C2Conv", "C2Pool", "reflect"]
