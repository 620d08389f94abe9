"""A committee in pair_style egraff (``pair_style egraff A0 A1 ... devi_every N``): the
deviation of the models' forces, energies and virials along a run, as deepmd-kit's
model_devi.out has it, against a Python recomputation, with real LAMMPS on 1 and 2 ranks."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from conftest import ROOT
from lj_artifact import lj_artifact
from test_plugin import run_lmp
from test_staged import _lmp_error

from egraff_lmp.calculator import DeployedCalculator
from egraff_lmp.io.lammps_log import read_thermo

DATA = ROOT / "inputs" / "gete" / "gete_start.data"

COMMITTEE = """
units metal
atom_style atomic
atom_modify map array
read_data {data}
plugin load ${{plugin}}
pair_style egraff ${{models}} {devi}
pair_coeff * * Ge Te
{compute}
velocity all create 920 4928 mom yes rot yes dist gaussian
timestep 0.002
fix nve all nve
thermo_style custom step pe {columns}
thermo_modify format float %20.15g
thermo 5
dump d all custom 5 dump.${{tag}} id x y z fx fy fz
dump_modify d sort id format float %20.15g
run 20
"""


def _input(devi="devi_every 5 devi_file devi.out"):
    """The committee run; ``devi=""``: one model, no deviation."""
    return COMMITTEE.format(data=DATA, devi=devi,
                            compute="compute dv all pair egraff" if devi else "",
                            columns="c_dv[1] c_dv[2] c_dv[3] c_dv[4] c_dv[5]" if devi else "")


def _frames(path):
    """(positions, forces) of every frame of a dump, atoms by id."""
    out = []
    for block in path.read_text().split("ITEM: ATOMS")[1:]:
        rows = np.array([[float(v) for v in r.split()] for r in
                         block.split("ITEM:")[0].strip().splitlines()[1:]])
        rows = rows[np.argsort(rows[:, 0])]
        out.append((rows[:, 1:4], rows[:, 4:7]))
    return out


def _devi(path):
    rows = [line.split() for line in path.read_text().splitlines() if not line.startswith("#")]
    return np.array([[float(v) for v in r] for r in rows])


def _python_deviation(artifacts, positions, symbols, cell, atomic=False):
    """model_devi.out's columns by DeployedCalculators on one configuration (``atomic``:
    followed by every atom's force deviation)."""
    atoms = Atoms(symbols, positions=positions, cell=cell, pbc=True)
    forces, energies, virials = [], [], []
    for path in artifacts:
        a = atoms.copy()
        a.calc = DeployedCalculator(path)
        forces.append(a.get_forces())
        energies.append(a.get_potential_energy())
        s = a.get_stress()  # xx yy zz yz xz xy, eV/Å³; the virial is -s V
        virials.append(-s * a.get_volume())
    f = np.array(forces)
    d = np.sqrt(((f - f.mean(0)) ** 2).sum(-1).mean(0))
    n = len(atoms)
    v = np.array(virials).std(0) / n
    out = np.array([v.max(), v.min(), v.mean(), d.max(), d.min(), d.mean(),
                    np.std(energies) / n])
    return np.concatenate([out, d]) if atomic else out


def _symbols_and_cell():
    from ase.io import read

    a = read(DATA, format="lammps-data", atom_style="atomic")  # elements from the Masses
    assert set(a.get_chemical_symbols()) == {"Ge", "Te"}
    return a.get_chemical_symbols(), a.cell[:]


