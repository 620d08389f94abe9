"""Message passing across ranks: the staged artifact (one stage per layer) and the plugin's
mode staged (a ghost shell of r_max, features exchanged between layers, their gradients sent
home), against the one-call evaluation, with models trained by the families' own trainers
and real LAMMPS on 1, 2 and 3 ranks."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from ase import Atoms
from conftest import GETE_TEST, triclinic_gete
from test_plugin import EV_PER_A3_IN_BAR, run_lmp

from egraff_lmp.calculator import DeployedCalculator
from egraff_lmp.deploy import checks
from egraff_lmp.deploy.artifact import META_NAME, load, read_metadata
from egraff_lmp.deploy.stages import deviation, emulate
from egraff_lmp.io import read_trajectory
from egraff_lmp.io.lammps_write import write_lammps_data

STAGED = ["mace", "botnet", "nequip"]


def _cells(gete):
    """Three periodic configurations: the orthogonal GeTe box, the same atoms in a sheared
    cell, and a 6 Å triclinic cell smaller than 2 r_max (ghosts hold several images)."""
    ref = read_trajectory(GETE_TEST)
    ortho = Atoms(ref.symbols, positions=ref[7].positions, cell=ref[7].cell, pbc=True)
    pos, cell = triclinic_gete(gete, 1)
    tri = Atoms(ref.symbols, positions=pos[0], cell=cell, pbc=True)
    small = checks.random_configuration(["Ge", "Te"], 4.0, seed=3, n_per_species=6)
    return {"orthogonal": ortho, "triclinic": tri, "small": small}


@pytest.mark.parametrize("kind", STAGED)
def test_artifact_has_stages_with_the_widths_of_its_model(kind, artifacts):
    meta = read_metadata(artifacts[kind])
    st = meta["stages"]
    assert st["layers"] == meta["num_layers"] == 2
    assert len(st["feature_widths"]) == 2 and min(st["feature_widths"]) > 0
    staging = meta["validation"]["staging"]  # deploy ran the two-domain emulation
    assert staging["forces"] < 1e-10 and staging["energy"] < 1e-9
    assert read_metadata(artifacts["allegro"])["stages"] is None  # strictly local


@pytest.mark.parametrize("kind", STAGED)
def test_two_domain_emulation_equals_one_call(kind, artifacts, gete):
    art = load(artifacts[kind])
    calc = DeployedCalculator(art)
    for name, atoms in _cells(gete).items():
        for grid in ((2, 1, 1), (1, 3, 1)):
            dev = deviation(emulate(art, atoms, grid), calc, atoms)
            assert dev["energy"] < 1e-10 and dev["atom_energies"] < 1e-10, (name, grid, dev)
            assert dev["forces"] < 1e-10 and dev["virial"] < 1e-10, (name, grid, dev)


@pytest.mark.parametrize("kind", ["mace", "nequip"])
def test_skipping_an_exchange_breaks_the_emulation(kind, artifacts, gete):
    art = load(artifacts[kind])
    atoms = _cells(gete)["orthogonal"]
    dev = deviation(emulate(art, atoms, (2, 1, 1), skip_exchange=1), DeployedCalculator(art),
                    atoms)
    assert dev["forces"] > 1e-5 and dev["energy"] > 1e-6


#: a GeTe cell (cell.data) with pair_style egraff ARTIFACT mode MODE EXTRA
CELL_SETUP = """
units metal
atom_style atomic
atom_modify map array
read_data cell.data
plugin load ${plugin}
pair_style egraff ${artifact} mode ${mode} ${extra}
pair_coeff * * Ge Te
"""

STAGED_INPUT = CELL_SETUP + """compute peatom all pe/atom
compute pe all reduce sum c_peatom
thermo_style custom step pe c_pe press pxx pyy pzz pxy pxz pyz
thermo_modify format float %20.15g
dump d all custom 1 dump.cell id c_peatom fx fy fz
dump_modify d sort id format float %20.15g
run 0
"""


def _dump_rows(path):
    text = path.read_text().split("ITEM: ATOMS")[-1].strip().splitlines()
    rows = np.array([[float(x) for x in line.split()] for line in text[1:]])
    return rows[np.argsort(rows[:, 0])][:, 1:]


def _run_cell(tmp_path, plugin, artifact, atoms, ranks, mode="staged", extra="chunk 512",
              name="in"):
    write_lammps_data(tmp_path / "cell.data", _frame(atoms), atoms.get_chemical_symbols())
    log = run_lmp(tmp_path, STAGED_INPUT, ranks, name=f"{name}.lmp", plugin=plugin,
                  artifact=artifact, mode=mode, extra=extra)
    from egraff_lmp.io.lammps_log import read_thermo

    thermo = {k: v[0] for k, v in read_thermo(log)[-1].items()}
    rows = _dump_rows(tmp_path / "dump.cell")
    return thermo, rows[:, 0], rows[:, 1:], log


def _frame(atoms):
    from egraff_lmp.trajectory import Frame

    return Frame(index=0, positions=atoms.positions, cell=np.asarray(atoms.cell[:]),
                 pbc=(True, True, True))


@pytest.mark.parametrize("kind", ["mace", "nequip"])
@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_plugin_staged_equals_one_call(kind, ranks, plugin, artifacts, gete, tmp_path):
    """Energy, per-atom energies, forces and all six pressure components of mode staged
    equal the one-call evaluation (ASE, every periodic image as a shift) within 1e-6, on
    an orthogonal, a triclinic and a small cell (several images of an atom among the
    ghosts), on 1, 2 and 3 ranks."""
    calc = DeployedCalculator(artifacts[kind])
    for name, atoms in _cells(gete).items():
        thermo, ei, f, log = _run_cell(tmp_path, plugin, artifacts[kind], atoms, ranks)
        assert "mode staged" in log.read_text()
        a = atoms.copy()
        a.calc = calc
        e, s = a.get_potential_energy(), a.get_stress()
        assert thermo["PotEng"] == pytest.approx(e, abs=1e-6), name
        np.testing.assert_allclose(ei, a.get_potential_energies(), atol=1e-6, err_msg=name)
        np.testing.assert_allclose(f, a.get_forces(), atol=1e-6, err_msg=name)
        for key, k in (("Pxx", 0), ("Pyy", 1), ("Pzz", 2), ("Pyz", 3), ("Pxz", 4),
                       ("Pxy", 5)):
            # bar; LAMMPS' and our eV/Å³ → bar constants differ in the 7th digit
            assert thermo[key] == pytest.approx(-s[k] * EV_PER_A3_IN_BAR, rel=1e-6,
                                                abs=1e-3), (name, key)


@pytest.mark.parametrize("kind", ["mace", "nequip"])
@pytest.mark.parametrize("ranks", [1, 2])
def test_staged_in_chunks_equals_one_call(kind, ranks, plugin, artifacts, gete, tmp_path):
    """chunk N with a staged artifact: every layer evaluated in spatial chunks of about N
    centres gives the one-call numbers; on one rank with more than N atoms, mode auto
    chooses it."""
    calc = DeployedCalculator(artifacts[kind])
    for name in ("orthogonal", "triclinic"):
        atoms = _cells(gete)[name]
        thermo, ei, f, log = _run_cell(tmp_path, plugin, artifacts[kind], atoms, ranks,
                                       mode="auto", extra="chunk 40")
        assert "mode staged" in log.read_text() and "chunks of ~40 centres" in log.read_text()
        a = atoms.copy()
        a.calc = calc
        assert thermo["PotEng"] == pytest.approx(a.get_potential_energy(), abs=1e-6), name
        np.testing.assert_allclose(ei, a.get_potential_energies(), atol=1e-6, err_msg=name)
        np.testing.assert_allclose(f, a.get_forces(), atol=1e-6, err_msg=name)
        assert thermo["Pxy"] == pytest.approx(-a.get_stress()[5] * EV_PER_A3_IN_BAR, rel=1e-6,
                                              abs=1e-3)
    _, _, _, log = _run_cell(tmp_path, plugin, artifacts[kind], atoms, 1, mode="auto",
                             extra="chunk 512", name="few")
    assert "mode images" in log.read_text()  # 200 atoms: one rank folds images


def _nghost(log):
    """LAMMPS' end-of-run statistics of ghost atoms per rank: (ave, max, min)."""
    line = [x for x in log.read_text().splitlines() if x.startswith("Nghost:")][-1]
    return tuple(float(v) for v in re.findall(r"[-\d.]+", line)[:3])


