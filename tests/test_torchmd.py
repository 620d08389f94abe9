"""TorchMD-Net (equivariant transformer) checkpoints from ``torchmd-train``: recognised by
content, deployed with parity against TorchMD-Net's own forward (periodic and molecule,
float64 and float32), its reach (layers + neighbour embedding) honoured on 2 LAMMPS ranks,
and what it cannot reproduce refused in one line."""

from __future__ import annotations

import shutil

import pytest
import torch
from ase import Atoms
from conftest import GETE_TEST
from family_md import (
    assert_equal_on_a_cell_and_a_molecule,
    cli,
    lammps_20_steps_equal_ase_at_step_0,
)

from egraff_lmp.calculator import DeployedCalculator
from egraff_lmp.deploy import artifact as _artifact
from egraff_lmp.deploy.sniff import sniff


@pytest.fixture(scope="module")
def tmd(tmp_path_factory):
    from models import train_torchmd

    root = tmp_path_factory.mktemp("torchmd")
    return {64: train_torchmd(root / "f64", 64), 32: train_torchmd(root / "f32", 32)}


@pytest.fixture(scope="module")
def tmd_artifact(tmd, tmp_path_factory):
    from egraff_lmp.deploy import deploy

    return deploy(tmd[64], tmp_path_factory.mktemp("tmd-art") / "tmd.egraff.pt",
                  data=GETE_TEST)


def test_a_torchmd_train_checkpoint_is_told_from_a_nequip_one_by_content(tmd, models):
    k = sniff(tmd[64])
    assert (k.kind, k.family) == ("torch-save", "torchmd")
    assert sniff(models["nequip"]).family == "nequip"  # both are Lightning *.ckpt


def test_deployed_et_equals_torchmd_nets_own_forward(tmd, tmd_artifact):
    from egraff_lmp.deploy.families.torchmd import TorchMDNetReference, _load_net

    meta = _artifact.read_metadata(tmd_artifact)
    assert meta["family"] == "torchmd" and meta["type_names"] == ["Ge", "Te"]
    assert meta["ghost_cutoff"] == pytest.approx(3 * 4.0)  # 2 layers + neighbour embedding
    assert meta["species_from"].startswith("training data")
    assert meta["validation"]["parity"]["forces"] < 1e-6
    assert_equal_on_a_cell_and_a_molecule(TorchMDNetReference(_load_net(tmd[64])),
                                          DeployedCalculator(tmd_artifact))


def test_float32_et_deploys_within_1e4(tmd, tmp_path, capsys):
    code, err = cli(capsys, "deploy", tmd[32], "-o", tmp_path / "f32.egraff.pt", "--data",
                     GETE_TEST)
    assert code == 0, err
    v = _artifact.read_metadata(tmp_path / "f32.egraff.pt")
    assert v["dtype"] == "float32" and v["validation"]["parity"]["forces"] < 1e-4


def test_species_come_from_species_option_when_the_training_data_is_gone(tmd, tmp_path,
                                                                          capsys, monkeypatch):
    alone = shutil.copy(tmd[64], tmp_path / "model.ckpt")
    monkeypatch.chdir(tmp_path)
    code, err = cli(capsys, "deploy", alone, "-o", tmp_path / "a.egraff.pt")
    assert code == 2 and "--species" in err and len(err.strip().splitlines()) == 1
    code, err = cli(capsys, "deploy", alone, "-o", tmp_path / "a.egraff.pt", "--species",
                     "Ge,Xx")
    assert code == 2 and "Xx" in err and len(err.strip().splitlines()) == 1
    code, err = cli(capsys, "deploy", alone, "-o", tmp_path / "a.egraff.pt", "--species",
                     "Ge,Te", "--data", GETE_TEST)
    assert code == 0, err
    assert _artifact.read_metadata(tmp_path / "a.egraff.pt")["species_from"] == "--species"


def _edited(src, dst, hp=None, state=None):
    ck = torch.load(src, map_location="cpu", weights_only=False)
    ck["hyper_parameters"].update(hp or {})
    for k, v in (hp or {}).items():
        if v is None:
            del ck["hyper_parameters"][k]
    ck["state_dict"].update(state or {})
    torch.save(ck, dst)
    return dst


@pytest.mark.parametrize("edit, words", [
    ({"state": {"model.mean": torch.tensor(5.0, dtype=torch.float64)}}, "global energy mean"),
    ({"hp": {"cutoff_upper": None}}, "no cutoff_upper"),
    ({"hp": {"reduce_op": "mean"}}, "reduce_op"),
    ({"hp": {"model": "tensornet"}}, "'tensornet'"),
])
def test_what_the_artifact_cannot_reproduce_is_refused_in_one_line(tmd, tmp_path, capsys,
                                                                   edit, words):
    bad = _edited(tmd[64], tmp_path / "bad.ckpt", **edit)
    code, err = cli(capsys, "deploy", bad, "-o", tmp_path / "x.egraff.pt", "--species",
                     "Ge,Te")
    assert code == 2 and words in err, err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.egraff.pt").exists()


@pytest.mark.parametrize("ranks", [1, 2])
def test_et_runs_20_steps_in_lammps_equal_to_ase_at_step_0(plugin, tmd_artifact, tmp_path,
                                                           ranks):
    lammps_20_steps_equal_ase_at_step_0(plugin, tmd_artifact, tmp_path, ranks)


def test_the_declared_reach_is_the_ets_true_reach(tmd_artifact):
    """Layers x r_max (8 Å) would be short: on a chain of atoms 3 Å apart (0.75 r_max),
    the third neighbour (9 Å) still changes atom 0's energy through the neighbour
    embedding's extra hop; the fourth (12 Å, beyond the declared 12 Å reach: a strict
    cutoff) does not."""
    meta = _artifact.read_metadata(tmd_artifact)
    assert meta["ghost_cutoff"] == pytest.approx(12.0)
    assert meta["ghost_cutoff"] > meta["r_max"] * meta["num_layers"]
    calc = DeployedCalculator(tmd_artifact)
    chain = Atoms("GeTeGeTeGeTe", positions=[[3.0 * k, 0, 0] for k in range(6)])
    chain.calc = calc
    e0 = chain.get_potential_energies()[0]
    change = []
    for m in range(1, 6):
        moved = chain.copy()
        moved.positions[m] += [0.01, 0.02, 0.0]
        moved.calc = calc
        change.append(abs(moved.get_potential_energies()[0] - e0))
    assert change[2] > 1e-12  # 9 Å: beyond r_max x layers, within the reach
    assert change[3] == change[4] == 0.0  # 12 Å and 15 Å


def test_a_lightning_checkpoint_of_no_known_family_is_refused_in_one_line(tmp_path, capsys):
    """Another Lightning model's *.ckpt: neither nequip-train's nor torchmd-train's layout."""
    ckpt = {"epoch": 3, "pytorch-lightning_version": "2.6.6",
            "hyper_parameters": {"model": "my-net", "cutoff": 5.0},
            "state_dict": {"net.layer.weight": torch.zeros(2, 2)}}
    torch.save(ckpt, tmp_path / "last.ckpt")
    assert sniff(tmp_path / "last.ckpt").family is None
    code, err = cli(capsys, "deploy", tmp_path / "last.ckpt", "-o", tmp_path / "x.egraff.pt")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "last.ckpt" in err
