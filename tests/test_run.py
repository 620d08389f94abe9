"""egraff-lmp run: real LAMMPS, deployed models, both engines, failures kept."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from conftest import ROOT
from lj_artifact import argon_input, lj_artifact

from egraff_lmp.cli import main
from egraff_lmp.io import read_trajectory
from egraff_lmp.io.lammps_log import read_thermo
from egraff_lmp.run import RunRecord

GETE_IN = ROOT / "inputs" / "gete.in"


def _input(tmp_path, text_replacements, name="test.in"):
    """A copy of inputs/gete.in in ``tmp_path`` whose paths into inputs/ (gete/...,
    models/...) are made absolute (nothing is written into the checkout, even by a test
    that is killed)."""
    text = GETE_IN.read_text()
    for old, new in text_replacements:
        assert old in text, old
        text = text.replace(old, new)
    text = re.sub(r"(?<![\w/.])(gete|models)/", lambda m: f"{ROOT / 'inputs' / m.group(1)}/",
                  text)
    path = tmp_path / name
    path.write_text(text)
    return path


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_run_gete_writes_the_run_directory_and_compares(artifacts, tmp_path, capsys):
    rundir = tmp_path / "run"
    code, out, err = _run(capsys, "run", GETE_IN, "-o", rundir, "--var", "steps=20",
                          "--var", f"model={artifacts['allegro']}", "--no-progress")
    assert code == 0, err
    rec = json.loads((rundir / "run.json").read_text())
    assert rec["engine"] == "plugin" and rec["status"] == "ok"
    assert rec["steps_done"] == 20 and rec["failed_at_step"] is None
    assert rec["ms_per_step"] > 0 and rec["versions"]["lammps"]
    dump = read_trajectory(rundir / "dump.lammpstrj", log=rundir / "log.lammps")
    assert dump.n_frames == 21 and dump.species == ["Ge", "Te"]
    assert dump[20].energy is not None and dump[20].step == 20
    metrics = json.loads((rundir / "metrics.json").read_text())
    assert metrics["n_frames_compared"] == 21 and metrics["fv"] is not None
    assert (rundir / "compare.png").exists()
    assert "FV (gm ± std)" in out


NVE = [("fix             nvt all nvt temp ${temperature} ${temperature} 0.119",
        "fix             nve all nve"),
       ("dump            traj all custom 1", "dump            traj all custom 5")]


@pytest.mark.parametrize("kind", ["mace", "nequip"])
def test_plugin_and_callback_engines_agree_on_an_nve_trajectory(kind, artifacts, tmp_path,
                                                               capsys):
    inp = _input(tmp_path, NVE)
    runs = {}
    for engine in ("plugin", "callback"):
        rundir = tmp_path / engine
        code, _, err = _run(capsys, "run", inp, "-o", rundir, "--engine", engine,
                            "--var", "steps=20", "--var", f"model={artifacts[kind]}",
                            "--no-progress")
        assert code == 0, err
        runs[engine] = read_trajectory(rundir / "dump.lammpstrj", log=rundir / "log.lammps")
    a, b = runs["plugin"], runs["callback"]
    assert a.n_frames == b.n_frames == 5
    e0a, e0b = a[0].energy, b[0].energy
    assert e0a == pytest.approx(e0b, abs=1e-6)
    np.testing.assert_allclose(a[0].forces, b[0].forces, atol=1e-5)  # dump: 8 digits
    for fa, fb in zip(a, b):
        np.testing.assert_allclose(fa.positions, fb.positions, atol=1e-5)
    ta = read_thermo(tmp_path / "plugin" / "log.lammps")[-1]
    tb = read_thermo(tmp_path / "callback" / "log.lammps")[-1]
    np.testing.assert_allclose(ta["Press"], tb["Press"], rtol=1e-6, atol=1e-3)


def test_two_ranks_give_the_one_rank_thermo(artifacts, tmp_path, capsys):
    inp = _input(tmp_path, NVE)
    logs = {}
    for np_ in (1, 2):
        rundir = tmp_path / f"np{np_}"
        code, _, err = _run(capsys, "run", inp, "-o", rundir, "--np", np_, "--var",
                            "steps=10", "--var", f"model={artifacts['allegro']}",
                            "--no-progress")
        assert code == 0, err
        assert RunRecord.load(rundir).spec.np == np_
        logs[np_] = read_thermo(rundir / "log.lammps")[-1]
    for key in ("PotEng", "TotEng", "Press"):
        np.testing.assert_allclose(logs[2][key], logs[1][key], rtol=1e-9, atol=1e-6)


LJ_BLOWUP = """
variable model index {artifact}
units metal
atom_style atomic
lattice fcc {lattice}
region box block 0 3 0 3 0 3
create_box 1 box
create_atoms 1 box
mass 1 39.948
displace_atoms all random 0.2 0.2 0.2 777 units box
pair_style egraff ${{model}}
pair_coeff * * Ar
velocity all create 300 1 loop geom
timestep {dt}
fix 1 all nve
thermo 1
dump d all custom 2 ${{rundir}}/dump.lammpstrj id type x y z fx fy fz
run 200
"""


@pytest.mark.parametrize("lattice,dt,watch,reason", [
    (5.26, 0.001, ["--max-force", "0.05"], "largest force"),  # the watch's limits
    (5.26, 0.001, ["--max-temp", "50"], "temperature"),
    (3.2, 0.01, [], "Lost atoms"),  # a real blow-up: LAMMPS' own error, caught
])
def test_an_unstable_run_is_stopped_and_its_data_kept(tmp_path, capsys, lattice, dt, watch,
                                                      reason):
    art = lj_artifact(tmp_path, rc=5.0)
    inp = tmp_path / "blowup.in"
    inp.write_text(LJ_BLOWUP.format(artifact=art, dt=dt, lattice=lattice))
    rundir = tmp_path / "run"
    code, _, err = _run(capsys, "run", inp, "-o", rundir, "--no-progress", *watch)
    lines = err.strip().splitlines()
    errors = [x for x in lines if not x.startswith("egraff-lmp: warning:")]
    assert code == 2 and len(errors) == 1, err
    # 10 fs is above 1 fs × sqrt(39.95) for argon: warned before the blow-up
    assert (len(lines) == 2 and "timestep 10 fs" in lines[0]) if dt > 0.005 else lines == errors
    assert "run stopped at step" in err and "kept in" in err
    rec = json.loads((rundir / "run.json").read_text())
    assert rec["status"] == "failed" and 0 < rec["failed_at_step"] <= 10
    assert reason in rec["failure"]
    dump = read_trajectory(rundir / "dump.lammpstrj", types=["Ar"])
    assert dump.n_frames >= 1  # what was written before the stop is all there


def test_bad_inputs_of_run_give_one_line_and_exit_2(artifacts, tmp_path, capsys):
    cases = []
    typo = _input(tmp_path, [("timestep        0.00119", "timestap        0.00119")], "typo.in")
    cases.append(([typo], "LAMMPS error: Unknown command"))
    cases.append(([GETE_IN, "--var", "model=/nonexistent.egraff.pt"],
                  "cannot load artifact /nonexistent.egraff.pt"))
    species = _input(tmp_path, [("pair_coeff      * * Ge Te", "pair_coeff      * * Ge Se")],
                     "species.in")
    cases.append(([species, "--var", f"model={artifacts['allegro']}"],
                  "species Se of type 2 is not in the model"))
    cases.append(([tmp_path / "missing.in"], "no such LAMMPS input file"))
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "run.json").write_text("{}")
    cases.append(([GETE_IN, "-o", existing], "already holds a run"))
    for k, (argv, message) in enumerate(cases):
        rundir = tmp_path / f"bad{k}"
        extra = [] if "-o" in map(str, argv) else ["-o", rundir]
        code, _, err = _run(capsys, "run", *argv, *extra, "--var", "steps=5",
                            "--no-progress")
        assert code == 2, (argv, err)
        assert err.count("\n") == 1 and message in err, (argv, err)
    shutil.rmtree(tmp_path / "bad0", ignore_errors=True)


def test_no_compiler_is_one_line_for_plugin_and_a_fallback_for_auto(artifacts, tmp_path,
                                                                    capsys, monkeypatch):
    monkeypatch.setenv("EGRAFF_LMP_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    code, _, err = _run(capsys, "run", GETE_IN, "-o", tmp_path / "p", "--engine", "plugin",
                        "--var", "steps=5", "--var", f"model={artifacts['allegro']}",
                        "--no-progress")
    assert code == 2 and err.count("\n") == 1 and "no C++ compiler" in err
    code, _, err = _run(capsys, "run", GETE_IN, "-o", tmp_path / "a", "--var", "steps=5",
                        "--var", f"model={artifacts['allegro']}", "--no-progress")
    assert code == 0, err
    rec = json.loads((tmp_path / "a" / "run.json").read_text())
    assert rec["engine"] == "callback" and "no C++ compiler" in rec["engine_reason"]


def test_large_cell_structure_is_compared_with_the_small_reference(tmp_path, capsys):
    rundir = tmp_path / "large"
    code, _, err = _run(capsys, "run", ROOT / "inputs" / "gete-large.in", "-o", rundir,
                        "--var", "steps=10", "--no-progress")
    assert code == 0, err
    metrics = json.loads((rundir / "metrics.json").read_text())
    assert metrics["n_atoms"] == 5400 and metrics["n_atoms_ref"] == 200
    assert metrics["ev"] is None and "atom counts differ" in metrics["notes"][0]
    assert metrics["wf_percent"] < 10  # a 10-step liquid from the CPMD frame keeps its structure


def test_nve_energy_drift_of_the_shipped_model_is_reported_and_bounded(tmp_path, capsys):
    rundir = tmp_path / "nve"
    code, _, err = _run(capsys, "run", ROOT / "inputs" / "gete-nve.in", "-o", rundir,
                        "--no-progress")
    assert code == 0, err
    rec = json.loads((rundir / "run.json").read_text())
    drift = rec["energy_drift"]
    assert rec["steps_done"] == 1000 and drift["span_ps"] == pytest.approx(1.0)
    assert drift["thermo_points"] == 101
    assert abs(drift["mev_per_atom_per_ps"]) < 1.0
    assert drift["max_abs_dev_ev"] / 200 < 1e-3


def test_callback_engine_runs_any_ase_calculator(tmp_path, capsys, monkeypatch):
    # ASE's LennardJones through fix external equals LAMMPS' own lj/cut
    monkeypatch.syspath_prepend(str(ROOT / "tests"))
    ours = tmp_path / "cb.in"
    ours.write_text(argon_input("pair_style egraff none\npair_coeff * * Ar"))
    ref = tmp_path / "lj.in"
    ref.write_text(argon_input("pair_style lj/cut 8.5\npair_coeff 1 1 0.0104 3.4\n"
                               "pair_modify shift yes"))  # ASE's LJ is shifted
    code, _, err = _run(capsys, "run", ours, "-o", tmp_path / "cb", "--calculator",
                        "calculators:argon_lj", "--no-progress")
    assert code == 0, err
    assert json.loads((tmp_path / "cb" / "run.json").read_text())["engine"] == "callback"
    code, _, err = _run(capsys, "run", ref, "-o", tmp_path / "lj", "--engine", "plugin",
                        "--no-progress")
    assert code == 0, err
    a = read_thermo(tmp_path / "cb" / "log.lammps")
    b = read_thermo(tmp_path / "lj" / "log.lammps")
    steps_a = {s: e for r in a for s, e in zip(r["Step"], r["TotEng"])}
    steps_b = {s: e for r in b for s, e in zip(r["Step"], r["TotEng"])}
    assert sorted(steps_a) == sorted(steps_b) == [0, 5, 10, 15, 20]
    for s in steps_a:
        assert steps_a[s] == pytest.approx(steps_b[s], abs=1e-9)
    pa = {s: p for r in a for s, p in zip(r["Step"], r["Press"])}
    pb = {s: p for r in b for s, p in zip(r["Step"], r["Press"])}
    for s in pa:
        assert pa[s] == pytest.approx(pb[s], rel=1e-8)


def test_resume_continues_from_the_last_restart_as_if_never_stopped(tmp_path, capsys):
    nve = ROOT / "inputs" / "gete-nve.in"
    full = tmp_path / "full"
    code, _, err = _run(capsys, "run", nve, "-o", full, "--var", "steps=60",
                        "--var", "dt=0.002", "--restart-every", "20", "--no-progress")
    assert code == 0, err
    assert sorted(p.name for p in full.glob("restart.*")) == ["restart.20", "restart.40",
                                                              "restart.60"]
    # the same run killed after step 40 (its run.json still says "running")
    cut = tmp_path / "cut"
    shutil.copytree(full, cut)
    (cut / "restart.60").unlink()
    rec = json.loads((cut / "run.json").read_text())
    rec.update(status="running", steps_done=40)
    (cut / "run.json").write_text(json.dumps(rec))
    code, out, err = _run(capsys, "run", "--resume", cut, "--no-progress")
    assert code == 0, err
    assert "resumed at step 40" in out
    rec = json.loads((cut / "run.json").read_text())
    assert rec["status"] == "ok" and rec["steps_done"] == 60 and rec["resumed_from_step"] == 40
    a = read_trajectory(full / "dump.lammpstrj")
    b = read_trajectory(cut / "dump.lammpstrj")
    assert [f.step for f in b] == [f.step for f in a] == [0, 50]
    np.testing.assert_allclose(b[1].positions, a[1].positions, atol=1e-5)
    np.testing.assert_allclose(b[1].forces, a[1].forces, atol=1e-4)
    ea = {s: e for r in read_thermo(full / "log.lammps") for s, e in zip(r["Step"],
                                                                         r["TotEng"])}
    eb = {s: e for r in read_thermo(cut / "log.lammps") for s, e in zip(r["Step"],
                                                                        r["TotEng"])}
    assert eb[60] == pytest.approx(ea[60], abs=1e-6)


def test_resume_of_a_directory_that_is_not_a_run_is_one_line(tmp_path, capsys):
    code, _, err = _run(capsys, "run", "--resume", tmp_path, "--no-progress")
    assert code == 2 and err.count("\n") == 1 and "is not a run directory" in err


NVE3 = """
units metal
atom_style atomic
read_data {data}
pair_style egraff {artifact}
pair_coeff * * Ge Te
timestep 0.001
fix 1 all nve
thermo_style custom step temp pe ke etotal press
thermo_modify format float %.15g
thermo 5
dump d all custom 5 ${{rundir}}/dump.lammpstrj id type element x y z fx fy fz
dump_modify d sort id format float %.10g
run 20
"""


@pytest.mark.parametrize("kind", ["mace", "allegro"])
def test_plugin_callback_and_ase_engines_agree(kind, artifacts, tmp_path, capsys):
    from egraff_lmp.io.lammps_write import write_lammps_data

    ref = read_trajectory(ROOT / "inputs" / "gete" / "gete_test.npz")
    # the reference's own velocities (central differences, 1.19 fs between frames), so that
    # every engine starts from the same state
    v = (ref[2].positions - ref[0].positions) / (2 * 1.19)
    write_lammps_data(tmp_path / "start.data", ref[1], ref.symbols, velocities=v)
    inp = tmp_path / "nve3.in"
    inp.write_text(NVE3.format(data=tmp_path / "start.data", artifact=artifacts[kind]))
    runs, thermo = {}, {}
    for engine in ("plugin", "callback", "ase"):
        rundir = tmp_path / engine
        code, _, err = _run(capsys, "run", inp, "-o", rundir, "--engine", engine,
                            "--no-progress")
        assert code == 0, (engine, err)
        runs[engine] = read_trajectory(rundir / "dump.lammpstrj", log=rundir / "log.lammps")
        thermo[engine] = {s: (e, p) for r in read_thermo(rundir / "log.lammps")
                          for s, e, p in zip(r["Step"], r["TotEng"], r["Press"])}
    a = runs["plugin"]
    assert a.n_frames == 5
    for engine in ("callback", "ase"):
        b = runs[engine]
        assert [f.step for f in b] == [f.step for f in a]
        assert b[0].energy == pytest.approx(a[0].energy, abs=1e-6), engine
        np.testing.assert_allclose(b[0].forces, a[0].forces, atol=1e-6, err_msg=engine)
        for fa, fb in zip(a, b):
            np.testing.assert_allclose(fb.positions, fa.positions, atol=1e-5, err_msg=engine)
        for s in (0, 20):
            assert thermo[engine][s][0] == pytest.approx(thermo["plugin"][s][0], abs=1e-5)
            assert thermo[engine][s][1] == pytest.approx(thermo["plugin"][s][1], rel=1e-5)


def test_ase_engine_names_what_it_cannot_run(tmp_path, capsys):
    inp = _input(tmp_path, [("timestep        0.00119", "timestep        0.00119\n"
                             "compute         msd all msd")], "msd.in")
    code, _, err = _run(capsys, "run", inp, "-o", tmp_path / "r", "--engine", "ase",
                        "--var", "steps=5", "--no-progress")
    assert code == 2 and err.count("\n") == 1
    assert "'compute' is not supported by the ASE engine" in err
    code, _, err = _run(capsys, "run", GETE_IN, "-o", tmp_path / "r2", "--engine", "ase",
                        "--np", "2", "--no-progress")
    assert code == 2 and "the ASE engine runs on one process" in err


SMALL_BOX = """
variable model index {artifact}
units metal
atom_style atomic
boundary p p p
lattice sc 3.0
region box block 0 2 0 2 0 2
create_box 2 box
create_atoms 1 box
mass 1 72.63
mass 2 127.6
set type 1 type/fraction 2 0.5 42
displace_atoms all random 0.1 0.1 0.1 7 units box
pair_style egraff ${{model}}
pair_coeff * * Ge Te
thermo_style custom step pe press
thermo_modify format float %.15g
dump d all custom 1 ${{rundir}}/dump.lammpstrj id type element x y z fx fy fz
dump_modify d sort id element Ge Te format float %.15g
run 0
"""


@pytest.mark.parametrize("kind", ["mace", "allegro"])
def test_cutoff_and_ghost_shell_larger_than_the_box_are_counted_image_by_image(
        kind, artifacts, tmp_path, capsys):
    """A 6 Å box with r_max 5 Å (and a 2 × r_max ghost shell for MACE): LAMMPS replicates
    periodic images as far as the cutoff reaches, so the plugin is not refused but must count
    every image of every neighbour, as ASE/vesin do, on 1 and 2 ranks."""
    from ase import Atoms

    from egraff_lmp.calculator import DeployedCalculator

    inp = tmp_path / "small.in"
    inp.write_text(SMALL_BOX.format(artifact=artifacts[kind]))
    calc = DeployedCalculator(artifacts[kind])
    for np_ in (1, 2):
        rundir = tmp_path / f"np{np_}"
        code, _, err = _run(capsys, "run", inp, "-o", rundir, "--np", np_, "--no-progress")
        assert code == 0, err
        frame = read_trajectory(rundir / "dump.lammpstrj", log=rundir / "log.lammps")[0]
        assert np.diag(frame.cell).max() < 2 * 5.0
        symbols = read_trajectory(rundir / "dump.lammpstrj").symbols
        atoms = Atoms(symbols, positions=frame.positions, cell=frame.cell, pbc=True)
        atoms.calc = calc
        assert frame.energy == pytest.approx(atoms.get_potential_energy(), abs=1e-6)
        np.testing.assert_allclose(frame.forces, atoms.get_forces(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("np_", [1, 2])
def test_strictly_local_model_in_chunks_equals_one_call(np_, artifacts, tmp_path, capsys):
    """pair_style egraff ARTIFACT chunk N: Allegro evaluated in spatial chunks of about N
    centres gives the energies, forces and pressure of one call, along a trajectory."""
    thermo, frames = {}, {}
    for chunk in (0, 40):
        inp = _input(tmp_path, NVE + [("pair_style      egraff ${model}",
                                       f"pair_style      egraff ${{model}} chunk {chunk}")],
                     f"chunk{chunk}.in")
        rundir = tmp_path / f"chunk{chunk}"
        code, _, err = _run(capsys, "run", inp, "-o", rundir, "--np", np_, "--var", "steps=10",
                            "--var", f"model={artifacts['allegro']}", "--no-progress")
        assert code == 0, err
        thermo[chunk] = read_thermo(rundir / "log.lammps")[-1]
        frames[chunk] = read_trajectory(rundir / "dump.lammpstrj")[-1]
    for key in ("PotEng", "TotEng", "Press"):
        np.testing.assert_allclose(thermo[40][key], thermo[0][key], rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(frames[40].forces, frames[0].forces, rtol=0, atol=1e-6)
    np.testing.assert_allclose(frames[40].positions, frames[0].positions, rtol=0, atol=1e-6)