ZERO_INPUT = """
units metal
atom_style atomic
read_data cell.data
pair_style zero ${rmax}
pair_coeff * *
run 0
"""


@pytest.mark.parametrize("ranks", [2, 3])
def test_staged_ghost_shell_is_one_cutoff_deep(ranks, plugin, artifacts, gete, tmp_path):
    """Ghost atoms per rank in mode staged are those of pair_style zero with the model's
    r_max (+ the same skin): the shell is r_max deep, not layers x r_max as in mode
    ghosts."""
    atoms = _cells(gete)["orthogonal"]
    r_max = read_metadata(artifacts["mace"])["r_max"]
    _, _, _, staged = _run_cell(tmp_path, plugin, artifacts["mace"], atoms, ranks)
    zero = run_lmp(tmp_path, ZERO_INPUT, ranks, name="zero.lmp", rmax=r_max)
    _, _, _, deep = _run_cell(tmp_path, plugin, artifacts["mace"], atoms, ranks, "ghosts",
                              name="deep")
    assert _nghost(staged) == _nghost(zero)
    assert _nghost(deep)[0] > 1.5 * _nghost(staged)[0]


def test_a_skipped_exchange_breaks_the_plugin(plugin, artifacts, gete, tmp_path):
    """The tests above would see a wrong exchange: leaving the ghosts' layer-1 features at
    zero changes forces and energy."""
    atoms = _cells(gete)["orthogonal"]
    calc = DeployedCalculator(artifacts["mace"])
    thermo, _, f, _ = _run_cell(tmp_path, plugin, artifacts["mace"], atoms, 2,
                                extra="skip_exchange 1")
    a = atoms.copy()
    a.calc = calc
    assert np.abs(f - a.get_forces()).max() > 1e-4
    assert abs(thermo["PotEng"] - a.get_potential_energy()) > 1e-5


