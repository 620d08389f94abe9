"""One family registry: every family is one record (``deploy.families.registry``), from
which the sniffer, ``deploy``'s lookups and messages and the ``--family`` choices derive,
so that a record and its adapter are all a new family needs; and what the adapters share is
written once: species resolution, refusals, per-type energy offsets and the base of the
hand-written parity references. Energies eV, distances Å."""

from __future__ import annotations

import ast
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from ase import Atoms
from conftest import GETE_TEST, ROOT

from egraff_lmp.cli import build_parser, main
from egraff_lmp.deploy import FAMILIES, check, deploy, load_source
from egraff_lmp.deploy import artifact as _artifact
from egraff_lmp.deploy.families import Source, refuse, registry
from egraff_lmp.deploy.families.offsets import PerTypeAffine
from egraff_lmp.deploy.families.reference import Evaluation, ReferenceCalculator
from egraff_lmp.deploy.families.species import resolve
from egraff_lmp.deploy.sniff import FileKind, family_of, sniff
from egraff_lmp.errors import EgraffError

MODELS = ROOT / "inputs" / "models"


# -- a toy family: one record and this module as its adapter ------------------------------

TOY = registry.Family("toy", "toy pair", packages=("toypkg",), extra="toy",
                      markers=(r"egraff_toy_pair",), module=__name__)


class ToyEnergy(torch.nn.Module):
    """Half of ``epsilon * (1 - r / rc)**2`` (eV) of every pair to each of its atoms, plus
    a reference energy per type."""

    def __init__(self, epsilon: float, rc: float, e0):
        super().__init__()
        self.epsilon, self.rc = epsilon, rc
        self.offsets = PerTypeAffine(None, e0, torch.float64)

    def forward(self, pos: torch.Tensor, types: torch.Tensor, edge_index: torch.Tensor,
                shift: torch.Tensor) -> torch.Tensor:
        i, j = edge_index[0], edge_index[1]
        r = torch.linalg.vector_norm(pos[j] - pos[i] + shift, dim=1)
        pair = 0.5 * self.epsilon * (1.0 - r / self.rc) ** 2
        e = torch.zeros(pos.shape[0], dtype=pos.dtype).index_add(0, i, pair)
        return self.offsets(e, types)


class ToyReference(ReferenceCalculator):
    """The toy energy on ASE's neighbour list: the family's 'own' calculator."""

    per_atom = True

    def __init__(self, epsilon, rc, e0, numbers):
        super().__init__(torch.float64, numbers)
        self.epsilon, self.rc, self.e0 = epsilon, rc, dict(zip(numbers, e0))

    def evaluate(self, atoms) -> Evaluation:
        from ase.neighborlist import neighbor_list

        i, j, d = neighbor_list("ijD", atoms, self.rc)
        pos = self.positions(atoms.positions)
        vec = pos[torch.from_numpy(j)] - pos[torch.from_numpy(i)] + torch.from_numpy(
            d - (atoms.positions[j] - atoms.positions[i]))
        pair = 0.5 * self.epsilon * (1.0 - torch.linalg.vector_norm(vec, dim=1) / self.rc) ** 2
        e = torch.zeros(len(atoms), dtype=torch.float64).index_add(0, torch.from_numpy(i), pair)
        e0 = np.array([self.e0[int(z)] for z in atoms.numbers])
        return Evaluation(forces=self.forces(e.sum(), pos), energies=e.detach().numpy() + e0)


def load(path) -> Source:
    """The toy family's adapter: a torch.save'd dict naming its format."""
    ck = torch.load(path, weights_only=True)
    sp = resolve(path, TOY.model, None, recorded=ck["species"])
    return Source(family=TOY.name, energy_model=ToyEnergy(ck["epsilon"], ck["rc"], ck["e0"]),
                  type_names=sp.symbols, r_max=ck["rc"], num_layers=1, strictly_local=True,
                  dtype=torch.float64, family_version="0",
                  reference=lambda: ToyReference(ck["epsilon"], ck["rc"], ck["e0"],
                                                 sp.numbers))


