"""Flagship experiments behind the ``eqntk`` command (logic only; :mod:`eqntk.cli` parses arguments).

* :mod:`.qm9` — QM9 atomization-energy kernel regression: SO(3) GCNN NTK/NNGP vs an MLP-on-signals NTK.
* :mod:`.digits` — rotated-digits classification: CNN vs p4 vs p4m NTK.
* :mod:`.md17` — per-atom forces with the equivariant (l = 1) matrix kernel of an SO(3) GCNN.
* :mod:`.common` — tables, JSON, plots, ridge selection on a validation split.

These modules never change JAX's configuration; run them with ``jax_enable_x64`` on (the CLI
does) so that the regressions are solved in float64 whatever dtype the kernels are computed in.
"""