@pytest.mark.parametrize("ranks", [1, 2])
def test_the_deviation_is_the_python_recomputation_and_the_dynamics_are_a0s(
        ranks, plugin, artifacts, tmp_path):
    """MACE drives, NequIP and Allegro (each in its own mode: staged, and ghosts on 2 ranks)
    are evaluated every 5 steps: model_devi.out's seven columns, and with atomic every
    atom's force deviation by id, equal DeployedCalculators on the dumped configurations,
    compute pair egraff gives the same values on every rank count, and the trajectory is
    MACE's alone, bit for bit."""
    from egraff_lmp.evaluate.deviation import read_model_devi

    models = [artifacts["mace"], artifacts["nequip"], artifacts["allegro"]]
    log = run_lmp(tmp_path, _input("devi_every 5 devi_file devi.out atomic"), ranks,
                  plugin=plugin, tag="committee", models=" ".join(map(str, models)))
    run_lmp(tmp_path, _input(""), ranks, name="alone.lmp", plugin=plugin,
                    tag="alone", models=models[0])
    text = log.read_text()
    assert text.count("(committee member") == 2
    devi = _devi(tmp_path / "devi.out")
    assert devi[:, 0].tolist() == [0, 5, 10, 15, 20]
    frames = _frames(tmp_path / "dump.committee")
    for (x, f), (xa, fa) in zip(frames, _frames(tmp_path / "dump.alone")):
        np.testing.assert_array_equal(x, xa)
        np.testing.assert_array_equal(f, fa)
    symbols, cell = _symbols_and_cell()
    assert devi.shape == (5, 8 + len(symbols))
    for row, (x, _) in zip(devi, frames):
        ref = _python_deviation(models, x, symbols, cell, atomic=True)
        np.testing.assert_allclose(row[1:], ref, rtol=1e-5, atol=1e-6, err_msg=row[0])
    read = read_model_devi(tmp_path / "devi.out")
    np.testing.assert_array_equal(read["atomic"], devi[:, 8:])
    np.testing.assert_allclose(read["atomic"].max(1), read["max_devi_f"], rtol=1e-6)
    assert devi[:, 5].min() > 1e-3  # three different models do deviate
    thermo = read_thermo(log)[-1]
    for k, col in ((1, 4), (2, 5), (3, 6), (4, 7), (5, 1)):  # compute pair: rank sums
        np.testing.assert_allclose(thermo[f"c_dv[{k}]"], devi[:, col], rtol=1e-9)


def test_identical_models_deviate_by_zero(plugin, artifacts, tmp_path):
    a = artifacts["mace"]
    run_lmp(tmp_path, _input(), 1, plugin=plugin, tag="same", models=f"{a} {a}")
    devi = _devi(tmp_path / "devi.out")
    assert devi.shape == (5, 8) and np.abs(devi[:, 1:]).max() < 1e-12


HALT = _input("devi_every 5 devi_file devi.out").replace(
    "run 20", "variable dmax equal c_dv[1]\n"
    "fix halt all halt 5 v_dmax > ${limit} error continue\nrun 20")


def test_fix_halt_stops_the_run_on_the_deviation(plugin, artifacts, tmp_path):
    models = f"{artifacts['mace']} {artifacts['allegro']}"
    log = run_lmp(tmp_path, HALT, 2, plugin=plugin, tag="halt", models=models, limit=1e-4)
    assert "Fix halt condition for fix-id halt met on step 5" in log.read_text()
    log = run_lmp(tmp_path, HALT, 2, name="far.lmp", plugin=plugin, tag="far",
                  models=models, limit=1e3)
    assert "halt condition" not in log.read_text() and read_thermo(log)[-1]["Step"][-1] == 20


RESTARTED = """
units metal
atom_style atomic
read_restart restart.10
plugin load ${plugin}
pair_style egraff ${models} devi_every 5 devi_file devi.out
pair_coeff * * Ge Te
fix nve all nve
run 10
"""


def test_a_run_continued_from_a_restart_appends_and_never_duplicates(plugin, artifacts,
                                                                      tmp_path):
    models = f"{artifacts['mace']} {artifacts['allegro']}"
    first = _input().replace("run 20", "restart 10 restart.*\nrun 20")
    run_lmp(tmp_path, first, 1, plugin=plugin, tag="first", models=models)
    before = _devi(tmp_path / "devi.out")
    assert before[:, 0].tolist() == [0, 5, 10, 15, 20]
    run_lmp(tmp_path, RESTARTED, 1, name="again.lmp", plugin=plugin, models=models)
    after = _devi(tmp_path / "devi.out")
    assert after[:, 0].tolist() == [0, 5, 10, 15, 20]
    np.testing.assert_array_equal(after[:2], before[:2])  # kept
    np.testing.assert_allclose(after[2:], before[2:], rtol=1e-6)  # the same steps again


