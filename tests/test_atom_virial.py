"""Per-atom virials (calling convention 2): ``forward_edges`` in every family, ASE's
per-atom stresses, and pair_style egraff's ``compute stress/atom`` /
``centroid/stress/atom`` / ``heat/flux`` in every mode on 1-3 ranks with real LAMMPS."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ROOT
from lj_artifact import argon_input, lj_artifact
from test_plugin import EV_PER_A3_IN_BAR, run_lmp
from test_staged import CELL_SETUP, _cells, _frame, _lmp_error, _with_metadata

from egraff_lmp.calculator import DeployedCalculator, atom_virials
from egraff_lmp.errors import EgraffError
from egraff_lmp.io.lammps_log import read_thermo
from egraff_lmp.io.lammps_write import write_lammps_data

SHIPPED = {k: ROOT / "inputs" / "models" / f"gete-{k}.egraff.pt"
           for k in ("mace", "nequip", "allegro", "torchmd", "painn", "dimenet")}


def _python_virials(calc, atoms):
    """Per-atom virials W_i [N, 3, 3] (eV) by the ASE engine's edges and their global sum."""
    edge_index, shift = calc.neighbours(atoms)
    pos = torch.tensor(atoms.positions, dtype=torch.float64)
    _, _, grad = calc.artifact.edges(pos, calc._types(atoms), edge_index, shift, len(atoms))
    return atom_virials(pos, edge_index, shift, grad, len(atoms),
                        calc.artifact.strictly_local).numpy()


@pytest.mark.parametrize("kind", sorted(SHIPPED))
def test_edge_gradients_give_the_forces_and_the_virial_in_every_family(kind, gete):
    """forward_edges' energies and forces are forward's; scattering its edge gradients onto
    the edges' two atoms gives the forces again (the model sees positions through the edge
    vectors only), and ASE's per-atom stresses sum to its stress."""
    atoms = _cells(gete)["orthogonal"]
    calc = DeployedCalculator(SHIPPED[kind])
    atoms.calc = calc
    e, f, s = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    edge_index, shift = calc.neighbours(atoms)
    _, forces, g = calc.artifact.edges(torch.tensor(atoms.positions), calc._types(atoms),
                                       edge_index, shift, len(atoms))
    scattered = torch.zeros_like(forces).index_add_(0, edge_index[0], g) \
        .index_add_(0, edge_index[1], -g)
    np.testing.assert_allclose(scattered.numpy(), f, atol=1e-5)
    calc.reset()
    stresses = atoms.get_stresses()
    assert stresses.shape == (len(atoms), 6)
    assert atoms.get_potential_energy() == pytest.approx(e, abs=1e-6)
    np.testing.assert_allclose(atoms.get_forces(), f, atol=1e-5)
    # float32 models: the strain derivative and the edge sum round differently
    np.testing.assert_allclose(stresses.sum(0), s, rtol=1e-5, atol=1e-7)
    assert stresses.std(axis=0).min() > 1e-6  # atoms differ: not the stress split evenly


