"""pair_style egraff runs a compiled package (*.egraff.pt2, read by its content) as it runs
the TorchScript artifact: images, ghosts and two ranks give the artifact's forces, energy
and pressure; a package with compiled stages runs mode staged (1 and 2 ranks, chunks) as
the TorchScript artifact's one call; a package without stages is refused mode staged in
one line."""

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


def test_mode_staged_with_a_strictly_local_package_is_one_error(compiled_allegro, tmp_path,
                                                                capsys):
    code, _ = _run(tmp_path, "staged", compiled_allegro, "--pair-mode", "staged")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "is strictly local" in err[0]


def test_mode_staged_with_a_package_compiled_without_stages_is_one_error(compiled_mace,
                                                                          tmp_path, capsys):
    from egraff_lmp.deploy.compiled import _write_with_metadata, read_metadata

    old = tmp_path / "old.egraff.pt2"  # as packages before compiled stages were
    _write_with_metadata(compiled_mace, {**read_metadata(compiled_mace), "stages": None}, old)
    code, _ = _run(tmp_path, "staged", old, "--pair-mode", "staged")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "has no stages" in err[0] \
        and "compile it again" in err[0]


# --- the compiled stages (a tiny float64 MACE: mode staged, chunks, several ranks) -----------

#: the MACE-family model whose compiled stages these tests run: the BOTNet-style MACE
#: (correlation 1), the same stage code as MACE's, compiled in 208 s instead of 293 s
STAGED = "botnet"


@pytest.fixture(scope="module")
def compiled_mace(models, artifacts, tmp_path_factory):
    """The tiny BOTNet-style MACE's artifact compiled with its stages, by the command."""
    out = tmp_path_factory.mktemp("compiled-mace") / f"{STAGED}.egraff.pt2"
    assert main(["compile", str(artifacts[STAGED]), "--source", str(models[STAGED]), "-o",
                 str(out), "--data", str(ROOT / "inputs/gete/gete_test.npz")]) == 0
    return out


def test_the_compiled_stages_emulated_on_two_domains_equal_the_one_call(compiled_mace,
                                                                         artifacts, gete):
    from test_staged import _cells

    from egraff_lmp.calculator import DeployedCalculator
    from egraff_lmp.deploy.compiled import load, read_metadata
    from egraff_lmp.deploy.stages import deviation, emulate

    meta = read_metadata(compiled_mace)
    assert meta["stages"]["layers"] == 2
    assert meta["validation"]["compiled_parity"]["staging"]["forces"] < 1e-6
    package = load(compiled_mace)
    for name, atoms in _cells(gete).items():
        dev = deviation(emulate(package, atoms, (2, 1, 1)),
                        DeployedCalculator(artifacts[STAGED]), atoms)
        assert max(dev.values()) < 1e-6, (name, dev)


@pytest.mark.parametrize("ranks,mode,extra", [(1, "staged", "chunk 512"),
                                              (2, "staged", "chunk 512"),
                                              (2, "auto", "chunk 40")],
                         ids=["1 rank", "2 ranks", "2 ranks in chunks"])
def test_plugin_staged_with_the_compiled_stages_equals_the_ase_engine(
        compiled_mace, artifacts, plugin, gete, tmp_path, ranks, mode, extra):
    """Step 0 of mode staged running the package's layer programs: energy, per-atom
    energies, forces and pressure equal the one-call evaluation of the TorchScript artifact
    in ASE within 1e-6 (float64), on the orthogonal, triclinic and small cells."""
    from test_staged import EV_PER_A3_IN_BAR, _cells, _run_cell

    from egraff_lmp.calculator import DeployedCalculator

    calc = DeployedCalculator(artifacts[STAGED])
    for name, atoms in _cells(gete).items():
        thermo, ei, f, log = _run_cell(tmp_path, plugin, compiled_mace, atoms, ranks,
                                       mode=mode, extra=extra)
        assert "mode staged" in log.read_text()
        a = atoms.copy()
        a.calc = calc
        assert thermo["PotEng"] == pytest.approx(a.get_potential_energy(), abs=1e-6), name
        np.testing.assert_allclose(ei, a.get_potential_energies(), atol=1e-6, err_msg=name)
        np.testing.assert_allclose(f, a.get_forces(), atol=1e-6, err_msg=name)
        assert thermo["Pxy"] == pytest.approx(-a.get_stress()[5] * EV_PER_A3_IN_BAR,
                                              rel=1e-6, abs=1e-3), name