@pytest.mark.parametrize("case, expected", [
    ("no_every", "a committee of 2 models needs devi_every N"),
    ("no_committee", "devi_every needs a committee"),
    ("species", "species Ge of type 1 is not in the model"),
])
def test_bad_committees_are_one_lammps_error(case, expected, plugin, artifacts, tmp_path):
    a = artifacts["mace"]
    models, devi = {"no_every": (f"{a} {a}", ""),
                    "no_committee": (f"{a}", "devi_every 5"),
                    "species": (f"{a} {lj_artifact(tmp_path)}", "devi_every 5")}[case]
    text = _input("devi_every 5").replace("devi_every 5", devi)
    err = _lmp_error(tmp_path, text, plugin=plugin, tag="bad", models=models)
    assert expected in err


def test_evaluate_runs_a_committee_and_reports_its_deviation(artifacts, tmp_path, capsys):
    """A model entry with a committee: every run records model_devi.out's max_devi_f every
    devi_every steps, metrics.json holds the dataset's analysis and report.md its section
    and plot."""
    import yaml

    from egraff_lmp.cli import main
    from egraff_lmp.evaluate.records import Evaluation, RunMetrics

    cfg = tmp_path / "eval.yaml"
    cfg.write_text(yaml.safe_dump({
        "title": "committee", "datasets": ["gete"],
        "models": {"mace": {"artifact": str(artifacts["mace"]),
                            "committee": [str(artifacts["nequip"]),
                                          str(artifacts["allegro"])]}},
        "protocol": {"static_frames": 10, "runs": 2, "steps": 20, "devi_every": 5}}))
    out = tmp_path / "report"
    assert main(["evaluate", str(cfg), "-o", str(out)]) == 0, capsys.readouterr().err
    ev = Evaluation.load(out / "metrics.json")
    assert ev.models["mace"].committee == [str(artifacts["nequip"]), str(artifacts["allegro"])]
    w = ev.committee["gete"]
    assert w.stable_runs == 2 and w.stable_samples == 10 and w.threshold_ev_per_a > 0
    for run in w.runs:
        assert run.samples == 5 and run.t_fs[1] == pytest.approx(5 * ev.cell(
            "mace", "gete").timestep_fs)
        rundir = out / "runs" / "mace" / "gete" / f"run-{run.k}"
        m = RunMetrics.load(rundir / "evaluation.json")
        np.testing.assert_allclose(m.max_devi_f_ev_per_a,
                                   _devi(rundir / "model_devi.out")[:, 4])
    md = (out / "report.md").read_text()
    assert "## Does the committee deviation warn?" in md and "no run failed" in md
    assert (out / "plots" / "committee_gete.png").stat().st_size > 10_000


def test_the_warning_lead_is_measured_from_the_stable_runs_threshold():
    """The threshold is the 95th percentile of the stable runs' samples; a failed run is
    flagged at its first sample above it, that many fs before the watch stopped it."""
    from egraff_lmp.evaluate.deviation import committee_warning
    from egraff_lmp.evaluate.records import RunMetrics

    t = [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0]

    def run(k, devi, status="ok", failed_at_step=None):
        return RunMetrics(model="m", dataset="d", k=k, start_frame=0, status=status,
                          failed_at_step=failed_at_step, timestep_fs=2.0,
                          devi_t_fs=t[:len(devi)], max_devi_f_ev_per_a=devi)

    stable = [run(0, [0.1] * 10), run(1, [0.2] * 9 + [0.3])]
    failed = run(2, [0.1, 0.1, 0.2, 0.5, 0.9, 2.0], "failed", failed_at_step=28)  # 56 fs
    quiet = run(3, [0.1] * 5, "failed", failed_at_step=20)  # 40 fs, never above
    w = committee_warning([*stable, failed, quiet])
    assert w.threshold_ev_per_a == pytest.approx(np.percentile([0.1] * 10 + [0.2] * 9 + [0.3],
                                                               95))
    assert w.stable_runs == 2 and w.stable_samples == 20
    f = next(r for r in w.runs if r.k == 2)
    assert f.failed_at_fs == 56.0 and f.flagged_at_fs == 30.0 and f.lead_fs == 26.0
    assert f.last_window_max_ev_per_a == 2.0  # the samples at 10-50 fs
    q = next(r for r in w.runs if r.k == 3)
    assert q.flagged_at_fs is None and q.lead_fs is None and q.last_window_max_ev_per_a == 0.1
    from egraff_lmp.evaluate.report import committee_verdict

    assert committee_verdict("d", w).startswith("d: 1 of 2 failures crossed")
    assert committee_verdict("d", committee_warning([failed])).startswith(
        "d: every run with a committee failed")


