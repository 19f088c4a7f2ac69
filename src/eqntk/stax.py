"""All layers, neural-tangents style: ``from eqntk import stax``.

Every layer is a triple ``(init_fn, apply_fn, kernel_fn)``; compose them with
:func:`serial`; residual blocks with ``FanOut``, ``parallel``, ``Identity`` and ``FanInSum``
(:mod:`eqntk.core.branching`). Group-agnostic layers come from :mod:`eqntk.core.layers`, the
SO(3) layers from :mod:`eqntk.so3.layers`.
"""

from .core.branching import FanInSum, FanOut, Identity, parallel
from .core.layers import (ABRelu, Dense, Elementwise, Erf, Gelu, KernelFn, Layer, LayerNorm, LeakyRelu, Rbf, Relu,
                          Sigmoid, Sin, Tanh, serial)
from .so3.layers import S2ConvSO3, SO3ConvSO3, SO3Pool
from .planar.layers import (AvgPool, Conv, Flatten, GlobalAvgPool, GroupPool, P2ConvP2, P4ConvP4, P4MConvP4M, Z2ConvP2,
                            Z2ConvP4, Z2ConvP4M)

__all__ = [
    "serial", "Layer", "KernelFn",
    "Identity", "FanOut", "parallel", "FanInSum",
    "Dense", "Relu", "ABRelu", "LeakyRelu", "Erf", "Sin", "Rbf", "Gelu", "Tanh", "Sigmoid", "Elementwise", "LayerNorm",
    "S2ConvSO3", "SO3ConvSO3", "SO3Pool",
    "Z2ConvP4", "P4ConvP4", "Z2ConvP4M", "P4MConvP4M", "Z2ConvP2", "P2ConvP2", "GroupPool",
    "Conv", "GlobalAvgPool", "AvgPool", "Flatten",
]