NVE_INPUT = """
units metal
atom_style atomic
atom_modify map array
read_data cell.data
plugin load ${plugin}
pair_style egraff ${artifact} mode ${mode}
pair_coeff * * Ge Te
velocity all create 900 4 dist gaussian loop geom
timestep 0.002
fix 1 all nve
thermo_style custom step pe etotal press
thermo_modify format float %20.15g
thermo 10
dump d all custom 50 dump.nve id x y z
dump_modify d sort id format float %20.15g
run 50
"""


def test_staged_nve_trajectory_equals_one_rank_images(plugin, artifacts, gete, tmp_path):
    """50 NVE steps: mode staged on 2 ranks follows the one-rank trajectory (ghosts folded
    onto their owners, the model's own virial) to 1e-6 Å, energies to 1e-6 eV."""
    from egraff_lmp.io.lammps_log import read_thermo

    atoms = _cells(gete)["orthogonal"]
    write_lammps_data(tmp_path / "cell.data", _frame(atoms), atoms.get_chemical_symbols())
    out = {}
    for mode, ranks in (("images", 1), ("staged", 2)):
        log = run_lmp(tmp_path, NVE_INPUT, ranks, name=f"nve_{mode}.lmp", plugin=plugin,
                      artifact=artifacts["mace"], mode=mode)
        out[mode] = read_thermo(log)[-1], _dump_rows(tmp_path / "dump.nve")
    (ta, xa), (tb, xb) = out["images"], out["staged"]
    assert ta["Step"][-1] == tb["Step"][-1] == 50
    np.testing.assert_allclose(xb, xa, atol=1e-6, rtol=0)
    for key in ("PotEng", "TotEng", "Press"):
        np.testing.assert_allclose(tb[key], ta[key], rtol=1e-9, atol=1e-6, err_msg=key)


