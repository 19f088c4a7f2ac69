"""eqntk: exact infinite-width NNGP and NTK kernels of group-convolutional networks.

Importing eqntk does not change JAX's configuration: enable float64 yourself with
``jax.config.update("jax_enable_x64", True)`` when you want it.
"""

from . import core, so3, stax

__version__ = "0.1.0"

__all__ = ["stax", "so3", "core", "__version__"]
