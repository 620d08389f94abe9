"""PaiNN from SchNetPack 2.1.1 (through its one-name torch 2.13 shim): the model file its
trainer writes, recognised by content, deployed with parity against SchNetPack's own ASE
calculator (periodic and molecule, float64 and float32), run in LAMMPS on 1 and 2 ranks, and
what it cannot reproduce refused in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import GETE_TEST
from family_md import (
    assert_equal_on_a_cell_and_a_molecule,
    cli,
    lammps_20_steps_equal_ase_at_step_0,
)

from egraff_lmp.calculator import DeployedCalculator
from egraff_lmp.deploy import artifact as _artifact
from egraff_lmp.deploy.sniff import sniff
from egraff_lmp.io import read_trajectory


@pytest.fixture(scope="module")
def painn(tmp_path_factory):
    from models import train_painn

    root = tmp_path_factory.mktemp("painn")
    return {64: train_painn(root / "f64", 64), 32: train_painn(root / "f32", 32)}


@pytest.fixture(scope="module")
def painn_artifact(painn, tmp_path_factory):
    from egraff_lmp.deploy import deploy

    return deploy(painn[64], tmp_path_factory.mktemp("painn-art") / "painn.egraff.pt",
                  data=GETE_TEST, species=["Ge", "Te"])


def test_schnetpacks_model_file_is_recognised_by_content(painn):
    k = sniff(painn[64])
    assert (k.kind, k.family) == ("torch-save", "schnetpack")


def test_deployed_painn_equals_schnetpacks_own_calculator(painn, painn_artifact):
    from egraff_lmp.deploy.families.schnetpack import _calculator

    meta = _artifact.read_metadata(painn_artifact)
    assert meta["family"] == "schnetpack" and meta["type_names"] == ["Ge", "Te"]
    assert meta["ghost_cutoff"] == pytest.approx(2 * 4.0)  # 2 interactions x cutoff
    assert meta["species_from"] == "--species"
    assert_equal_on_a_cell_and_a_molecule(_calculator(painn[64], 4.0),
                                          DeployedCalculator(painn_artifact))


def test_float32_painn_deploys_within_1e4(painn, tmp_path, capsys):
    code, err = cli(capsys, "deploy", painn[32], "-o", tmp_path / "f32.egraff.pt",
                     "--species", "Ge,Te", "--data", GETE_TEST)
    assert code == 0, err
    meta = _artifact.read_metadata(tmp_path / "f32.egraff.pt")
    assert meta["dtype"] == "float32" and meta["validation"]["parity"]["forces"] < 1e-4


def test_a_float32_painn_runs_where_torchs_default_dtype_is_float64(painn, tmp_path):
    """SchNetPack allocates PaiNN's vector features in torch's default dtype; the artifact
    allocates them in the model's, so a float32 PaiNN also runs beside float64 code."""
    from egraff_lmp.deploy import deploy

    art = deploy(painn[32], tmp_path / "f32.egraff.pt", data=GETE_TEST, species=["Ge", "Te"])
    ref = read_trajectory(GETE_TEST)
    atoms = ref[3].to_atoms(ref.symbols)
    atoms.calc = DeployedCalculator(art)
    want = atoms.get_forces()
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        again = atoms.copy()
        again.calc = DeployedCalculator(art)
        # float32: TorchScript may fuse differently across calls (rounding, not the model)
        np.testing.assert_allclose(again.get_forces(), want, atol=1e-4)
    finally:
        torch.set_default_dtype(old)


def test_species_come_from_the_training_database_or_species_option(painn, tmp_path, capsys):
    code, err = cli(capsys, "deploy", painn[64], "-o", tmp_path / "a.egraff.pt", "--data",
                    GETE_TEST)
    assert code == 0, err
    meta = _artifact.read_metadata(tmp_path / "a.egraff.pt")
    assert meta["type_names"] == ["Ge", "Te"] and meta["species_from"].startswith(
        "training data (train.db")
    alone = tmp_path / "elsewhere" / "best_model"
    alone.parent.mkdir()
    alone.write_bytes(painn[64].read_bytes())
    for extra, words in (([], "--species"), (["--species", "Ge,Qq"], "Qq")):
        code, err = cli(capsys, "deploy", alone, "-o", tmp_path / "x.egraff.pt", *extra)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err


def _edited(src, dst, edit):
    from egraff_lmp.deploy.families.schnetpack import _load_model

    model = _load_model(src)
    edit(model)
    torch.save(model, dst)
    return dst


def _avg(model):
    model.output_modules[0].aggregation_mode = "avg"


def _intensive_mean(model):
    model.postprocessors[1].is_extensive = False


def _no_forces(model):
    del model.output_modules[1]


@pytest.mark.parametrize("edit, words", [(_avg, "aggregation 'avg'"),
                                         (_intensive_mean, "non-extensive mean"),
                                         (_no_forces, "without a Forces output")])
def test_what_the_artifact_cannot_reproduce_is_refused_in_one_line(painn, tmp_path, capsys,
                                                                   edit, words):
    bad = _edited(painn[64], tmp_path / "bad_model", edit)
    code, err = cli(capsys, "deploy", bad, "-o", tmp_path / "x.egraff.pt", "--species",
                     "Ge,Te")
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x.egraff.pt").exists()


@pytest.mark.parametrize("ranks", [1, 2])
def test_painn_runs_20_steps_in_lammps_equal_to_ase_at_step_0(plugin, painn_artifact,
                                                              tmp_path, ranks):
    lammps_20_steps_equal_ase_at_step_0(plugin, painn_artifact, tmp_path, ranks)
