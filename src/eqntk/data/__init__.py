"""Data layer: molecules (QM9), atomic environments as S² signals, molecular kernels, images.

* :mod:`.molecules` — :class:`MoleculeSet`, a flat typed container (Z, R, offsets, targets).
* :mod:`.qm9` — :func:`load_qm9` (embedded subset, full QM9 from ``qm9pack``, npz files),
  :func:`atomization_energy` (QM9's atomref table).
* :mod:`.environments` — :func:`atomic_environments`: each atom's neighbourhood as real SH
  coefficients ``(n_atoms, L², C)``, the input of ``stax.S2ConvSO3``.
* :mod:`.environments_jax` — :func:`environment_fn`: the same, as a differentiable JAX function
  of one molecule's positions (forces, :mod:`eqntk.forces`).
* :mod:`.molecular` — molecular kernels ``K(M, M') = Σ_i Σ_j k(a_i, a'_j)`` by segment sums;
  landmark atoms for :mod:`eqntk.landmarks`.
* :mod:`.md17` — :func:`load_md17` (MD17-style conformations, energies and forces; an embedded
  ethanol subset).
* :mod:`.images` — npz / image-folder loaders, resizing, rotations, crops.
* :mod:`.splits` — seeded disjoint train/validation/test splits.
"""

from .elements import QM9_ELEMENTS, atomic_number, symbol
from .environments import EnvironmentSpec, atomic_environments, cosine_cutoff, smoothing_coefficients
from .environments_jax import environment_fn
from .images import (ImageSet, crops_per_image, default_digits_path, extract_crops, load_digits, load_image_folder,
                     load_images_npz, load_nct_crc_he_tiles, random_rotations, resize_images,
                     rotate_images, rot90_images)
from .md17 import default_md17_path, load_md17
from .molecular import atoms_as_molecules, landmark_atoms, molecular_kernel, molecular_kernel_fn, segment_sum_gram
from .molecules import Molecule, MoleculeSet, load_molecules_npz
from .qm9 import QM9_ATOMREF, QM9_UNITS, atomization_energy, default_qm9_path, load_qm9, read_qm9pack
from .splits import split_indices
from .units import HARTREE_IN_EV, HARTREE_IN_KCAL_MOL, convert_energy

__all__ = [
    "Molecule", "MoleculeSet", "load_molecules_npz",
    "load_qm9", "read_qm9pack", "default_qm9_path", "atomization_energy", "QM9_ATOMREF", "QM9_UNITS",
    "EnvironmentSpec", "atomic_environments", "smoothing_coefficients", "cosine_cutoff", "environment_fn",
    "molecular_kernel", "molecular_kernel_fn", "segment_sum_gram", "landmark_atoms", "atoms_as_molecules",
    "ImageSet", "load_images_npz", "load_image_folder", "load_nct_crc_he_tiles", "load_digits", "default_digits_path",
    "resize_images", "rot90_images", "rotate_images", "random_rotations", "extract_crops", "crops_per_image",
    "load_md17", "default_md17_path",
    "split_indices", "convert_energy", "HARTREE_IN_EV", "HARTREE_IN_KCAL_MOL",
    "QM9_ELEMENTS", "symbol", "atomic_number",
]