def test_the_run_watch_stops_on_the_committee_deviation(artifacts, tmp_path, capsys):
    """egraff-lmp run --max-devi-f: the stability watch reads the committee's last
    max_devi_f and stops the run above it, with the reason in run.json; without a
    committee the option is one error line."""
    import json

    from test_run import _run

    text = _input("devi_every 5 devi_file ${rundir}/devi.out").replace(
        "plugin load ${plugin}\n", "").replace("dump.${tag}", "${rundir}/dump.lammpstrj")
    (tmp_path / "in.lmp").write_text(text)
    models = f"{artifacts['mace']} {artifacts['allegro']}"
    code, _, err = _run(capsys, "run", tmp_path / "in.lmp", "-o", tmp_path / "stop",
                        "--var", f"models={models}", "--max-devi-f", "1e-4",
                        "--no-progress")
    assert code != 0 and "committee force deviation" in err
    rec = json.loads((tmp_path / "stop" / "run.json").read_text())
    assert rec["status"] == "failed" and rec["failed_at_step"] == 10  # the first check
    assert "committee force deviation" in rec["failure"]
    code, _, err = _run(capsys, "run", tmp_path / "in.lmp", "-o", tmp_path / "far",
                        "--var", f"models={models}", "--max-devi-f", "100",
                        "--no-progress")
    assert code == 0, err
    alone = text.replace("devi_every 5 devi_file ${rundir}/devi.out", "").replace(
        "compute dv all pair egraff\n", "").replace(
        " c_dv[1] c_dv[2] c_dv[3] c_dv[4] c_dv[5]", "")
    (tmp_path / "alone.lmp").write_text(alone)
    code, _, err = _run(capsys, "run", tmp_path / "alone.lmp", "-o", tmp_path / "alone",
                        "--var", f"models={artifacts['mace']}", "--max-devi-f", "1",
                        "--no-progress")
    assert code == 2 and "--max-devi-f needs a committee" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("ranks", [1, 2])
def test_the_worked_committee_input_halts_on_the_deviation(ranks, tmp_path, capsys):
    """inputs/gete-committee.in as shipped (the unstable NequIP watched by its two seeds):
    fix halt ends the run at the first deviation step whose max_devi_f exceeds the limit,
    and egraff-lmp run records that LAMMPS halted it."""
    import json

    from test_run import _run

    rundir = tmp_path / "committee"
    code, _, err = _run(capsys, "run", ROOT / "inputs" / "gete-committee.in", "-o", rundir,
                        "--np", ranks, "--var", "devi_limit=5", "--no-progress")
    assert code != 0 and "halted by LAMMPS" in err
    rec = json.loads((rundir / "run.json").read_text())
    assert rec["status"] == "failed" and "fix halt" in rec["failure"]
    assert "Fix halt condition for fix-id halt met" in (rundir / "log.lammps").read_text()
    devi = _devi(rundir / "model_devi.out")
    assert devi[-1, 4] > 5.0 and (devi[:-1, 4] <= 5.0).all()  # the first crossing
    assert rec["failed_at_step"] == devi[-1, 0] < 1000


def test_a_committee_of_other_species_or_without_an_artifact_is_one_config_error(
        artifacts, tmp_path, capsys):
    import yaml

    from egraff_lmp.cli import main

    lj = lj_artifact(tmp_path)  # argon only
    for spec, expected in (
            ({"artifact": str(artifacts["mace"]), "committee": [str(lj)]},
             "committee artifact lj.egraff.pt lacks Ge,Te"),
            ({"calculator": "ase.calculators.emt:EMT", "species": ["Ge", "Te"],
              "committee": [str(artifacts["mace"])]}, "'committee' is a list of artifacts")):
        cfg = tmp_path / "bad.yaml"
        cfg.write_text(yaml.safe_dump({"models": {"m": spec}, "datasets": ["gete"]}))
        code = main(["evaluate", str(cfg), "-o", str(tmp_path / "out")])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and expected in err[0], err
        assert not (tmp_path / "out").exists()
