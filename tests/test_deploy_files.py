"""``egraff-lmp deploy model.pt``: the family is read from the file's content, and the
deployable files the families' own tools write are accepted (MACE's ``*-lammps.pt`` from
``mace_create_lammps_model``), each with parity against the family's own evaluation of that
same file."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import GETE_TEST

from egraff_lmp.cli import main
from egraff_lmp.deploy.sniff import sniff


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    _, err = capsys.readouterr()
    return code, err


@pytest.fixture(scope="module")
def lammps_file(models, tmp_path_factory):
    """The tiny MACE model through mace-torch's own mace_create_lammps_model."""
    d = tmp_path_factory.mktemp("mace-lammps")
    model = shutil.copy(models["mace"], d / "mace.model")
    r = subprocess.run([sys.executable, "-m", "mace.cli.create_lammps_model", model,
                        "--dtype", "float64"], cwd=d, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    return d / "mace.model-lammps.pt"


def test_the_family_is_read_from_the_content_not_the_name(models, tmp_path, capsys):
    model = torch.load(models["mace"], map_location="cpu", weights_only=False)
    torch.save(model, tmp_path / "model.pt")
    assert sniff(tmp_path / "model.pt").family == "mace"
    assert sniff(tmp_path / "model.pt").kind == "torch-save"
    code, err = _run(capsys, "deploy", tmp_path / "model.pt", "-o", tmp_path / "a.egraff.pt",
                     "--data", GETE_TEST)
    assert code == 0, err
    info = json.loads(subprocess.run([sys.executable, "-m", "egraff_lmp.cli", "deploy",
                                      "--info", tmp_path / "a.egraff.pt"], check=True,
                                     capture_output=True, text=True).stdout)
    assert info["family"] == "mace" and info["stages"] is not None
    # egraff-lmp's own MACE state file, under a name that says nothing
    from egraff_lmp.deploy.families.mace import save_mace_state

    state = save_mace_state(model, tmp_path / "weights.pt")
    assert sniff(state).family == "mace"
    code, err = _run(capsys, "deploy", state, "-o", tmp_path / "s.egraff.pt", "--data",
                     GETE_TEST)
    assert code == 0, err


def test_maces_lammps_file_deploys_with_parity_against_its_own_forward(lammps_file, tmp_path,
                                                                       capsys):
    from egraff_lmp.calculator import DeployedCalculator
    from egraff_lmp.deploy.families.mace import LammpsMACECalculator, load_lammps_file

    k = sniff(lammps_file)
    assert (k.kind, k.family) == ("torchscript", "mace")
    renamed = shutil.copy(lammps_file, tmp_path / "model.pt")  # the name says nothing
    code, err = _run(capsys, "deploy", renamed, "-o", tmp_path / "l.egraff.pt", "--data",
                     GETE_TEST)
    assert code == 0, err
    # the artifact against the file's own forward, on a periodic GeTe frame, in float64
    from egraff_lmp.io import read_trajectory

    ref = read_trajectory(GETE_TEST)
    atoms = ref[3].to_atoms(ref.symbols)
    atoms.calc = LammpsMACECalculator(load_lammps_file(lammps_file))
    want_f, want_e = atoms.get_forces(), atoms.get_potential_energies()
    atoms.calc = DeployedCalculator(tmp_path / "l.egraff.pt")
    assert np.abs(atoms.get_forces() - want_f).max() < 1e-6
    assert np.abs(atoms.get_potential_energies() - want_e).max() < 1e-6
    meta = json.loads(subprocess.run([sys.executable, "-m", "egraff_lmp.cli", "deploy",
                                      "--info", tmp_path / "l.egraff.pt"], check=True,
                                     capture_output=True, text=True).stdout)
    assert meta["stages"] is None and "mace_create_lammps_model" in meta["stages_unavailable"]


def test_files_that_cannot_be_deployed_give_one_line(artifacts, tmp_path, capsys):
    class Twice(torch.nn.Module):
        def forward(self, x):
            return 2 * x

    torch.export.save(torch.export.export(Twice(), (torch.ones(3),)), tmp_path / "m.pt2")
    torch.save({"weights": torch.ones(2)}, tmp_path / "state.pt")
    torch.jit.save(torch.jit.script(Twice()), tmp_path / "script.pt")
    cases = [(tmp_path / "m.pt2", "cannot be wrapped in TorchScript: deploy the checkpoint"),
             (artifacts["mace"], "already an egraff-lmp artifact"),
             (tmp_path / "state.pt", "cannot tell the model family from the file's content"),
             (tmp_path / "script.pt", "cannot tell the model family from the file's content")]
    for path, message in cases:
        code, err = _run(capsys, "deploy", path, "-o", tmp_path / "out.egraff.pt")
        assert code == 2 and message in err and err.count("\n") == 1, (path, err)
        assert not (tmp_path / "out.egraff.pt").exists()


def _nequip_torchscript(ckpt, out):
    """A ``*.nequip.pth`` the way nequip-compile --mode torchscript writes it: nequip's own
    ``save_torchscript_model`` on the checkpoint's model with its metadata (nequip-compile
    itself refuses TorchScript on torch >= 2.10)."""
    code = f"""
import warnings; warnings.simplefilter("ignore")
from nequip.model.saved_models import load_saved_model
from nequip.model.inference_models.torchscript import save_torchscript_model
from nequip.scripts.compile import _EAGER_MODEL_KEY, _SOLE_MODEL_KEY
from nequip.utils.global_state import get_latest_global_state, set_global_state
set_global_state()
model = load_saved_model({str(ckpt)!r}, _EAGER_MODEL_KEY, None)[_SOLE_MODEL_KEY]
meta = dict(model.metadata)
meta.update(get_latest_global_state(only_metadata_related=True))
meta = {{k: str(int(v)) if isinstance(v, bool) else v for k, v in meta.items()}}
save_torchscript_model(model, meta, {str(out)!r}, "cpu")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    return out


@pytest.mark.parametrize("kind", ["nequip", "allegro"])
def test_nequips_compiled_torchscript_deploys_with_parity(kind, models, tmp_path, capsys):
    from egraff_lmp.calculator import DeployedCalculator
    from egraff_lmp.deploy.families.nequip import _compiled_calculator
    from egraff_lmp.io import read_trajectory

    assert sniff(models[kind]).family == "nequip"  # the Lightning checkpoint, by content
    pth = _nequip_torchscript(models[kind], tmp_path / f"{kind}.nequip.pth")
    assert sniff(pth).family == "nequip"
    renamed = shutil.copy(pth, tmp_path / "model.pt")
    code, err = _run(capsys, "deploy", renamed, "-o", tmp_path / "n.egraff.pt", "--data",
                     GETE_TEST)
    assert code == 0, err
    ref = read_trajectory(GETE_TEST)
    atoms = ref[5].to_atoms(ref.symbols)
    atoms.calc = _compiled_calculator(pth)  # nequip's own evaluation of the same file
    want = atoms.get_forces()
    atoms.calc = DeployedCalculator(tmp_path / "n.egraff.pt")
    assert np.abs(atoms.get_forces() - want).max() < 1e-6  # float64 models
    meta = json.loads(subprocess.run([sys.executable, "-m", "egraff_lmp.cli", "deploy",
                                      "--info", tmp_path / "n.egraff.pt"], check=True,
                                     capture_output=True, text=True).stdout)
    assert meta["family"] == kind
