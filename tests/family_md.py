"""What the tests of every deployed family share: the CLI called in-process, the 2×1×1 GeTe
supercell, and 20 steps of LAMMPS with the plugin checked against the ASE engine at step 0."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from conftest import GETE_TEST
from test_plugin import read_dump_forces, run_lmp

from egraff_lmp.calculator import DeployedCalculator
from egraff_lmp.cli import main
from egraff_lmp.io import read_trajectory
from egraff_lmp.io.lammps_log import read_thermo
from egraff_lmp.io.lammps_write import write_lammps_data
from egraff_lmp.trajectory import Frame


def cli(capsys, *argv) -> tuple[int, str]:
    """egraff-lmp in-process: (exit code, stderr)."""
    code = main([str(a) for a in argv])
    _, err = capsys.readouterr()
    return code, err


def supercell() -> Atoms:
    """Two GeTe cells side by side: 38.2 Å along x, so each of 2 ranks holds 19.1 Å, more
    than a tiny test model's 12 Å reach and less than twice it."""
    ref = read_trajectory(GETE_TEST)
    frame = ref[7]
    return Atoms(ref.symbols, positions=frame.positions, cell=frame.cell, pbc=True) * (2, 1, 1)


def assert_equal_on_a_cell_and_a_molecule(own, ours, tol=1e-6) -> None:
    """The family's own calculator ``own`` and the artifact's ``ours`` agree (energy per
    atom and forces within ``tol``) on a periodic GeTe frame and on a 15-atom cluster cut
    from it, a molecule where the family's own code knows no cell."""
    ref = read_trajectory(GETE_TEST)
    frame = ref[5]
    periodic = Atoms(ref.symbols, positions=frame.positions, cell=frame.cell, pbc=True)
    d = periodic.get_distances(0, range(len(periodic)), mic=True, vector=True)
    near = np.argsort(np.linalg.norm(d, axis=1))[:15]
    cluster = Atoms([ref.symbols[i] for i in near], positions=d[near])
    for atoms in (periodic, cluster):
        a, b = atoms.copy(), atoms.copy()
        a.calc, b.calc = own, ours
        assert abs(a.get_potential_energy() - b.get_potential_energy()) / len(a) < tol
        np.testing.assert_allclose(b.get_forces(), a.get_forces(), atol=tol)


MD_INPUT = """
units metal
atom_style atomic
atom_modify map array
read_data gete.data
mass 1 72.63
mass 2 127.6
plugin load ${plugin}
pair_style egraff ${artifact}
pair_coeff * * Ge Te
velocity all create 600 42 dist gaussian
fix 1 all nve
timestep 0.0005
thermo 20
thermo_style custom step pe ke etotal press
thermo_modify format float %20.15g
dump d all custom 20 dump.md id fx fy fz
dump_modify d sort id format float %20.15g
run 20
"""


def lammps_20_steps_equal_ase_at_step_0(plugin, artifact, tmp_path, ranks) -> None:
    """20 NVE steps of the supercell with pair_style egraff on ``ranks`` ranks: finite, and
    at step 0 its energy and forces equal DeployedCalculator's (1e-6)."""
    atoms = supercell()
    write_lammps_data(tmp_path / "gete.data",
                      Frame(index=0, positions=atoms.positions, cell=atoms.cell[:],
                            pbc=(True, True, True)),
                      list(atoms.get_chemical_symbols()))
    log = run_lmp(tmp_path, MD_INPUT, ranks, plugin=plugin, artifact=artifact)
    rows = read_thermo(log)[-1]
    assert rows["Step"] == [0, 20]
    atoms.calc = DeployedCalculator(artifact)
    assert rows["PotEng"][0] == pytest.approx(atoms.get_potential_energy(), abs=1e-6)
    first = (tmp_path / "dump.md").read_text().split("ITEM: TIMESTEP")[1]
    (tmp_path / "step0").write_text("ITEM: TIMESTEP" + first)
    np.testing.assert_allclose(read_dump_forces(tmp_path / "step0"), atoms.get_forces(),
                               atol=1e-6)
    assert np.isfinite(rows["TotEng"][1])
