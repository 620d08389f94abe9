"""The base of the parity references egraff-lmp writes itself.

Where a family ships no ASE calculator that evaluates a model file as the family's own
code does (MACE's ``*-lammps.pt`` through its ``forward``, TorchMD-Net's own forward,
PyG's DimeNet++ forward), the adapter subclasses :class:`ReferenceCalculator` and writes
only :meth:`~ReferenceCalculator.evaluate`; the base gives them one ASE face: energy and
free energy (eV), forces (eV/Å) and, where the family's code computes them, per-atom
energies (eV), and refuses atoms of a species the model lacks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes


@dataclass
class Evaluation:
    """What a reference computed: forces (eV/Å) [N, 3], and per-atom energies (eV) [N]
    and/or the energy (eV); the energy is the sum of the per-atom ones where not given."""

    forces: np.ndarray
    energies: np.ndarray | None = None
    energy: float | None = None


class ReferenceCalculator(Calculator):
    """A family's own evaluation of a model as an ASE calculator, for the parity checks.

    Subclasses set ``per_atom`` (whether :meth:`evaluate` gives per-atom energies) and
    implement :meth:`evaluate`; ``dtype`` is the model's, ``atomic_numbers`` the elements
    it knows (None: any)."""

    per_atom = False
    implemented_properties = ["energy", "free_energy", "forces"]

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.implemented_properties = (["energy", "free_energy", "forces"]
                                      + (["energies"] if cls.per_atom else []))

    def __init__(self, dtype: torch.dtype, atomic_numbers=None):
        super().__init__()
        self.dtype = dtype
        self.atomic_numbers = None if atomic_numbers is None else [int(z) for z in
                                                                   atomic_numbers]

    def evaluate(self, atoms) -> Evaluation:
        raise NotImplementedError

    def positions(self, xyz) -> torch.Tensor:
        """Positions ``xyz`` (Å, [N, 3]) in the model's dtype, for autograd forces."""
        return torch.tensor(np.asarray(xyz), dtype=self.dtype, requires_grad=True)

    @staticmethod
    def forces(energy: torch.Tensor, pos: torch.Tensor) -> np.ndarray:
        """``-d energy / d pos`` (eV/Å) as float64."""
        (g,) = torch.autograd.grad(energy, pos)
        return (-g).detach().double().numpy()

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        from ...errors import EgraffError

        super().calculate(atoms, properties, system_changes)
        a = self.atoms
        if self.atomic_numbers is not None:
            unknown = sorted(set(a.numbers.tolist()) - set(self.atomic_numbers))
            if unknown:
                raise EgraffError(f"the parity reference has no atomic numbers {unknown}")
        from ..artifact import default_dtype

        with default_dtype(self.dtype):  # code that makes tensors without a dtype follows it
            r = self.evaluate(a)
        energy = float(r.energies.sum()) if r.energy is None else float(r.energy)
        self.results = {"energy": energy, "free_energy": energy, "forces": r.forces}
        if r.energies is not None:
            self.results["energies"] = r.energies