def test_a_strictly_local_model_gives_the_neighbours_the_centres_energy_derivative(gete):
    """Allegro: the edge tally equals Fan et al.'s many-body per-atom virial
    W_j = Σ_i (x_j − x_i) ⊗ (−∂U_i/∂x_j), computed here from the Jacobian of every atom's
    own energy U_i, on a cluster cut from the GeTe cell (no periodic images)."""
    from ase import Atoms

    from egraff_lmp.deploy.model import edge_inputs

    cell = _cells(gete)["orthogonal"]
    d = cell.get_distances(0, range(len(cell)), mic=True, vector=True)
    near = np.linalg.norm(d, axis=1) < 6.0
    atoms = Atoms(np.array(cell.get_chemical_symbols())[near], positions=d[near] + 20.0,
                  cell=[40.0] * 3, pbc=False)
    calc = DeployedCalculator(SHIPPED["allegro"])
    assert calc.artifact.strictly_local and len(atoms) > 20
    edge_index, shift = calc.neighbours(atoms)
    pos = torch.tensor(atoms.positions, dtype=torch.float64, requires_grad=True)
    zero, vec = edge_inputs(pos, edge_index, shift, torch.float32)
    u = calc.artifact.module.energy_model(zero, calc._types(atoms), edge_index, vec)
    x = atoms.positions
    fan = np.zeros((len(atoms), 3, 3))
    for i in range(len(atoms)):
        (g,) = torch.autograd.grad(u[i], pos, retain_graph=True)
        fan += np.einsum("ja,jb->jab", x - x[i], -g.numpy())
    w = _python_virials(calc, atoms)
    np.testing.assert_allclose(w, fan, atol=1e-5 * np.abs(fan).max())
    half = atom_virials(torch.tensor(x), edge_index, shift,
                        calc.artifact.edges(torch.tensor(x), calc._types(atoms), edge_index,
                                            shift, len(atoms))[2], len(atoms), False).numpy()
    assert np.abs(half - fan).max() > 100 * 1e-5 * np.abs(fan).max()  # the rule matters


def test_per_atom_stresses_need_convention_2_and_a_periodic_cell(artifacts, gete, tmp_path):
    atoms = _cells(gete)["orthogonal"]
    old = _with_metadata(artifacts["allegro"], tmp_path / "old.egraff.pt",
                         lambda m: m.update(calling_convention=1))
    atoms.calc = DeployedCalculator(old)
    atoms.get_forces()  # convention 1 runs everything else
    with pytest.raises(EgraffError, match="calling convention 2, the artifact has 1: deploy"):
        atoms.get_stresses()
    atoms.pbc = False
    atoms.calc = DeployedCalculator(artifacts["allegro"])
    with pytest.raises(EgraffError, match="stresses need a periodic cell"):
        atoms.get_stresses()


ATOM_INPUT = CELL_SETUP + """compute s all stress/atom NULL virial
compute cs all centroid/stress/atom NULL virial
compute ssum all reduce sum c_s[*] c_cs[*]
compute p all pressure NULL virial
thermo_style custom step pe c_p[*] c_ssum[*] vol
thermo_modify format float %20.15g
dump d all custom 1 dump.atoms id c_s[*] c_cs[*]
dump_modify d sort id format float %20.15g
run 0
"""

# (family, mode, ranks, pair_style keywords, cell): every mode, chunked and not, 1-3 ranks
CASES = [("mace", "images", 1, "chunk 0", "orthogonal"),
         ("mace", "images", 1, "chunk 0", "small"),
         ("mace", "staged", 1, "chunk 64", "orthogonal"),
         ("mace", "staged", 2, "", "triclinic"),
         ("mace", "staged", 3, "", "orthogonal"),
         ("mace", "ghosts", 2, "", "orthogonal"),
         ("botnet", "ghosts", 1, "", "orthogonal"),
         ("nequip", "staged", 2, "", "orthogonal"),
         ("allegro", "images", 1, "chunk 64", "triclinic"),
         ("allegro", "ghosts", 1, "chunk 0", "orthogonal"),
         ("allegro", "ghosts", 3, "chunk 64", "orthogonal")]


def _lammps_virials(tmp_path, plugin, artifact, atoms, mode, ranks, extra):
    """pair_style egraff's per-atom virials, as W_i [N, 3, 3] (eV) from stress/atom (6)
    and centroid/stress/atom (9), and the thermo of step 0."""
    write_lammps_data(tmp_path / "cell.data", _frame(atoms), atoms.get_chemical_symbols())
    log = run_lmp(tmp_path, ATOM_INPUT, ranks, plugin=plugin, artifact=artifact, mode=mode,
                  extra=extra)
    text = (tmp_path / "dump.atoms").read_text().split("ITEM: ATOMS")[-1].strip()
    rows = np.array([[float(x) for x in line.split()] for line in text.splitlines()[1:]])
    rows = rows[np.argsort(rows[:, 0])][:, 1:] / -EV_PER_A3_IN_BAR  # S_i = -W_i nktv2p
    s6, c9 = rows[:, :6], rows[:, 6:]
    sym = np.zeros((len(rows), 3, 3))
    full = np.zeros((len(rows), 3, 3))
    for k, (a, b) in enumerate([(0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)]):
        sym[:, a, b] = s6[:, k]
    for k, (a, b) in enumerate([(0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2), (1, 0),
                                (2, 0), (2, 1)]):
        full[:, a, b] = c9[:, k]
    thermo = {k: v[0] for k, v in read_thermo(log)[-1].items()}
    return sym, full, thermo, log.read_text()


