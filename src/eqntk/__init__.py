"""eqntk: exact infinite-width NNGP and NTK kernels of group-convolutional networks.

Subpackages: :mod:`eqntk.stax` (layers), :mod:`eqntk.so3` and :mod:`eqntk.planar` (groups),
:mod:`eqntk.core` (shared kernel machinery), :mod:`eqntk.predict` (kernel regression, gradient
flow), :mod:`eqntk.landmarks` (Nyström regression), :mod:`eqntk.linalg` (the one solver: PSD rule, Cholesky with jitter, spectra),
:mod:`eqntk.augment` (group-averaged kernels), :mod:`eqntk.spectral` (spectra, learning
curves), :mod:`eqntk.data` (QM9, atomic environments, images).

Importing eqntk does not change JAX's configuration: enable float64 yourself with
``jax.config.update("jax_enable_x64", True)`` when you want it.
"""

from . import augment, core, data, landmarks, linalg, planar, predict, so3, spectral, stax

__version__ = "0.1.0"

__all__ = ["stax", "so3", "planar", "core", "linalg", "predict", "landmarks", "augment", "spectral", "data", "__version__"]
