"""Evaluate a deployed model on the frames of a trajectory (static evaluation).

``predict(artifact or calculator, traj)`` yields, frame by frame, the model's energy (eV)
and forces (eV/Å) on the trajectory's own positions; ``write_npz`` stores them as a NequIP-style npz
that ``egraff-lmp compare OUT.npz --ref TRAJ`` turns into energy/force MAEs ("static").
"""

from __future__ import annotations

import os

import numpy as np

from .calculator import DeployedCalculator
from .files import atomic_path


def predict(model, traj, start=None, stop=None, step=None):
    """``model``: an artifact path, or any ASE calculator."""
    calc = DeployedCalculator(model) if isinstance(model, (str, os.PathLike)) else model
    for frame in traj.frames(start, stop, step):
        atoms = frame.to_atoms(traj.symbols)
        atoms.calc = calc
        yield frame, atoms.get_potential_energy(), atoms.get_forces()


def write_npz(path, traj, results) -> int:
    """Write (frame, energy, forces) results as a NequIP npz, atomically; returns frames."""
    from ase.data import atomic_numbers

    pos, cells, energy, forces = [], [], [], []
    for frame, e, f in results:
        pos.append(frame.positions)
        cells.append(frame.cell if frame.cell is not None else np.zeros((3, 3)))
        energy.append(e)
        forces.append(f)
    periodic = traj[0].cell is not None
    arrays = {"pos": np.array(pos), "energy": np.array(energy).reshape(-1, 1),
              "forces": np.array(forces),
              "atomic_numbers": np.array([atomic_numbers[s] for s in traj.symbols])}
    if periodic:
        arrays.update(cell=np.array(cells), pbc=np.ones(3, dtype=bool))
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    return len(pos)