@pytest.mark.parametrize("kind, mode, ranks, extra, cell", CASES)
def test_per_atom_virials_are_the_edge_split_in_every_mode(kind, mode, ranks, extra, cell,
                                                           plugin, artifacts, gete,
                                                           tmp_path):
    """stress/atom and centroid/stress/atom of every atom equal the Python engine's split
    of the edges' virials (each edge half to each of its atoms), whatever the mode, the
    chunks and the ranks; summed over the atoms they are the global virial within 1e-6."""
    atoms = _cells(gete)[cell]
    sym, full, thermo, log = _lammps_virials(tmp_path, plugin, artifacts[kind], atoms, mode,
                                             ranks, extra)
    assert f"mode {mode}" in log
    w = _python_virials(DeployedCalculator(artifacts[kind]), atoms)
    scale = np.abs(w).max()
    np.testing.assert_allclose(full, w, atol=1e-6 * scale + 1e-7)
    upper = np.triu(np.ones((3, 3), bool))
    np.testing.assert_allclose(sym[:, upper], w[:, upper], atol=1e-6 * scale + 1e-7)
    for k, name in enumerate(["xx", "yy", "zz", "xy", "xz", "yz"]):
        total = -thermo[f"c_p[{k + 1}]"] * thermo["Volume"]  # bar Å³
        for col in (k + 1, k + 7):  # stress/atom, centroid/stress/atom
            assert thermo[f"c_ssum[{col}]"] == pytest.approx(
                total, rel=1e-6, abs=1e-6 * EV_PER_A3_IN_BAR), name


@pytest.mark.parametrize("kind", ["torchmd", "painn", "dimenet"])
def test_per_atom_virials_of_the_other_shipped_families(kind, plugin, gete, tmp_path):
    """The families without stages, in LAMMPS on one rank: the same split as in Python."""
    atoms = _cells(gete)["orthogonal"]
    _, full, thermo, _ = _lammps_virials(tmp_path, plugin, SHIPPED[kind], atoms, "images", 1,
                                         "")
    w = _python_virials(DeployedCalculator(SHIPPED[kind]), atoms)
    np.testing.assert_allclose(full, w, atol=1e-6 * np.abs(w).max() + 1e-7)


HEAT = """
compute ke all ke/atom
compute pe all pe/atom
compute s all ${stress} NULL virial
compute hf all heat/flux ke pe s
dump a all custom 10 dump.${style}.${tag} id c_s[*] c_pe
dump_modify a sort id format float %20.15g
thermo_style custom step pe ke etotal press c_hf[*]
thermo_modify format float %20.15g
"""