def _with_metadata(src, dst, change):
    extra = {META_NAME: ""}
    module = torch.jit.load(str(src), _extra_files=extra)
    meta = json.loads(extra[META_NAME])
    change(meta)
    torch.jit.save(module, str(dst), _extra_files={META_NAME: json.dumps(meta)})
    return dst


def _lmp_error(tmp_path, text, ranks=1, **variables):
    import subprocess

    from egraff_lmp.lammps.env import library_env, lmp_executable, mpiexec

    (tmp_path / "bad.lmp").write_text(text)
    cmd = [lmp_executable(), "-in", "bad.lmp", "-screen", "none", "-log", "log.bad"]
    for k, v in variables.items():
        cmd += ["-var", k, str(v)]
    if ranks > 1:
        cmd = [mpiexec(), "-n", str(ranks)] + cmd
    r = subprocess.run(cmd, cwd=tmp_path, env=library_env(), capture_output=True, text=True)
    assert r.returncode != 0
    errors = [x for x in (tmp_path / "log.bad").read_text().splitlines()
              if x.startswith("ERROR")]
    assert len(errors) == 1, errors
    return errors[0]


@pytest.mark.parametrize("case,expected", [
    ("no stages", "has no stages (deployed without them): deploy it again"),
    ("wrong width", "layer 1 reads 32 features, the metadata says 31; deploy it again"),
    ("wrong count", "corrupt metadata"),
    ("strictly local", "is strictly local"),
    ("newton off", "requires newton pair on"),
    ("comm tiled", "needs comm_style brick"),
])
def test_bad_staged_setups_are_one_lammps_error(case, expected, plugin, artifacts, gete,
                                                tmp_path):
    atoms = _cells(gete)["orthogonal"]
    write_lammps_data(tmp_path / "cell.data", _frame(atoms), atoms.get_chemical_symbols())
    artifact = artifacts["mace"]
    text = STAGED_INPUT
    if case == "no stages":
        artifact = _with_metadata(artifact, tmp_path / "old.egraff.pt",
                                  lambda m: m.update(stages=None))
    elif case == "wrong width":
        widths = read_metadata(artifact)["stages"]["feature_widths"]
        assert widths[1] == 32
        artifact = _with_metadata(
            artifact, tmp_path / "w.egraff.pt",
            lambda m: m["stages"].update(feature_widths=[widths[0], 31]))
    elif case == "wrong count":
        artifact = _with_metadata(artifact, tmp_path / "n.egraff.pt",
                                  lambda m: m["stages"].update(layers=3))
    elif case == "strictly local":
        artifact = artifacts["allegro"]
    elif case == "newton off":
        text = text.replace("atom_modify map array", "atom_modify map array\nnewton off")
    elif case == "comm tiled":
        text = text.replace("atom_modify map array", "atom_modify map array\ncomm_style tiled")
    ranks = 2 if case == "comm tiled" else 1
    line = _lmp_error(tmp_path, text, ranks, plugin=plugin, artifact=artifact, mode="staged",
                      extra="chunk 512")
    assert expected in line, line


RUN_INPUT = """
variable model index {artifact}
units metal
atom_style atomic
read_data cell.data
pair_style egraff ${{model}}
pair_coeff * * Ge Te
velocity all create 900 4 dist gaussian loop geom
timestep 0.002
fix 1 all nve
thermo_style custom step pe etotal press
thermo_modify format float %.12g
thermo 5
run 10
"""


