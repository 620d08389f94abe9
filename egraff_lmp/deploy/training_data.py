"""Training files in the formats the families' trainers read, from any trajectory.

``write_extxyz(traj, path, frames)`` writes frames with ``REF_energy``/``REF_forces`` (the
keys ``mace_run_train --energy_key/--forces_key`` are pointed at; names that do not clash
with ASE's calculator results). Energies eV, forces eV/Å, positions Å.
"""

from __future__ import annotations

import ase.io


def frames_as_atoms(traj, indices):
    for i in indices:
        f = traj[i]
        a = f.to_atoms(traj.symbols)
        if f.energy is not None:
            a.info["REF_energy"] = f.energy
        if f.forces is not None:
            a.arrays["REF_forces"] = f.forces
        yield a


def write_extxyz(traj, path, indices):
    ase.io.write(path, list(frames_as_atoms(traj, indices)), format="extxyz")
    return path


def write_nequip_npz(traj, path, indices):
    """A NequIP npz for ``nequip.data.dataset.NPZDataset``: every key per frame (its reader
    indexes all keys but ``atomic_numbers`` by frame, so one shared cell is not enough)."""
    import numpy as np
    from ase.data import atomic_numbers

    frames = [traj[i] for i in indices]
    arrays = {"pos": np.stack([f.positions for f in frames]),
              "atomic_numbers": np.array([atomic_numbers[s] for s in traj.symbols]),
              "energy": np.array([f.energy for f in frames]),
              "forces": np.stack([f.forces for f in frames]),
              "cell": np.stack([f.cell for f in frames]),
              "pbc": np.ones((len(frames), 3), dtype=bool)}
    np.savez(path, **arrays)
    return path