@pytest.fixture
def toy(monkeypatch, tmp_path):
    monkeypatch.setitem(registry.FAMILIES, TOY.name, TOY)
    path = tmp_path / "model.pt"  # a name that says nothing: told by content
    torch.save({"format": "egraff_toy_pair", "species": ["Ge", "Te"], "epsilon": 0.3,
                "rc": 4.0, "e0": [-1.5, -2.5]}, path)
    return path


def test_a_record_is_enough_for_the_sniffer_the_cli_and_deploys_messages(toy, tmp_path,
                                                                          capsys):
    assert "toy" in FAMILIES  # deploy's mapping is the registry's
    assert registry.package_map()["toypkg"] == "toy"
    assert family_of(FileKind("torch-save", {"toypkg", "torch"})) == "toy"
    assert sniff(toy).family == "toy"  # the record's content marker
    assert build_parser().parse_args(["deploy", "m", "--family", "toy"]).family == "toy"
    with pytest.raises(SystemExit):
        main(["deploy", "--help"])
    assert "mace, nequip, torchmd, dimenet, schnetpack, toy" in " ".join(
        capsys.readouterr().out.split())
    (tmp_path / "what.bin").write_bytes(b"\0" * 100)
    with pytest.raises(EgraffError, match=r"give --family \(mace, .*schnetpack, toy\)"):
        load_source(tmp_path / "what.bin")
    with pytest.raises(EgraffError, match=r"unknown family 'zzz' \(known: .*, toy\)"):
        load_source(toy, "zzz")
    with pytest.raises(EgraffError, match="a toy pair model records its own species: drop "
                                          "--species"):
        load_source(toy, species=["Ge", "Te"])


def test_a_new_family_deploys_and_checks_through_its_record_alone(toy, tmp_path):
    out = deploy(toy, tmp_path / "toy.egraff.pt", data=GETE_TEST)
    meta = _artifact.read_metadata(out)
    assert meta["family"] == "toy" and meta["type_names"] == ["Ge", "Te"]
    parity = meta["validation"]["parity"]
    assert parity["forces"] < 1e-10 and parity["atom_energies"] < 1e-10
    assert check(out, toy, data=GETE_TEST)["parity"]["forces"] < 1e-10


def test_a_missing_family_package_names_its_extra(toy, monkeypatch):
    def load(path):
        raise ModuleNotFoundError("No module named 'toypkg'", name="toypkg")

    monkeypatch.setattr(sys.modules[__name__], "load", load)
    with pytest.raises(EgraffError, match=r"a toy pair model needs the package toypkg, "
                                          r"which is not installed: pip install "
                                          r"'egraff-lmp\[toy\]'"):
        load_source(toy)


# -- the records and their adapters ---------------------------------------------------------

def test_every_adapter_takes_its_name_and_settings_from_its_record():
    for name, fam in FAMILIES.items():
        adapter = fam.adapter
        assert adapter.FAMILY is fam and adapter.NAME == name
        assert registry.of_module(adapter.__name__) is fam
        for old in ("ACCEPTS_SPECIES", "claims"):  # once spelled in every adapter
            assert not hasattr(adapter, old), (name, old)
    assert registry.of_artifact("allegro") is FAMILIES["nequip"]
    assert [f.name for f in FAMILIES.values() if f.accepts_species] == [
        "torchmd", "dimenet", "schnetpack"]


def test_the_plumbing_spells_no_family_or_package_name():
    """Sniffer, deploy and the command line name no family: they read the records."""
    spelled = set(FAMILIES) | set(registry.package_map()) | {"allegro"}
    for rel in ("egraff_lmp/deploy/sniff.py", "egraff_lmp/deploy/__init__.py",
                "egraff_lmp/commands/deploy.py"):
        tree = ast.parse((ROOT / rel).read_text())
        found = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)
                 and isinstance(n.value, str) and n.value in spelled}
        assert not found, (rel, found)