def test_run_records_the_mode_and_pair_mode_forces_it(artifacts, gete, tmp_path, capsys):
    """egraff-lmp run: one rank folds images, two ranks run staged by default (run.json
    says so), --pair-mode ghosts forces the deep shell; all give the same thermo."""
    from egraff_lmp.cli import main
    from egraff_lmp.io.lammps_log import read_thermo

    atoms = _cells(gete)["orthogonal"]
    write_lammps_data(tmp_path / "cell.data", _frame(atoms), atoms.get_chemical_symbols())
    inp = tmp_path / "nve.in"
    inp.write_text(RUN_INPUT.format(artifact=artifacts["nequip"]))
    thermo = {}
    for np_, mode, expected in ((1, None, "images"), (2, None, "staged"),
                                (2, "ghosts", "ghosts"), (1, "staged", "staged")):
        rundir = tmp_path / f"np{np_}-{mode}"
        argv = ["run", str(inp), "-o", str(rundir), "--np", str(np_), "--no-progress"]
        code = main(argv + (["--pair-mode", mode] if mode else []))
        out, err = capsys.readouterr()
        assert code == 0, err
        rec = json.loads((rundir / "run.json").read_text())
        assert rec["pair_mode"] == expected and f"pair mode {expected}" in out
        thermo[(np_, mode)] = read_thermo(rundir / "log.lammps")[-1]
    base = thermo[(1, None)]
    for key, t in thermo.items():
        for col in ("PotEng", "TotEng", "Press"):
            np.testing.assert_allclose(t[col], base[col], rtol=1e-9, atol=1e-6,
                                       err_msg=f"{key} {col}")


MOLECULE_INPUT = """units metal
atom_style atomic
boundary s s s
processors ${ranks} 1 1
read_data molecule.data
plugin load ${plugin}
pair_style egraff ${artifact} mode ${mode}
pair_coeff * * Ge Te
compute pe all pe/atom
dump d all custom 1 dump.molecule id c_pe fx fy fz
dump_modify d sort id format float %20.15g
thermo_style custom step pe
thermo_modify format float %20.15g
run 0
"""


@pytest.mark.parametrize("mode", ["staged", "ghosts"])
def test_ranks_without_atoms_take_part_and_add_nothing(mode, plugin, artifacts, tmp_path):
    """A 12-atom molecule in vacuum (shrink-wrapped) on 6 ranks along x leaves some ranks
    without atoms; they still take part in every exchange (collective), and energies and
    forces equal the one call (before: MACE failed on a zero-atom rank)."""
    ref = read_trajectory(GETE_TEST)
    frame = ref[0]
    centre = frame.positions[0]
    near = np.argsort(np.linalg.norm(frame.positions - centre, axis=1))[:12]
    mol = Atoms([ref.symbols[i] for i in near], positions=frame.positions[near])
    from egraff_lmp.evaluate.plan import boxed
    from egraff_lmp.trajectory import Frame

    boxed_frame = boxed(Frame(0, mol.positions, None, (False,) * 3))
    write_lammps_data(tmp_path / "molecule.data", boxed_frame, mol.get_chemical_symbols(),
                      ["Ge", "Te"])
    mol.positions = boxed_frame.positions
    mol.calc = DeployedCalculator(artifacts["mace"])
    run_lmp(tmp_path, MOLECULE_INPUT, 6, name="mol.lmp", plugin=plugin,
            artifact=artifacts["mace"], mode=mode, ranks=6)
    rows = _dump_rows(tmp_path / "dump.molecule")
    np.testing.assert_allclose(rows[:, 0], mol.get_potential_energies(), atol=1e-6)
    np.testing.assert_allclose(rows[:, 1:], mol.get_forces(), atol=1e-6)
