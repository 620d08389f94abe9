"""Model heads: a two-head MACE (mace_run_train --heads; head md17 on MD17 ethanol, head acac
on acetylacetone: inputs/models/reproduce_heads.py) deployed into one artifact, each head
checked against mace-torch's own calculator, chosen by ``head NAME`` in pair_style egraff
(real LAMMPS, 1 and 2 ranks, every mode), by ``DeployedCalculator(head=)`` and ``predict
--head``; a multi-head artifact without a head is refused in one line naming its heads."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
import torch
from conftest import ACAC, ROOT
from test_plugin import run_lmp
from test_staged import _lmp_error

from egraff_lmp.calculator import DeployedCalculator
from egraff_lmp.deploy.artifact import read_metadata
from egraff_lmp.errors import EgraffError

TASKS = ROOT / "inputs" / "models" / "tasks"
STATE = TASKS / "ethanol-acac-2head-mace.mace-state.pt"
ARTIFACT = TASKS / "ethanol-acac-2head-mace.egraff.pt"
HEADS = ["md17", "acac"]


def _molecules(n=(2, 2, 1), box=(15.0, 15.0, 9.0)):
    """Acetylacetone molecules (DFT frames of the test set) on a grid in a periodic box
    (Å), so that every mode and rank count has work and ghosts."""
    frames = ase.io.read(ACAC, ":8")
    out = None
    k = 0
    for ix in range(n[0]):
        for iy in range(n[1]):
            for iz in range(n[2]):
                m = frames[k].copy()
                k += 1
                m.positions += -m.positions.mean(0) + (np.array([ix, iy, iz]) + 0.5) * \
                    np.array(box) / np.array(n)
                out = m if out is None else out + m
    out.cell = np.diag(box)
    out.pbc = True
    out.wrap()
    return out


def _calc(head):
    return DeployedCalculator(ARTIFACT, head=head)


def test_deploy_records_the_heads_and_checks_each_against_mace_torch():
    meta = read_metadata(ARTIFACT)
    assert meta["heads"] == HEADS and "default_head" not in meta
    for head in HEADS:
        parity = meta["validation"]["heads"][head]["parity"]
        assert parity["forces"] < 1e-4 and parity["atom_energies"] < 1e-4, (head, parity)
        assert "symmetry" in meta["validation"]["heads"][head]


def test_each_head_equals_mace_torchs_calculator_with_that_head_and_the_heads_differ():
    from egraff_lmp.deploy.checks import parity
    from egraff_lmp.deploy.families.mace import _calculator, load_mace_state

    atoms = _molecules()
    results = {}
    for head in HEADS:
        # float32: per-atom energies are the test (the 60-atom total, -2.5e4 eV, rounds by
        # 1e-2 eV in mace's float32 sum)
        p = parity(_calc(head), _calculator(load_mace_state(STATE), head), [atoms])
        assert p["forces"] < 1e-4 and p["atom_energies"] < 1e-4, (head, p)
        ours = atoms.copy()
        ours.calc = _calc(head)
        results[head] = ours.get_potential_energy(), ours.get_forces()
    # two references, two readouts: eV per atom apart, forces apart
    assert abs(results["md17"][0] - results["acac"][0]) / len(atoms) > 1.0
    assert np.abs(results["md17"][1] - results["acac"][1]).max() > 0.05


@pytest.mark.parametrize("head,expected", [
    (None, "a model with 2 heads (md17, acac): name the one to use (head NAME)"),
    ("pt_head", "the model has no head pt_head (its heads: md17, acac)"),
])
def test_a_multi_head_artifact_without_a_known_head_is_one_error_naming_its_heads(head,
                                                                                  expected):
    with pytest.raises(EgraffError) as e:
        DeployedCalculator(ARTIFACT, head=head)
    assert str(e.value) == f"{ARTIFACT}: {expected}"


def test_a_head_asked_of_a_model_without_heads_is_refused():
    path = ROOT / "inputs" / "models" / "gete-allegro.egraff.pt"
    with pytest.raises(EgraffError, match="head md17 asked for, but the allegro model has "
                                          "no heads"):
        DeployedCalculator(path, head="md17")


def test_calculators_sharing_one_artifact_keep_their_own_heads():
    from egraff_lmp.deploy.artifact import load

    art = load(ARTIFACT)
    a, b = _molecules(), _molecules()
    a.calc = DeployedCalculator(art, head="md17")
    b.calc = DeployedCalculator(art, head="acac")  # selects acac on the shared module
    e_md17 = a.get_potential_energy()
    alone = _molecules()
    alone.calc = _calc("md17")
    assert e_md17 == pytest.approx(alone.get_potential_energy(), abs=1e-9)
    assert b.get_potential_energy() != pytest.approx(e_md17, abs=1.0)


def test_predict_head_evaluates_that_head(tmp_path):
    from egraff_lmp.cli import main

    for head in HEADS:
        assert main(["predict", str(ARTIFACT), str(ACAC), "--head", head, "--stop", "3",
                     "-o", str(tmp_path / f"{head}.npz")]) == 0
        energy = np.load(tmp_path / f"{head}.npz")["energy"].ravel()
        frames = ase.io.read(ACAC, ":3")
        for e, a in zip(energy, frames):
            a.calc = _calc(head)
            assert e == pytest.approx(a.get_potential_energy(), abs=1e-9)


def test_predict_without_head_is_one_error_line(tmp_path, capsys):
    from egraff_lmp.cli import main

    assert main(["predict", str(ARTIFACT), str(ACAC), "-o", str(tmp_path / "p.npz")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "name the one to use (head NAME)" in err[0], err
    assert not (tmp_path / "p.npz").exists()


HEAD_INPUT = """
units metal
atom_style atomic
atom_modify map array
boundary p p p
read_data mol.data
plugin load ${plugin}
pair_style egraff ${artifact} mode ${mode} head ${head}
pair_coeff * * C H O
thermo_style custom step pe press
thermo_modify format float %20.15g
dump d all custom 1 dump.${tag} id fx fy fz
dump_modify d sort id format float %20.15g
run 0
"""


def _write_data(tmp_path, atoms):
    ase.io.write(tmp_path / "mol.data", atoms, format="lammps-data", specorder=["C", "H", "O"],
                 masses=True)


@pytest.mark.parametrize("ranks,mode", [(1, "images"), (2, "ghosts"), (2, "staged")])
def test_pair_style_head_runs_that_head_in_lammps(plugin, tmp_path, ranks, mode):
    from test_plugin import read_dump_forces

    from egraff_lmp.io.lammps_log import read_thermo

    atoms = _molecules()
    _write_data(tmp_path, atoms)
    for head in HEADS:
        log = run_lmp(tmp_path, HEAD_INPUT, ranks, plugin=plugin, artifact=ARTIFACT, mode=mode,
                      head=head, tag=head)
        ref = atoms.copy()
        ref.calc = _calc(head)
        pe = read_thermo(log)[-1]["PotEng"][0]
        assert pe == pytest.approx(ref.get_potential_energy(), abs=1e-4 * len(atoms)), head
        np.testing.assert_allclose(read_dump_forces(tmp_path / f"dump.{head}"),
                                   ref.get_forces(), atol=1e-4, err_msg=head)
    assert np.abs(read_dump_forces(tmp_path / "dump.md17")
                  - read_dump_forces(tmp_path / "dump.acac")).max() > 0.05


@pytest.mark.parametrize("style,expected", [
    ("egraff {artifact}", "has 2 heads (md17, acac): name the one to use with head NAME"),
    ("egraff {artifact} head pt_head", "has no head pt_head (its heads: md17, acac)"),
    ("egraff {allegro} head acac", "head acac asked for, but {allegro} (allegro) has no heads"),
])
def test_pair_style_without_a_known_head_is_one_error_line(plugin, tmp_path, style, expected):
    allegro = ROOT / "inputs" / "models" / "gete-allegro.egraff.pt"
    _write_data(tmp_path, _molecules())
    text = HEAD_INPUT.replace("pair_style egraff ${artifact} mode ${mode} head ${head}",
                              "pair_style " + style.format(artifact=ARTIFACT, allegro=allegro))
    error = _lmp_error(tmp_path, text, plugin=plugin, tag="x")
    assert expected.format(allegro=allegro) in error, error


def test_a_mace_lammps_file_deploys_with_its_chosen_head_as_default(tmp_path):
    """mace_create_lammps_model --head acac: the file's head is the artifact's default (it
    used to run head 0 silently); the other head stays selectable."""
    import subprocess
    import sys

    from egraff_lmp.deploy import deploy

    # the pickled model as mace_run_train writes it, in a fresh process (whether e3nn's
    # generated code pickles depends on process-wide settings other tests change)
    code = ("import torch; from egraff_lmp.deploy.families.mace import load_mace_state; "
            f"torch.save(load_mace_state({str(STATE)!r}), 'two-head.model')")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run([sys.executable, "-m", "mace.cli.create_lammps_model", "two-head.model",
                        "--head", "acac", "--dtype", "float32"], cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    out = deploy(tmp_path / "two-head.model-lammps.pt", tmp_path / "two-head.egraff.pt",
                 data=ACAC)
    meta = read_metadata(out)
    assert meta["heads"] == HEADS and meta["default_head"] == "acac"
    atoms = _molecules()
    for head, asked in (("acac", None), ("md17", "md17")):
        a, ref = atoms.copy(), atoms.copy()
        a.calc = DeployedCalculator(out, head=asked)
        ref.calc = _calc(head)
        np.testing.assert_allclose(a.get_forces(), ref.get_forces(), atol=1e-4)


def test_run_engines_take_the_head_from_the_pair_style_line(tmp_path):
    """The ASE engine and the callback engine read ``head NAME`` as the plugin does."""
    from egraff_lmp.run.ase_engine import AseEngine
    from egraff_lmp.run.engines import head_of

    assert head_of(["a.pt", "mode", "staged", "head", "acac"]) == "acac"
    assert head_of(["a.pt", "b.pt", "devi_every", "5"]) is None
    _write_data(tmp_path, _molecules())
    (tmp_path / "in.lmp").write_text(
        "units metal\natom_style atomic\nread_data mol.data\n"
        f"pair_style egraff {ARTIFACT} head acac\npair_coeff * * C H O\n"
        "velocity all create 300 1\nfix 1 all nve\ntimestep 0.0005\nrun 2\n")
    engine = AseEngine()
    proto = engine.protocol(tmp_path / "in.lmp", tmp_path, {})
    assert proto.head == "acac" and engine.calculator(proto).head == "acac"


def test_evaluate_runs_each_head_as_its_own_column_and_refuses_a_model_without_one(
        tmp_path, capsys):
    """Two columns of one artifact, head acac (trained on acetylacetone) and head md17
    (ethanol's reference), on the acetylacetone task; a column without a head is one config
    error line naming the heads, before anything runs."""
    import yaml

    from egraff_lmp.cli import main
    from egraff_lmp.evaluate.records import Evaluation

    cfg = {"models": {"acac": {"artifact": str(ARTIFACT), "head": "acac"},
                      "md17": {"artifact": str(ARTIFACT), "head": "md17"}},
           "datasets": ["acetylacetone"],
           "protocol": {"runs": 1, "steps": 8, "static_frames": 3}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["evaluate", str(tmp_path / "cfg.yaml"), "-o", str(tmp_path / "out")]) == 0
    m = Evaluation.load(tmp_path / "out" / "metrics.json")
    assert m.models["acac"].head == "acac" and m.models["md17"].head == "md17"
    e_acac = m.cell("acac", "acetylacetone").static.e_mae_mev
    e_md17 = m.cell("md17", "acetylacetone").static.e_mae_mev
    # meV per molecule (15 atoms): head md17 answers with ethanol's reference energies
    assert e_acac < 1500 and e_md17 > 100 * e_acac, (e_acac, e_md17)
    log = (tmp_path / "out" / "runs" / "md17" / "acetylacetone" / "run-0" / "log.lammps")
    assert "pair_style egraff: mode images on 1 rank(s), head md17" in log.read_text()

    del cfg["models"]["md17"]["head"]
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "bad.yaml"), "-o", str(tmp_path / "out2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model md17: " in err[0] and "(md17, acac)" in err[0], err
    assert not (tmp_path / "out2").exists()


def test_the_worked_input_runs_the_head_it_names(tmp_path, capsys):
    """inputs/acac-heads.in as shipped, with its default head (acac) and with head md17."""
    import json

    from egraff_lmp.cli import main

    for head in ("acac", "md17"):
        rundir = tmp_path / head
        assert main(["run", str(ROOT / "inputs" / "acac-heads.in"), "-o", str(rundir),
                     "--var", "steps=20", "--var", f"head={head}", "--no-progress"]) == 0
        rec = json.loads((rundir / "run.json").read_text())
        assert rec["status"] == "ok" and rec["steps_done"] == 20
        assert f"mode images on 1 rank(s), head {head}" in (rundir / "log.lammps").read_text()


@pytest.fixture(scope="module")
def compiled_acac(tmp_path_factory):
    """The two-head artifact compiled for head acac (its one-call program: the stages'
    compilation is the compiled-stages tests' business, tests/test_plugin_compiled.py)."""
    from egraff_lmp.deploy import source_of
    from egraff_lmp.deploy.compiled import compile_source, traceable

    with traceable():
        source = source_of(read_metadata(ARTIFACT), ARTIFACT, STATE)
    source.stages = None
    return compile_source(source, ARTIFACT, tmp_path_factory.mktemp("heads") /
                          "acac.egraff.pt2", head="acac")


def test_a_package_is_compiled_for_one_head_and_refuses_another(compiled_acac):
    from egraff_lmp.deploy.compiled import compile_artifact

    meta = read_metadata(compiled_acac)
    assert meta["compiled"]["for_head"] == "acac" and meta["heads"] == HEADS
    atoms = _molecules()
    a, ref = atoms.copy(), atoms.copy()
    a.calc = DeployedCalculator(compiled_acac)
    ref.calc = _calc("acac")
    np.testing.assert_allclose(a.get_forces(), ref.get_forces(), atol=1e-4)
    assert a.calc.head == "acac"
    with pytest.raises(EgraffError, match="compiled for head acac only: compile it again "
                                          "with --head md17"):
        DeployedCalculator(compiled_acac, head="md17")
    # a multi-head artifact without --head is refused before anything compiles
    with pytest.raises(EgraffError, match=r"a model with 2 heads \(md17, acac\)"):
        compile_artifact(ARTIFACT, STATE)


def test_pair_style_runs_a_packages_head_and_refuses_another(plugin, compiled_acac,
                                                              tmp_path):
    from test_plugin import read_dump_forces

    atoms = _molecules()
    _write_data(tmp_path, atoms)
    text = HEAD_INPUT.replace(" head ${head}", "")
    log = run_lmp(tmp_path, text, 1, plugin=plugin, artifact=compiled_acac, mode="images",
                  tag="pkg")
    assert "head acac" in log.read_text()
    ref = atoms.copy()
    ref.calc = _calc("acac")
    np.testing.assert_allclose(read_dump_forces(tmp_path / "dump.pkg"), ref.get_forces(),
                               atol=1e-4)
    error = _lmp_error(tmp_path, HEAD_INPUT, plugin=plugin, artifact=compiled_acac,
                       mode="images", head="md17", tag="x")
    assert "was compiled for head acac only: compile it again with --head md17" in error


def test_another_librarys_default_dtype_does_not_break_a_float32_head(tmp_path):
    """mace-torch's float64 calculator sets torch's process-wide default dtype to float64;
    the float32 two-head model (whose head mask is made without a dtype) still runs, in
    Python and in the plugin inside the same process, and gives the same forces."""
    from egraff_lmp.cli import main
    from egraff_lmp.io import read_trajectory

    atoms = _molecules()
    atoms.calc = _calc("acac")
    before = atoms.get_forces()
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        again = _molecules()
        again.calc = _calc("acac")
        np.testing.assert_array_equal(again.get_forces(), before)
        assert torch.get_default_dtype() == torch.float64  # left as it was found
        assert main(["run", str(ROOT / "inputs" / "acac-heads.in"), "-o", str(tmp_path / "r"),
                     "--var", "steps=5", "--no-progress"]) == 0
    finally:
        torch.set_default_dtype(previous)
    traj = read_trajectory(tmp_path / "r" / "dump.lammpstrj")
    assert np.isfinite(traj[0].forces).all()


def test_a_committee_takes_the_head_and_may_mix_compiled_and_torchscript(plugin,
                                                                         compiled_acac,
                                                                         tmp_path):
    """pair_style egraff A PACKAGE head acac devi_every 1: the member (the package of the
    same model and head, compiled) deviates from A by float32 rounding only, while the same
    committee on head md17 cannot be made (the package is compiled for acac)."""
    from egraff_lmp.evaluate.deviation import read_model_devi

    _write_data(tmp_path, _molecules())
    text = HEAD_INPUT.replace("${artifact} mode", "${artifact} ${extra} mode")
    run_lmp(tmp_path, text, 1, plugin=plugin, artifact=ARTIFACT, mode="images", head="acac",
            tag="c", extra=f"{compiled_acac} devi_every 1 devi_file devi.out")
    devi = read_model_devi(tmp_path / "devi.out")
    assert devi["step"].tolist() == [0] and devi["max_devi_f"][0] < 1e-4
    error = _lmp_error(tmp_path, text, plugin=plugin, artifact=ARTIFACT, mode="images",
                       head="md17", tag="c",
                       extra=f"{compiled_acac} devi_every 1 devi_file devi.out")
    assert "compiled for head acac only" in error
