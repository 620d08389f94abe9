"""deploy → check → DeployedCalculator on tiny models trained on real GeTe data."""

from __future__ import annotations

import json
import warnings
import zipfile

import numpy as np
import pytest
import torch
from ase import Atoms
from conftest import FAMILY, GETE_TEST
from models import train_nequip

from egraff_lmp.calculator import DeployedCalculator
from egraff_lmp.cli import main
from egraff_lmp.deploy import artifact as art
from egraff_lmp.deploy import deploy, load_source, validate
from egraff_lmp.deploy.families import Source
from egraff_lmp.deploy.families.mace import (
    _calculator,
    load_pickled_model,
    save_mace_state,
)
from egraff_lmp.errors import EgraffError

warnings.filterwarnings("ignore", message=".*TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD.*")


def _gete_atoms(frame=0):
    d = np.load(GETE_TEST)
    return Atoms(numbers=d["atomic_numbers"], positions=d["pos"][frame], cell=d["cell"],
                 pbc=True)


def _both(calc_a, calc_b, atoms):
    out = []
    for calc in (calc_a, calc_b):
        a = atoms.copy()
        a.calc = calc
        out.append((a.get_potential_energy(), a.get_forces(),
                    a.get_stress() if all(a.pbc) else None))
    return out


@pytest.mark.parametrize("kind", ["mace", "botnet", "nequip", "allegro"])
def test_deployed_artifact_matches_the_family_calculator(kind, models, artifacts):
    meta = art.read_metadata(artifacts[kind])
    assert meta["family"] == FAMILY[kind] and meta["type_names"] == ["Ge", "Te"]
    layers = 1 if kind == "allegro" else 2
    assert meta["r_max"] == 4.0 and meta["num_layers"] == layers
    assert meta["ghost_cutoff"] == (4.0 if kind == "allegro" else 8.0)
    assert meta["dtype"] == "float64" and len(meta["source_sha256"]) == 64
    assert meta["validation"]["parity"]["forces"] <= 1e-6
    reference = load_source(models[kind]).reference()
    ours = DeployedCalculator(artifacts[kind])
    # periodic GeTe frame, a triclinic cell, and a non-periodic cluster cut out of it
    cubic = _gete_atoms(5)
    tri = cubic.copy()
    tri.set_cell(cubic.cell[:] + np.array([[0, 0, 0], [3.0, 0, 0], [-2.0, 1.5, 0]]),
                 scale_atoms=True)
    cluster = cubic[np.linalg.norm(cubic.positions - cubic.positions[0], axis=1) < 6.0]
    cluster.pbc = False
    cluster.cell = None
    for atoms in (cubic, tri, cluster):
        (e1, f1, s1), (e2, f2, s2) = _both(ours, reference, atoms)
        assert abs(e1 - e2) <= 1e-6 * len(atoms)
        assert np.abs(f1 - f2).max() <= 1e-6
        if s1 is not None:
            np.testing.assert_allclose(s1, s2, atol=1e-8)
    assert np.abs(f1).max() > 1e-3  # non-trivial forces were compared


@pytest.mark.parametrize("kind", ["mace", "botnet", "nequip", "allegro"])
def test_symmetry_holds_for_the_deployed_model(kind, artifacts):
    report = validate(artifacts[kind], None, None, ["Ge", "Te"], 4.0, "float64")
    for name in ("rotation", "translation", "permutation"):
        assert report["symmetry"][name]["energy"] <= 1e-6
        assert report["symmetry"][name]["forces"] <= 1e-6


def test_nequip_package_deploys_like_its_checkpoint(models, artifacts, tmp_path):
    import subprocess

    package = tmp_path / "nequip.nequip.zip"
    subprocess.run(["nequip-package", "build", str(models["nequip"]), str(package)],
                   check=True, capture_output=True)
    a = deploy(package, tmp_path / "p.egraff.pt")
    (e1, f1, _), (e2, f2, _) = _both(DeployedCalculator(a), DeployedCalculator(
        artifacts["nequip"]), _gete_atoms(2))
    assert abs(e1 - e2) < 1e-9 and np.abs(f1 - f2).max() < 1e-12


def test_mace_state_round_trip_gives_the_same_artifact_numbers(models, tmp_path):
    state = save_mace_state(load_pickled_model(models["mace"]),
                            tmp_path / "m.mace-state.pt")
    torch.load(state, weights_only=True)  # no pickle of code: tensors and strings only
    a = deploy(state, tmp_path / "s.egraff.pt")
    atoms = _gete_atoms(3)
    (e1, f1, _), (e2, f2, _) = _both(DeployedCalculator(a),
                                     _calculator(load_pickled_model(models["mace"])),
                                     atoms)
    assert abs(e1 - e2) < 1e-9 and np.abs(f1 - f2).max() < 1e-12


class _NotInvariant(torch.nn.Module):
    """Energy depending on the edge vectors' x components: breaks rotation. (Translation
    holds by construction: the energy model sees edge vectors, never absolute positions.)"""

    def forward(self, pos, types, edge_index, shift):
        r = pos[edge_index[1]] - pos[edge_index[0]] + shift
        return torch.zeros(pos.shape[0], dtype=pos.dtype).index_add(0, edge_index[0],
                                                                     torch.cos(r[:, 0]))