def test_building_the_command_line_imports_no_torch():
    code = ("import sys; from egraff_lmp.cli import build_parser; build_parser(); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_package_is_in_the_wheel():
    """pyproject lists its packages: a new one (families/dimenet/) must be listed."""
    block = re.search(r"^packages = (\[.*?\])", (ROOT / "pyproject.toml").read_text(),
                      re.S | re.M)
    listed = set(ast.literal_eval(block.group(1)))  # a TOML list of strings
    found = {".".join(p.parent.relative_to(ROOT).parts)
             for p in (ROOT / "egraff_lmp").rglob("__init__.py")}
    assert found <= listed, sorted(found - listed)


def test_deploy_check_finds_the_family_of_an_allegro_artifact():
    """The artifact says 'allegro', the family record is nequip's (this once failed with
    "unknown family 'allegro'")."""
    report = check(MODELS / "gete-allegro.egraff.pt", MODELS / "gete-allegro.nequip.zip",
                   data=GETE_TEST)
    assert report["parity"]["forces"] < 1e-4


# -- species: one resolution, one wording ---------------------------------------------------

def test_species_resolution_and_its_errors():
    sp = resolve("m", "a X model", ["Te", "Ge"])
    assert (sp.symbols, sp.numbers, sp.where) == (["Te", "Ge"], [52, 32], "--species")
    sp = resolve("m", "a X model", None, found=lambda: ([32, 52], "training data (a)"))
    assert (sp.symbols, sp.where) == (["Ge", "Te"], "training data (a)")
    assert resolve("m", "a X model", ["Ge", "Te"], recorded=["Ge", "Te"]).where == "the file"
    for kwargs, words in (
            ({"given": ["Ge", "Xx"]}, "m: --species: Xx not element symbols"),
            ({"given": ["Ge", "Ge"]}, "m: --species: repeated species Ge, Ge"),
            ({"given": ["Te", "Ge"], "recorded": ["Ge", "Te"]},
             "m: the file records its own species (Ge,Te): drop --species or give them in "
             "that order"),
            ({"found": lambda: None, "searched": "nor any data found"},
             "m: a X model embeds atomic numbers and records no species (nor any data "
             "found): give --species, e.g. --species Ge,Te"),
            ({"found": lambda: ([32, 0], "d")},
             "m: the training data's atomic numbers [0] are not elements")):
        with pytest.raises(EgraffError) as err:
            resolve("m", "a X model", **kwargs)
        assert str(err.value) == words


def _ocp(tmp_path, **normalizer):
    """The shipped DimeNet++ as an OCP/MDsim checkpoint (no species recorded)."""
    ck = torch.load(MODELS / "gete-dimenet.pt", weights_only=True)
    attrs = {k: ck["hyperparameters"][k] for k in ("hidden_channels", "num_blocks",
                                                   "int_emb_size", "basis_emb_size",
                                                   "out_emb_channels", "num_spherical",
                                                   "num_radial", "cutoff")}
    target = {"mean": torch.tensor(normalizer.get("mean", 0.0)), "std": torch.tensor(1.0)}
    path = tmp_path / "checkpoint.pt"
    torch.save({"state_dict": {"module." + k: v for k, v in ck["state_dict"].items()},
                "config": {"model": "dimenetplusplus", "model_attributes": attrs},
                "normalizers": {"target": target}}, path)
    return path


def test_families_without_species_ask_for_them_in_one_wording(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no training data anywhere near
    cases = {"torchmd": MODELS / "gete-torchmd.ckpt", "schnetpack": MODELS / "gete-painn.spk.pt",
             "dimenet": _ocp(tmp_path)}
    for name, path in cases.items():
        with pytest.raises(EgraffError) as err:
            load_source(path)
        text = str(err.value)
        assert text.startswith(f"{path}: {FAMILIES[name].model}"), text
        assert "embeds atomic numbers and records no species" in text, text
        assert text.endswith(": give --species, e.g. --species Ge,Te"), text
    with pytest.raises(EgraffError, match="a MACE model records its own species: drop "
                                          "--species"):
        load_source(MODELS / "gete-mace.mace-state.pt", species=["Ge", "Te"])


# -- refusals: one wording per reason -------------------------------------------------------

def test_a_global_energy_mean_is_refused_in_one_wording_by_every_family(tmp_path):
    from egraff_lmp.deploy.families.schnetpack import _load_model

    ck = torch.load(MODELS / "gete-torchmd.ckpt", map_location="cpu", weights_only=False)
    ck["state_dict"]["model.mean"] = torch.tensor(5.0)
    torch.save(ck, tmp_path / "mean.ckpt")
    painn = _load_model(MODELS / "gete-painn.spk.pt")
    post = next(p for p in painn.postprocessors if type(p).__name__ == "AddOffsets")
    post.is_extensive = False
    torch.save(painn, tmp_path / "intensive_model")
    cases = [(tmp_path / "mean.ckpt", "standardize: true"),
             (tmp_path / "intensive_model", "AddOffsets' non-extensive mean"),
             (_ocp(tmp_path, mean=-39830.0), "normalizers.target.mean")]
    for path, where in cases:
        with pytest.raises(EgraffError) as err:
            load_source(path, species=["Ge", "Te"])
        text = str(err.value)
        assert "the model adds a global energy mean (" in text and f" eV, {where}) after " \
               "the sum over atoms: not a per-atom energy, and not splittable over LAMMPS " \
               "ranks" in text, text


def test_the_refusals_wordings():
    cases = [
        (lambda: refuse.global_energy_mean("m", 5.0, "w", "do this"),
         "m: the model adds a global energy mean (5 eV, w) after the sum over atoms: not a "
         "per-atom energy, and not splittable over LAMMPS ranks; do this"),
        (lambda: refuse.not_a_sum("m", "reduce_op 'mean'"),
         "m: reduce_op 'mean': the energy is not a sum over atoms, so it cannot be split "
         "over atoms or LAMMPS ranks"),
        (lambda: refuse.charge_spin("m", "a X model"),
         "m: a X model with charge/spin inputs: not deployable (LAMMPS passes positions and "
         "types only)"),
        (lambda: refuse.no_cutoff("m", "cutoff", "the file", "no default"),
         "m: no cutoff in the file: cannot size neighbour lists (no default)"),
        (lambda: refuse.not_reproduced("m", "the ZBL prior"),
         "m: the ZBL prior is not reproduced in the artifact: deploy a model trained "
         "without it")]
    for call, words in cases:
        with pytest.raises(EgraffError) as err:
            call()
        assert str(err.value) == words


# -- per-type offsets and the reference base ------------------------------------------------

def test_per_type_affine_offsets_are_each_familys_arithmetic_and_script():
    e = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float32)
    types = torch.tensor([1, 0, 1])
    f64 = PerTypeAffine(0.1, [-200.25, -100.5], torch.float64)
    assert f64.scale.item() == 0.1  # a Python float is not rounded through float32
    want = e.double() * torch.tensor(0.1, dtype=torch.float64) + torch.tensor(
        [-100.5, -200.25, -100.5], dtype=torch.float64)
    assert torch.equal(torch.jit.script(f64)(e, types), want)
    plain = PerTypeAffine(None, torch.tensor([0.5, 0.25]), torch.float32)
    assert torch.equal(plain(e, types), e + torch.tensor([0.25, 0.5, 0.25]))


def test_the_hand_written_references_share_the_base():
    from egraff_lmp.deploy.families.dimenet import DimeNetReference
    from egraff_lmp.deploy.families.mace import LammpsMACECalculator
    from egraff_lmp.deploy.families.torchmd import TorchMDNetReference

    for cls, per_atom in ((LammpsMACECalculator, True), (TorchMDNetReference, False),
                          (DimeNetReference, True)):
        assert issubclass(cls, ReferenceCalculator) and cls.per_atom is per_atom
        assert ("energies" in cls.implemented_properties) is per_atom
    ref = ToyReference(0.3, 4.0, [-1.5, -2.5], [32, 52])
    atoms = Atoms("GeTeGe", positions=[[0, 0, 0], [2.5, 0, 0], [0, 2.8, 0.3]])
    atoms.calc = ref
    energies = atoms.get_potential_energies()
    assert atoms.get_potential_energy() == float(energies.sum())
    assert np.abs(atoms.get_forces().sum(axis=0)).max() < 1e-12
    atoms.calc = ref
    atoms.numbers[0] = 8
    with pytest.raises(EgraffError, match=r"the parity reference has no atomic numbers \[8\]"):
        atoms.get_forces()
