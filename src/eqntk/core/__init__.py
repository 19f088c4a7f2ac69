"""Group-agnostic kernel machinery: states, pointwise maps, layers, tiled driver."""

from .kernel import Cost, Inputs, InvariantKernel
from .layers import KernelFn, Layer, serial
from .pointwise import ABReluMap, AffineMap, ElementwiseMap, ErfMap, PointwiseMap, ReluMap, SinMap
