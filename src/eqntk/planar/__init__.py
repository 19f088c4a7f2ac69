"""Planar image groups ``R ⋉ Z²`` (p2, p4, p4m) and the plain CNN.

Modules: :mod:`.groups` (point groups, their action on pixel grids),
:mod:`.spatial` (the CNN kernel operator), :mod:`.kernel_state` (|G| spatial
blocks per pair), :mod:`.features` (finite-width group convolutions),
:mod:`.layers` (stax layers), :mod:`.irreps` (irrep blocks of per-element kernels).
"""

from . import groups, irreps, spatial
from .groups import P2, P4, P4M, TRIVIAL, PlanarGroup, transform_grid
from .irreps import group_fourier
from .layers import (Conv, GlobalAvgPool, GroupPool, P2ConvP2, P4ConvP4, P4MConvP4M, Z2ConvP2, Z2ConvP4,
                     Z2ConvP4M)
