"""``DeployedCalculator``: an ASE calculator on a deployed egraff-lmp artifact.

Energy (eV), per-atom energies, forces (eV/Å), stress (eV/Å³, ASE's sign and Voigt
order) and, when asked for, per-atom stresses (``atoms.get_stresses()``: σ_i = −W_i/V with
W_i the atom's share of the edges' virials, so that they sum to the stress; artifacts of
calling convention 2) for periodic, non-periodic and triclinic systems. Neighbours come from
vesin (a full list within the model's r_max with periodic shifts), so no ghost atoms are
built: the artifact sees N local atoms and the shifts. It is the Python engine of egraff-lmp (the
LAMMPS callback route and the ASE fallback use it) and a plain ASE citizen (``device="cuda"``
runs the model on a GPU; inputs and results stay numpy on the host)::

    atoms.calc = DeployedCalculator("inputs/models/gete-mace.egraff.pt")
    atoms.get_forces()

A multi-head artifact (MACE trained with heads) evaluates the head named by ``head=``
(default: its default head, or its only one; else a one-line error naming its heads), as
``pair_style egraff ARTIFACT head NAME`` does.
"""

from __future__ import annotations

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes

from .errors import EgraffError


class DeployedCalculator(Calculator):
    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress",
                              "stresses"]

    def __init__(self, artifact, n_threads: int | None = None, device: str = "cpu",
                 head: str | None = None, **kwargs):
        from .deploy.artifact import Artifact, load

        super().__init__(**kwargs)
        self.artifact = artifact if isinstance(artifact, Artifact) else load(artifact, device)
        #: the head evaluated (None: a model without heads)
        self.head = self.artifact.select_head(head)
        self._index = {s: k for k, s in enumerate(self.artifact.type_names)}
        self._n_threads = n_threads
        self._nl = None

    def _types(self, atoms) -> torch.Tensor:
        symbols = atoms.get_chemical_symbols()
        missing = sorted(set(symbols) - set(self._index))
        if missing:
            raise EgraffError(f"{self.artifact.path}: the model has no species "
                              f"{', '.join(missing)} (it has {', '.join(self._index)})")
        return torch.tensor([self._index[s] for s in symbols], dtype=torch.long)

    def neighbours(self, atoms):
        """Full neighbour list: edge index [2, E] and Cartesian shifts [E, 3] (Å)."""
        from vesin import NeighborList

        if self._nl is None:
            self._nl = NeighborList(cutoff=self.artifact.r_max, full_list=True)
        return neighbour_list(atoms, self._nl)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        if self._n_threads:
            torch.set_num_threads(self._n_threads)
        types = self._types(atoms)
        if self.head is not None and self.artifact.head != self.head:
            self.artifact.select_head(self.head)  # an artifact shared with another head
        edge_index, shift = self.neighbours(atoms)
        want_stress = bool(all(atoms.pbc))  # the virial shares the forces' backward pass
        pos = torch.from_numpy(np.ascontiguousarray(atoms.positions, dtype=np.float64))
        if "stresses" in properties:
            if not want_stress:
                raise EgraffError("stresses need a periodic cell in all three directions")
            energies, forces, grad = self.artifact.edges(pos, types, edge_index, shift,
                                                         len(atoms))
            w_atoms = atom_virials(pos, edge_index, shift, grad, len(atoms),
                                   self.artifact.strictly_local)
            virial = w_atoms.sum(0)
            sig = -w_atoms.numpy() / atoms.get_volume()
            self.results["stresses"] = np.stack(
                [sig[:, 0, 0], sig[:, 1, 1], sig[:, 2, 2], sig[:, 1, 2], sig[:, 0, 2],
                 sig[:, 0, 1]], axis=1)
        else:
            energies, forces, virial = self.artifact(pos, types, edge_index, shift,
                                                     len(atoms), want_stress)
        energies = energies.numpy()
        forces = forces.numpy()
        if not (np.all(np.isfinite(energies)) and np.all(np.isfinite(forces))):
            raise EgraffError(f"{self.artifact.path}: the model returned NaN/inf energies "
                              "or forces for this configuration")
        self.results["energies"] = energies
        self.results["energy"] = self.results["free_energy"] = float(energies.sum())
        self.results["forces"] = forces
        if want_stress:
            w = virial.numpy()
            sigma = -w / atoms.get_volume()
            self.results["stress"] = np.array([sigma[0, 0], sigma[1, 1], sigma[2, 2],
                                               sigma[1, 2], sigma[0, 2], sigma[0, 1]])
        elif "stress" in properties:
            raise EgraffError("stress needs a periodic cell in all three directions")


