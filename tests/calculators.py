"""ASE calculator factories for ``egraff-lmp run --calculator tests.calculators:NAME``-style
use in the tests (the module is importable as ``calculators`` from the tests folder)."""

from __future__ import annotations


def argon_lj():
    """ASE's own Lennard-Jones for argon in eV/Å (ε = 0.0104 eV, σ = 3.4 Å, rc = 8.5 Å),
    shifted to zero at rc (LAMMPS: lj/cut with pair_modify shift yes)."""
    from ase.calculators.lj import LennardJones

    return LennardJones(epsilon=0.0104, sigma=3.4, rc=8.5, smooth=False)
