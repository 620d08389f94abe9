"""pair_style egraff runs a compiled package (*.egraff.pt2, read by its content) as it runs
the TorchScript artifact: images, ghosts and two ranks give the artifact's forces, energy
and pressure; mode staged is refused in one line."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ROOT

from egraff_lmp.cli import main
from egraff_lmp.io import read_trajectory
from egraff_lmp.io.lammps_log import read_thermo

GETE_IN = ROOT / "inputs" / "gete.in"
ALLEGRO = ROOT / "inputs/models/gete-allegro.egraff.pt"


def _run(tmp_path, name, model, *extra):
    rundir = tmp_path / name
    code = main(["run", str(GETE_IN), "-o", str(rundir), "--var", "steps=5", "--var",
                 f"model={model}", "--engine", "plugin", "--no-progress", *extra])
    return code, rundir


def _state(rundir):
    frames = read_trajectory(rundir / "dump.lammpstrj")
    thermo = read_thermo(rundir / "log.lammps")[-1]
    return [f.forces for f in frames.frames()], thermo["PotEng"], thermo["Press"]


@pytest.fixture(scope="module")
def torchscript_run(plugin, tmp_path_factory):
    code, rundir = _run(tmp_path_factory.mktemp("ts"), "ts", ALLEGRO)
    assert code == 0
    return _state(rundir)


@pytest.mark.parametrize("extra", [(), ("--pair-mode", "ghosts"), ("--np", "2")],
                         ids=["images", "ghosts", "2 ranks"])
def test_the_compiled_package_gives_the_artifacts_forces_energy_and_pressure(
        compiled_allegro, torchscript_run, tmp_path, capsys, extra):
    code, rundir = _run(tmp_path, "pkg", compiled_allegro, *extra)
    assert code == 0, capsys.readouterr().err
    forces, pe, press = _state(rundir)
    ref_forces, ref_pe, ref_press = torchscript_run
    for f, r in zip(forces, ref_forces):  # every step of the trajectory
        assert np.abs(f - r).max() < 1e-4
    np.testing.assert_allclose(pe, ref_pe, rtol=0, atol=1e-4)
    np.testing.assert_allclose(press, ref_press, rtol=1e-5)


def test_mode_staged_with_a_compiled_package_is_one_error(compiled_allegro, tmp_path,
                                                          capsys):
    code, _ = _run(tmp_path, "staged", compiled_allegro, "--pair-mode", "staged")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "is a compiled package, which has no stages" in err[0]