def test_failed_validation_names_the_check_and_writes_nothing(tmp_path):
    source = Source(family="mace", energy_model=_NotInvariant(), type_names=["Ge", "Te"],
                    r_max=4.0, num_layers=1, strictly_local=True, dtype=torch.float64,
                    family_version="test")
    draft = art.save(art.script(source), {"format": art.FORMAT, "calling_convention": 1,
                                          "type_names": ["Ge", "Te"], "r_max": 4.0,
                                          "versions": {"torch": torch.__version__}},
                     tmp_path / "bad.egraff.pt")
    with pytest.raises(EgraffError, match=r"symmetry \(rotation\)") as err:
        validate(draft, None, None, ["Ge", "Te"], 4.0, "float64")
    assert "translation" not in str(err.value) and "permutation" not in str(err.value)


def test_deploy_info_and_check_from_the_cli(models, artifacts, capsys):
    assert main(["deploy", "--info", str(artifacts["mace"])]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["versions"]["mace"] and info["created_at"]
    assert main(["deploy", "--check", str(artifacts["mace"]), "--source",
                 str(models["mace"])]) == 0
    assert "all checks passed" in capsys.readouterr().out


def test_calculator_refuses_a_species_the_model_lacks(artifacts):
    atoms = Atoms("GeO", positions=[[0, 0, 0], [2.0, 0, 0]])
    atoms.calc = DeployedCalculator(artifacts["mace"])
    with pytest.raises(EgraffError, match="the model has no species O"):
        atoms.get_potential_energy()


# -- bad inputs: one line, exit 2 -----------------------------------------------------------

def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    _, err = capsys.readouterr()
    return code, err


def test_bad_models_give_one_line_and_exit_2(tmp_path, artifacts, capsys):
    cases = []
    cases.append((["deploy", GETE_TEST, "--family", "mace"], "cannot load as a pickled"))
    torch.save(torch.nn.Linear(2, 2), tmp_path / "linear.model")
    cases.append((["deploy", tmp_path / "linear.model"], "is not a mace-torch model"))
    (tmp_path / "what.bin").write_bytes(b"\0" * 100)
    cases.append((["deploy", tmp_path / "what.bin"], "cannot tell the model family"))
    data = artifacts["mace"].read_bytes()
    (tmp_path / "cut.egraff.pt").write_bytes(data[: len(data) // 2])
    cases.append((["deploy", "--info", tmp_path / "cut.egraff.pt"], "not a complete artifact"))
    (tmp_path / "empty.model").write_bytes(b"")
    cases.append((["deploy", tmp_path / "empty.model"], "empty file"))
    # an artifact made by another torch major version
    old = tmp_path / "old.egraff.pt"
    with zipfile.ZipFile(artifacts["mace"]) as zin, zipfile.ZipFile(old, "w") as zout:
        for item in zin.infolist():
            blob = zin.read(item)
            if item.filename.endswith("/extra/egraff_lmp.json"):
                meta = json.loads(blob)
                meta["versions"]["torch"] = "1.13.1"
                blob = json.dumps(meta).encode()
            zout.writestr(item, blob)
    cases.append((["deploy", "--info", old], "another major version"))
    for argv, message in cases:
        code, err = _run(capsys, *argv)
        assert code == 2, (argv, err)
        assert err.count("\n") == 1 and message in err, (argv, err)


def test_model_whose_type_names_are_not_elements_is_refused(tmp_path, capsys):
    ckpt = train_nequip(tmp_path / "typenames", "nequip_typenames")
    code, err = _run(capsys, "deploy", ckpt)
    assert code == 2 and err.count("\n") == 1
    assert "species are not given: type names GeA, TeB are not element symbols" in err


def test_predict_then_compare_gives_the_static_errors(artifacts, tmp_path, capsys):
    from egraff_lmp.io import read_trajectory

    out = tmp_path / "pred.npz"
    assert main(["predict", str(artifacts["allegro"]), str(GETE_TEST), "-o", str(out),
                 "--stop", "4"]) == 0
    pred = read_trajectory(out)
    calc = DeployedCalculator(artifacts["allegro"])
    atoms = _gete_atoms(3)
    atoms.calc = calc
    assert pred[3].energy == pytest.approx(atoms.get_potential_energy(), abs=1e-9)
    np.testing.assert_allclose(pred[3].forces, atoms.get_forces(), atol=1e-12)
    capsys.readouterr()
    assert main(["compare", str(out), "--ref", str(GETE_TEST), "--stop", "4", "--json",
                 str(tmp_path / "s.json")]) == 0
    static = json.loads((tmp_path / "s.json").read_text())
    ref = read_trajectory(GETE_TEST)
    e_mae = np.mean([abs(pred[k].energy - ref[k].energy) for k in range(4)])
    assert static["static"] is True and static["e_mae_ev"] == pytest.approx(e_mae)
