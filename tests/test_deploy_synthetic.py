"""deploy without --data: the synthetic validation structures are physical (covalent
distances, condensed-matter densities), the force tolerances grow with the forces, and a
failure on them says so and suggests --data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.data import atomic_numbers, covalent_radii
from conftest import ROOT

from egraff_lmp.cli import main
from egraff_lmp.deploy import artifact as art
from egraff_lmp.deploy import checks, validate
from egraff_lmp.deploy.families import Source
from egraff_lmp.errors import EgraffError

STUDY_PAINN = ROOT / "tests" / "data" / "Logs" / "PaiNN" / "GeTe" / "best_inference_model"


def test_the_study_s_own_trained_painn_deploys_without_data(tmp_path, capsys):
    # on the former synthetic cells (atoms 1.8 Å apart, 20 Å³/atom) its float32 forces
    # differed from SchNetPack's by 4.6e-3 eV/Å and deploy refused it
    out = tmp_path / "painn.egraff.pt"
    assert main(["deploy", str(STUDY_PAINN), "--species", "Ge,Te", "-o", str(out)]) == 0
    assert "parity vs the family calculator" in capsys.readouterr().out
    meta = art.read_metadata(out)
    assert meta["type_names"] == ["Ge", "Te"] and meta["dtype"] == "float32"
    assert "random cells" in meta["validation"]["configurations"]


@pytest.mark.parametrize("elements", [["Ge", "Te"], ["Li", "P", "S"], ["C", "H", "O"],
                                      ["Si"]])
def test_synthetic_cells_keep_atoms_a_bond_apart_at_a_condensed_density(elements):
    for scale in (0.9, 1.1):
        atoms = checks.random_configuration(elements, 5.0, seed=3, scale=scale)
        d = atoms.get_all_distances(mic=True)
        r = covalent_radii[[atomic_numbers[s] for s in atoms.get_chemical_symbols()]]
        bond = r[:, None] + r[None, :]
        off = ~np.eye(len(atoms), dtype=bool)
        assert (d[off] >= checks.MIN_BOND * bond[off] - 1e-9).all()
        per_atom = atoms.get_volume() / len(atoms)
        assert per_atom == pytest.approx(checks.volume_per_atom(elements) * scale**3)
        assert per_atom >= 0.9**3 * checks.MIN_VOLUME_PER_ATOM - 1e-9


def test_gete_synthetic_density_is_that_of_the_cpmd_liquid():
    # GeTe4 CPMD: 216 atoms in (19.1 Å)³, 32.3 Å³/atom
    assert checks.volume_per_atom(["Ge", "Te"]) == pytest.approx(19.1**3 / 216, rel=0.03)


def test_force_tolerance_grows_with_the_forces_in_float32_only():
    assert checks.force_tolerance("float32", 1.0) == 1e-4
    assert checks.force_tolerance("float32", 100.0) == pytest.approx(2e-3)
    assert checks.force_tolerance("float64", 100.0) == 1e-6


class _RotationVariant(torch.nn.Module):
    """Per-atom energies from the edge vectors' x components: not rotation-invariant."""

    def forward(self, pos, types, edge_index, shift):
        r = pos[edge_index[1]] - pos[edge_index[0]] + shift
        return torch.zeros(pos.shape[0], dtype=pos.dtype).index_add(0, edge_index[0],
                                                                     torch.cos(r[:, 0]))


def test_a_failure_on_synthetic_cells_says_so_and_suggests_data(tmp_path):
    source = Source(family="mace", energy_model=_RotationVariant(), type_names=["Ge", "Te"],
                    r_max=4.0, num_layers=1, strictly_local=True, dtype=torch.float64,
                    family_version="test")
    draft = art.save(art.script(source), {"format": art.FORMAT, "calling_convention": 1,
                                          "type_names": ["Ge", "Te"], "r_max": 4.0,
                                          "versions": {"torch": torch.__version__}},
                     tmp_path / "bad.egraff.pt")
    with pytest.raises(EgraffError, match=r"random cells.*synthetic.*--data") as err:
        validate(draft, None, None, ["Ge", "Te"], 4.0, "float64")
    assert "symmetry (rotation)" in str(err.value)
    with pytest.raises(EgraffError) as err:  # on real frames: no such hint
        validate(draft, None, ROOT / "inputs" / "gete" / "gete_test.npz", ["Ge", "Te"], 4.0,
                 "float64")
    assert "--data" not in str(err.value)