@pytest.mark.parametrize("ranks", [1, 2])
@pytest.mark.parametrize("stress", ["stress/atom", "centroid/stress/atom"])
def test_a_two_body_model_splits_as_pair_lj_cut(ranks, stress, plugin, tmp_path):
    """A Lennard-Jones artifact, whose per-atom split is known (half of each pair to each
    atom, as pair lj/cut tallies it): per-atom stresses and the heat flux along 20 steps
    of NVE argon equal pair_style lj/cut's."""
    artifact = lj_artifact(tmp_path)
    text = argon_input(
        'if "${style} == lj" then "pair_style lj/cut 8.5" "pair_coeff 1 1 0.0104 3.4" &\n'
        '  else "plugin load ${plugin}" "pair_style egraff ${artifact}" "pair_coeff * * Ar"',
        HEAT).replace("thermo_style custom step pe ke etotal press pxx pyy pzz pxy pxz pyz\n",
                      "")
    tag = stress.replace("/", "-")
    ref = run_lmp(tmp_path, text, 1, style="lj", stress=stress, tag=tag)
    ours = run_lmp(tmp_path, text, ranks, style="egraff", stress=stress, tag=tag,
                   plugin=plugin, artifact=artifact)
    a, b = read_thermo(ref)[-1], read_thermo(ours)[-1]
    assert "c_hf[1]" in a and len(a["Step"]) == 5
    for key in a:
        np.testing.assert_allclose(b[key], a[key], rtol=1e-9, atol=1e-6, err_msg=key)
    assert max(abs(x) for x in b["c_hf[1]"]) > 1.0  # a flux, not zeros
    mine = (tmp_path / f"dump.egraff.{tag}").read_text()
    theirs = (tmp_path / f"dump.lj.{tag}").read_text()
    assert mine.count("ITEM: ATOMS") == theirs.count("ITEM: ATOMS") == 3
    def frames(text):
        return [np.array([[float(v) for v in r.split()] for r in
                          block.split("ITEM:")[0].strip().splitlines()[1:]])
                for block in text.split("ITEM: ATOMS")[1:]]

    for x, y in zip(frames(mine), frames(theirs)):
        assert x.shape == y.shape == (256, 8 if stress == "stress/atom" else 11)
        np.testing.assert_allclose(x, y, rtol=1e-8, atol=1e-4)  # bar Å³; |S| ~ 1e5


def test_per_atom_virials_refuse_old_artifacts_and_packages_in_one_line(
        plugin, artifacts, compiled_allegro, gete, tmp_path):
    atoms = _cells(gete)["orthogonal"]
    write_lammps_data(tmp_path / "cell.data", _frame(atoms), atoms.get_chemical_symbols())
    old = _with_metadata(artifacts["allegro"], tmp_path / "old.egraff.pt",
                         lambda m: m.update(calling_convention=1))
    err = _lmp_error(tmp_path, ATOM_INPUT, plugin=plugin, artifact=old, mode="auto", extra="")
    assert "need calling convention 2" in err and "deploy it again" in err
    err = _lmp_error(tmp_path, ATOM_INPUT, plugin=plugin, artifact=compiled_allegro,
                     mode="auto", extra="")
    assert "need the TorchScript artifact" in err
    # without per-atom computes both still run
    run_lmp(tmp_path, CELL_SETUP + "run 0\n", plugin=plugin,
            artifact=old, mode="auto", extra="")


def test_the_worked_heat_flux_input_runs_on_two_ranks(tmp_path, capsys):
    """inputs/gete-heatflux.in as shipped (Allegro, mode ghosts on 2 ranks, per-atom
    virials on the sampled steps only) writes the flux correlation and a finite running
    conductivity; the run is the plugin's with a reset_timestep between NVT and NVE."""
    import json

    from test_run import _run

    rundir = tmp_path / "hf"
    code, _, err = _run(capsys, "run", ROOT / "inputs" / "gete-heatflux.in", "-o", rundir,
                        "--np", 2, "--var", "steps=200", "--var", "equil=10",
                        "--no-progress")
    assert code == 0, err
    rec = json.loads((rundir / "run.json").read_text())
    assert rec["engine"] == "plugin" and rec["steps_done"] == 210
    kappa = np.loadtxt(rundir / "kappa.dat")
    assert kappa.shape == (2, 5) and kappa[-1, 0] == 200 and np.isfinite(kappa).all()
    rows = [r.split() for r in (rundir / "J0Jt.dat").read_text().splitlines()
            if not r.startswith("#")]
    corr = np.array([[float(v) for v in r] for r in rows if len(r) == 6])
    assert corr.shape == (200, 6) and np.isfinite(corr).all()  # two windows of 100 lags
    assert corr[100, 3] > 0  # <Jx(0) Jx(0)>
    assert "thermal conductivity (Green-Kubo" in (rundir / "log.lammps").read_text()
