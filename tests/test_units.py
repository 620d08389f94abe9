"""Any LAMMPS unit style: pair_style egraff converts with LAMMPS' own constants, egraff-lmp
reads back what a run in that style wrote."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_plugin import run_lmp
from test_run import _input, _run

from egraff_lmp.errors import EgraffError
from egraff_lmp.io import read_trajectory
from egraff_lmp.io.lammps_log import read_thermo
from egraff_lmp.lammps.env import start_lammps
from egraff_lmp.units import STYLES, unit_style


@pytest.mark.parametrize("name", sorted(STYLES))
def test_the_unit_table_is_lammps_own_constants(name):
    lmp = start_lammps(["-nocite", "-screen", "none", "-log", "none"])
    try:
        lmp.command(f"units {name}")
        for key in ("boltz", "angstrom", "femtosecond"):
            assert getattr(STYLES[name], key) == lmp.extract_global(key), key
    finally:
        lmp.close()


def test_lj_and_unknown_styles_are_refused_in_one_line():
    with pytest.raises(EgraffError, match="units lj has no physical units"):
        unit_style("lj")
    with pytest.raises(EgraffError, match="unknown LAMMPS unit style 'furlong'"):
        unit_style("furlong")
    assert unit_style(None).name == "metal"
    assert STYLES["real"].ev == pytest.approx(23.0605, rel=1e-5)  # kcal/mol per eV


def test_pair_style_egraff_refuses_units_lj_in_one_line(plugin, artifacts, tmp_path):
    text = ("units lj\natom_style atomic\nregion b block 0 6 0 6 0 6\ncreate_box 1 b\n"
            "create_atoms 1 random 8 5 NULL\nmass 1 1.0\nplugin load ${plugin}\n"
            "pair_style egraff ${artifact}\npair_coeff * * Ge\nrun 0\n")
    with pytest.raises(AssertionError) as err:
        run_lmp(tmp_path, text, plugin=plugin, artifact=artifacts["allegro"])
    assert "pair_style egraff: units lj has no physical units" in str(err.value)


# inputs/gete.in in units real: the same lengths (Å) and masses (g/mol); time in fs, so the
# timestep and the thermostat's damping are 1000x, the data file's velocities (Å/ps) /1000
REAL = [("units           metal", "units           real"),
        ("read_data       gete/gete_start.data",
         "read_data       gete/gete_start.data\n"
         "variable        vx atom vx/1000\nvariable        vy atom vy/1000\n"
         "variable        vz atom vz/1000\nvelocity        all set v_vx v_vy v_vz"),
        ("timestep        0.00119", "timestep        1.19"),
        ("nvt temp ${temperature} ${temperature} 0.119", "nvt temp ${temperature} "
                                                          "${temperature} 119")]


@pytest.mark.parametrize("kind, ranks", [("allegro", 1), ("mace", 1), ("mace", 2)])
def test_a_run_in_units_real_is_the_run_in_units_metal(kind, ranks, artifacts, tmp_path,
                                                        capsys):
    """The same GeTe4 NVT run, 20 steps, in metal and real: after conversion to Å, eV/Å
    and eV the trajectories agree within 1e-6; run.json, the energy drift and the comparison
    with the reference are in the model's units either way."""
    runs = {}
    for style, edits in (("metal", []), ("real", REAL)):
        rundir = tmp_path / style
        code, _, err = _run(capsys, "run", _input(tmp_path, edits, f"{style}.in"), "-o",
                            rundir, "--np", ranks, "--var", "steps=20", "--var",
                            f"model={artifacts[kind]}", "--no-progress")
        assert code == 0, err
        rec = json.loads((rundir / "run.json").read_text())
        assert rec["units"] == style and rec["timestep_ps"] == pytest.approx(0.00119)
        runs[style] = (read_trajectory(rundir / "dump.lammpstrj", log=rundir / "log.lammps",
                                       units=style), rec,
                       json.loads((rundir / "metrics.json").read_text()))
    (metal, rm, mm), (real, rr, mr) = runs["metal"], runs["real"]
    assert metal.n_frames == real.n_frames == 21
    for a, b in zip(metal, real):
        np.testing.assert_allclose(b.positions, a.positions, atol=1e-6)
        np.testing.assert_allclose(b.forces, a.forces, atol=1e-6)
        assert b.energy == pytest.approx(a.energy, abs=1e-6 * max(1.0, abs(a.energy)))
    # the model's energy in the log: kcal/mol in real, 23.06 times the eV of metal
    pe_m = read_thermo(tmp_path / "metal" / "log.lammps")[-1]["PotEng"][-1]
    pe_r = read_thermo(tmp_path / "real" / "log.lammps")[-1]["PotEng"][-1]
    assert pe_r == pytest.approx(pe_m * STYLES["real"].ev, rel=1e-7)
    assert rr["energy_drift"]["max_abs_dev_ev"] == pytest.approx(
        rm["energy_drift"]["max_abs_dev_ev"], rel=1e-3, abs=1e-6)
    assert mr["fv"] == pytest.approx(mm["fv"], rel=1e-4)


def test_the_worked_molecule_in_units_real_runs(tmp_path, capsys):
    """inputs/acac-real.in as shipped: acetylacetone in vacuum, units real, NVT 300 K."""
    from conftest import ROOT

    rundir = tmp_path / "acac"
    code, _, err = _run(capsys, "run", ROOT / "inputs" / "acac-real.in", "-o", rundir,
                        "--var", "steps=100", "--no-progress")
    assert code == 0, err
    rec = json.loads((rundir / "run.json").read_text())
    assert rec["units"] == "real" and rec["timestep_ps"] == pytest.approx(0.0005)
    assert rec["steps_done"] == 100 and rec["status"] == "ok"
    traj = read_trajectory(rundir / "dump.lammpstrj", log=rundir / "log.lammps",
                           units="real")
    assert traj.n_frames == 11 and traj.symbols[:3] == ["C", "C", "C"]
    fmax = max(np.abs(traj[k].forces).max() for k in range(traj.n_frames))
    assert 0.5 < fmax < 20  # eV/Å: C-H and C=O forces at 300 K, not kcal/mol/Å
    assert "units real: 1 A = 1 distance units, 1 eV = 23.06055" in (
        rundir / "log.lammps").read_text()
