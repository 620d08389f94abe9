"""Float32 models lose no precision with the size of the box: the edge vectors are formed
in float64 before the model's cast (DeployedModel), so the same cell far from the origin
gives the same forces, in ASE and in LAMMPS (images, ghosts and staged modes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from conftest import GETE_TEST, ROOT
from test_plugin import read_dump_forces, run_lmp

from egraff_lmp.calculator import DeployedCalculator
from egraff_lmp.deploy import artifact as _artifact
from egraff_lmp.deploy.model import DeployedModel
from egraff_lmp.io import read_trajectory
from egraff_lmp.io.lammps_write import write_lammps_data

SHIPPED = ROOT / "inputs" / "models"


def current_artifact(name: str, out) -> str:
    """The shipped float32 network ``name`` in this checkout's calling convention: Allegro's
    scripted network (its trained weights as they are) wrapped anew and saved with its
    metadata; NequIP (staged, whose scripted stages cannot be wrapped again) deployed anew
    from its shipped source."""
    if name == "nequip":
        from egraff_lmp.deploy import deploy

        return str(deploy(SHIPPED / "gete-nequip.nequip.zip", out, data=GETE_TEST))
    old = _artifact.load(SHIPPED / f"gete-{name}.egraff.pt")
    model = DeployedModel(old.module.energy_model, getattr(torch, old.metadata["dtype"]))
    return str(_artifact.save(torch.jit.script(model), old.metadata, out))


def test_float32_forces_are_the_same_for_a_cell_translated_by_ten_lattice_vectors(tmp_path):
    art = current_artifact("allegro", tmp_path / "allegro.egraff.pt")
    ref = read_trajectory(GETE_TEST)
    frame = ref[3]

    def forces(offset):
        atoms = Atoms(ref.symbols, positions=frame.positions + offset, cell=frame.cell,
                      pbc=True)
        atoms.calc = DeployedCalculator(art)
        return atoms.get_forces()

    # 191 Å from the origin: cast first, positions are off by up to 7.6e-6 Å and the
    # forces by 1.6e-4 eV/Å; the same edge vectors in float64 give the same forces
    far = forces(10 * frame.cell[0] + 10 * frame.cell[1] + 10 * frame.cell[2])
    np.testing.assert_array_equal(far, forces(0.0))


GETE_FAR = """
units metal
atom_style atomic
atom_modify map array
read_data gete.data
change_box all x delta ${off} ${off} y delta ${off} ${off} z delta ${off} ${off} remap units box
mass 1 72.63
mass 2 127.6
plugin load ${plugin}
pair_style egraff ${artifact} mode ${mode}
pair_coeff * * Ge Te
dump d all custom 1 dump.${mode}.${off} id fx fy fz
dump_modify d sort id format float %20.15g
run 0
"""


@pytest.mark.parametrize("name,mode", [("allegro", "images"), ("allegro", "ghosts"),
                                       ("nequip", "staged")])
def test_lammps_float32_forces_do_not_grow_with_the_coordinates(plugin, tmp_path, name,
                                                                 mode):
    art = current_artifact(name, tmp_path / f"{name}.egraff.pt")
    ref = read_trajectory(GETE_TEST)
    write_lammps_data(tmp_path / "gete.data", ref[3], ref.symbols, species=["Ge", "Te"])
    forces = {}
    for off in (0, 181):  # the same periodic cell, its box from 181 to 200.1 Å
        run_lmp(tmp_path, GETE_FAR, 1, name=f"in.{off}", plugin=plugin, artifact=art,
                mode=mode, off=off)
        forces[off] = read_dump_forces(tmp_path / f"dump.{mode}.{off}")
    assert np.abs(forces[181] - forces[0]).max() <= 1e-6