def atom_virials(pos, edge_index, shift, edge_grad, n_atoms: int,
                 strictly_local: bool) -> torch.Tensor:
    """Per-atom virials W_i (f64 [N, 3, 3], eV; [a, b] = −Σ r_a g_b) from each edge's
    w_e = −r_e ⊗ g_e (r_e = pos[j] − pos[i] + shift, Å, i the centre; g_e = ∂E/∂r_e, eV/Å),
    as pair_style egraff tallies them: a strictly local model's g_e is the derivative of the
    centre's own energy, so w_e goes whole to the neighbour j (Fan et al. 2015, the heat
    flux of a many-body potential); a message-passing model's half to each atom (one
    partition of the virial among the atoms, not a unique one). Both sum to the virial."""
    from .deploy.model import edge_virials

    i, j = edge_index[0], edge_index[1]
    w = edge_virials(pos[j] - pos[i] + shift, edge_grad)
    out = torch.zeros((n_atoms, 3, 3), dtype=torch.float64)
    if strictly_local:
        return out.index_add_(0, j, w)
    return out.index_add_(0, i, 0.5 * w).index_add_(0, j, 0.5 * w)


def neighbour_list(atoms, nl) -> tuple[torch.Tensor, torch.Tensor]:
    """Edge index [2, E] and Cartesian shifts [E, 3] (Å) of ``atoms`` from vesin's full
    neighbour list ``nl`` (periodic where ``atoms`` is, in every direction it is)."""
    pbc = [bool(p) for p in atoms.pbc]
    box = np.asarray(atoms.cell[:], dtype=np.float64) if any(pbc) else np.zeros((3, 3))
    i, j, s = nl.compute(np.asarray(atoms.positions, dtype=np.float64), box,
                         pbc if any(pbc) else False, quantities="ijS")
    edge_index = torch.from_numpy(np.stack([i, j]).astype(np.int64))
    shift = torch.from_numpy(np.asarray(s, dtype=np.float64) @ box)
    return edge_index, shift


def calculator_from_factory(spec: str):
    """``module:factory`` → the ASE calculator ``factory()`` returns."""
    import importlib

    if ":" not in spec:
        raise EgraffError(f"--calculator {spec}: expected module:factory")
    mod, func = spec.split(":", 1)
    try:
        factory = getattr(importlib.import_module(mod), func)
    except (ImportError, AttributeError) as exc:
        raise EgraffError(f"--calculator {spec}: {exc}") from None
    return factory()


def resolve_calculator(artifact=None, calculator: str | None = None, device: str = "cpu",
                       head: str | None = None):
    """The ASE calculator of a run or an evaluation: ``calculator`` (``module:factory``, any
    ASE calculator) when given, else a :class:`DeployedCalculator` on ``artifact`` (with
    head ``head``)."""
    if calculator:
        if head is not None:
            raise EgraffError(f"head {head} with --calculator: the head is the deployed "
                              "artifact's; give it to the calculator's factory instead")
        return calculator_from_factory(calculator)
    if artifact is None:
        raise EgraffError("no artifact and no --calculator: nothing gives the forces")
    return DeployedCalculator(artifact, device=device or "cpu", head=head)
