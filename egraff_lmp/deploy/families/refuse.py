"""What an artifact cannot reproduce, refused in one line with one wording per reason.

An artifact computes per-atom energies (eV) from positions and types on the edges it is
given, and LAMMPS sums them over the atoms of each rank: whatever a trained model adds
once per structure, on its own neighbour list or from inputs other than positions and types
cannot be split that way. Each function raises the :class:`~egraff_lmp.errors.EgraffError`
for ``path``.
"""

from __future__ import annotations

from ...errors import located

_SPLIT = "not a per-atom energy, and not splittable over LAMMPS ranks"


def global_energy_mean(path, mean_ev: float, where: str, hint: str = ""):
    """A mean energy (eV) added once per structure, after the sum over atoms (TorchMD-Net's
    ``standardize``, OCP's ``normalizers.target.mean``, an intensive ``AddOffsets``)."""
    raise located(path, f"the model adds a global energy mean ({mean_ev:.6g} eV, {where}) "
                        f"after the sum over atoms: {_SPLIT}" + (f"; {hint}" if hint else ""))


def not_a_sum(path, what: str):
    """An energy that is not the sum of the per-atom energies (a mean over atoms)."""
    raise located(path, f"{what}: the energy is not a sum over atoms, so it cannot be split "
                        "over atoms or LAMMPS ranks")


def charge_spin(path, model: str, what: str = "charge/spin inputs"):
    """Inputs LAMMPS does not pass (total charge, spin)."""
    raise located(path, f"{model} with {what}: not deployable (LAMMPS passes positions and "
                        "types only)")


def no_cutoff(path, key: str, where: str, note: str = ""):
    """No cutoff to size neighbour lists with (``note``: why no default is assumed)."""
    raise located(path, f"no {key} in {where}: cannot size neighbour lists"
                        + (f" ({note})" if note else ""))


def not_reproduced(path, part: str, hint: str = "deploy a model trained without it"):
    """A part of the model the artifact leaves out (a prior, a post-processor)."""
    raise located(path, f"{part} is not reproduced in the artifact: {hint}")
