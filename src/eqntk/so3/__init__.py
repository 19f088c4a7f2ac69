"""SO(3): harmonic analysis (real Wigner-D, exact quadrature, transforms) and GCNN layers.

Modules: :mod:`.harmonics` (real SH, S² grids), :mod:`.wigner` (Wigner-D, rotations),
:mod:`.quadrature` (SO(3) grids), :mod:`.transform` (grid ↔ Wigner-D blocks),
:mod:`.kernel_state` (pair kernels as functions on SO(3)), :mod:`.features`
(finite-width feature maps), :mod:`.layers` (S2ConvSO3, SO3ConvSO3, SO3Pool),
:mod:`.vector` (degree-1 outputs as a 3 × 3 matrix kernel).
"""

from . import harmonics, quadrature, transform, vector, wigner
from .harmonics import coeffs_from_s2_samples, s2_grid, s2_samples_from_coeffs, real_sph_harm
from .quadrature import so3_grid
from .wigner import random_rotation, rotate_coeffs, wigner_D
