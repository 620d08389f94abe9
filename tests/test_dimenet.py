"""DimeNet++ energy model (egraff_lmp.deploy.families.dimenet) against PyG's own forward."""

from __future__ import annotations

import io
import itertools
import subprocess
import sys

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule
from ase.neighborlist import neighbor_list
from conftest import GETE_TEST, GETE_VAL, ROOT
from family_md import cli, lammps_20_steps_equal_ase_at_step_0

from egraff_lmp.calculator import DeployedCalculator
from egraff_lmp.cli import main
from egraff_lmp.deploy import artifact as _artifact
from egraff_lmp.deploy.families import dimenet as adapter
from egraff_lmp.deploy.families.dimenet import (
    DimeNetPPEnergy,
    reach,
    reference_energy,
)
from egraff_lmp.deploy.sniff import sniff
from egraff_lmp.io import read_trajectory

DimeNetPlusPlus = adapter.import_pyg().nn.models.DimeNetPlusPlus  # torch left as it was

CUTOFF = 4.0
NUM_BLOCKS = 2
Z_OF_TYPE = [1, 6, 8, 32, 52]  # H C O Ge Te
F64 = torch.float64
EXACT = "donot_use_mm_for_euclid_dist"  # cdist without the matrix-product shortcut


def _pyg_model(**kw) -> DimeNetPlusPlus:
    torch.manual_seed(0)
    args = dict(hidden_channels=16, out_channels=1, num_blocks=NUM_BLOCKS, int_emb_size=16,
                basis_emb_size=4, out_emb_channels=16, num_spherical=5, num_radial=4,
                cutoff=CUTOFF, output_initializer="glorot_orthogonal")
    args.update(kw)
    return DimeNetPlusPlus(**args).to(F64)


@pytest.fixture(scope="module")
def pyg():
    return _pyg_model()


@pytest.fixture(scope="module")
def scripted(pyg):
    return torch.jit.script(DimeNetPPEnergy(pyg, Z_OF_TYPE))


def _types(numbers) -> torch.Tensor:
    return torch.tensor([Z_OF_TYPE.index(int(z)) for z in numbers])


def _brute_edges(pos: torch.Tensor, cutoff: float) -> torch.Tensor:
    with torch.no_grad():
        adj = torch.cdist(pos, pos, compute_mode=EXACT) < cutoff
        adj.fill_diagonal_(False)
    return torch.stack(adj.nonzero(as_tuple=True))


def _energy_forces(model, pos, types, edge_index, shift):
    pos = pos.detach().clone().requires_grad_(True)
    e = model(pos, types, edge_index, shift)
    (grad,) = torch.autograd.grad(e.sum(), pos)
    return e.detach(), -grad


@pytest.mark.parametrize("name", ["CH3CH2OH", "C6H6"])
def test_matches_pyg_forward(pyg, scripted, name):
    atoms = molecule(name)
    z = torch.tensor(atoms.numbers)
    pos = torch.tensor(atoms.positions, dtype=F64, requires_grad=True)
    e_ref = reference_energy(pyg, z, pos)
    (g_ref,) = torch.autograd.grad(reference_energy(pyg, z, pos, per_atom=False), pos)
    assert torch.allclose(e_ref.sum(), reference_energy(pyg, z, pos, per_atom=False),
                          rtol=0, atol=1e-12)

    edge_index = _brute_edges(pos, CUTOFF)
    shift = torch.zeros(edge_index.size(1), 3, dtype=F64)
    e, f = _energy_forces(scripted, pos, _types(atoms.numbers), edge_index, shift)
    assert e.abs().max() > 1e-3  # a model that does something
    assert (e - e_ref.detach()).abs().max() <= 1e-10
    assert (f + g_ref).abs().max() <= 1e-10

    # edge order does not matter; the module survives save/load
    buf = io.BytesIO()
    torch.jit.save(scripted, buf)
    buf.seek(0)
    loaded = torch.jit.load(buf)
    perm = torch.randperm(edge_index.size(1), generator=torch.Generator().manual_seed(1))
    e2, f2 = _energy_forces(loaded, pos, _types(atoms.numbers), edge_index[:, perm], shift)
    assert (e2 - e).abs().max() <= 1e-12
    assert (f2 - f).abs().max() <= 1e-12


def _gete_cell() -> Atoms:
    """8 Ge/Te atoms in a triclinic cell with one vector (3.9 Å) shorter than the cutoff: an
    atom is its own neighbour through images, pairs have several edges."""
    cell = np.array([[3.9, 0.0, 0.0], [1.0, 6.2, 0.0], [0.7, 0.9, 6.4]])
    rng = np.random.default_rng(3)
    frac = np.array(list(itertools.product([0.0, 0.5], repeat=3))) + 0.1
    frac += rng.uniform(-0.04, 0.04, frac.shape)
    return Atoms(numbers=[32, 52] * 4, scaled_positions=frac, cell=cell, pbc=True)


def _ase_inputs(atoms: Atoms, cutoff: float):
    i, j, S = neighbor_list("ijS", atoms, cutoff)
    edge_index = torch.tensor(np.stack([i, j]))
    shift = torch.tensor(S @ atoms.cell.array, dtype=F64)
    return torch.tensor(atoms.positions, dtype=F64), edge_index, shift


def test_periodic_shifts_equal_ghost_cluster(scripted):
    atoms = _gete_cell()
    pos, edge_index, shift = _ase_inputs(atoms, CUTOFF)
    i, j = edge_index
    assert bool(((i == j) & (shift.abs().sum(1) > 0)).any())  # self-image edges
    pairs = {}
    for a, b in zip(i.tolist(), j.tolist()):
        pairs[(a, b)] = pairs.get((a, b), 0) + 1
    assert max(pairs.values()) > 1  # pairs with several images
    types = _types(atoms.numbers)
    e_pbc, f_pbc = _energy_forces(scripted, pos, types, edge_index, shift)

    # Mode (a): every image within reach (+ margin) of the central cell as distinct atoms.
    cell = torch.tensor(atoms.cell.array, dtype=F64)
    rr = reach(NUM_BLOCKS, CUTOFF)
    n_rep = 5  # |S| <= 5: lattice heights are > 3.9 Å, 5 * 3.9 > reach + cell extent
    S = torch.tensor(list(itertools.product(range(-n_rep, n_rep + 1), repeat=3)), dtype=F64)
    images = (pos.unsqueeze(0) + (S @ cell).unsqueeze(1)).reshape(-1, 3)
    base = torch.arange(len(atoms)).repeat(S.size(0))
    keep = torch.cdist(images, pos, compute_mode=EXACT).min(dim=1).values < rr + 0.5
    central = (S == 0).all(dim=1).repeat_interleave(len(atoms))
    # the kept region is well inside the replicated block (no image at |S| = n_rep kept)
    outer = (S.abs().max(dim=1).values == n_rep).repeat_interleave(len(atoms))
    assert not bool((keep & outer).any())
    c_pos, c_base, c_central = images[keep], base[keep], central[keep]
    c_edges = _brute_edges(c_pos, CUTOFF)
    c_shift = torch.zeros(c_edges.size(1), 3, dtype=F64)
    c_pos = c_pos.clone().requires_grad_(True)
    e_all = scripted(c_pos, types[c_base], c_edges, c_shift)
    e_central = e_all[c_central]
    order = c_base[c_central]
    (g,) = torch.autograd.grad(e_central.sum(), c_pos)
    f_cluster = -torch.zeros(len(atoms), 3, dtype=F64).index_add_(0, c_base, g)

    assert torch.equal(order, torch.arange(len(atoms)))
    assert (e_central.detach() - e_pbc).abs().max() <= 1e-9
    assert (f_cluster - f_pbc).abs().max() <= 1e-9
    assert f_pbc.abs().max() > 1e-3


def _chain(spacing: float, n_atoms: int):
    """A slightly bent chain along x (not collinear, so angles have gradients)."""
    pos = torch.zeros(n_atoms, 3, dtype=F64)
    pos[:, 0] = spacing * torch.arange(n_atoms, dtype=F64)
    pos[:, 1] = 0.01 * torch.arange(n_atoms, dtype=F64) ** 2
    return pos, torch.full((n_atoms,), Z_OF_TYPE.index(32))


def _energy0(model, pos, types):
    edge_index = _brute_edges(pos, CUTOFF)
    shift = torch.zeros(edge_index.size(1), 3, dtype=F64)
    return model(pos, types, edge_index, shift)[0]


@pytest.mark.parametrize("spacing_over_cutoff", [0.8, 0.96, 0.76])
def test_reach(scripted, spacing_over_cutoff):
    """Atom 0 of a chain depends on atom m iff m * spacing < reach = (num_blocks + 1) * cutoff.

    0.96: atom 3 at 0.96 reach is felt; 0.76: atom 4 at 1.01 reach is not. Dependence is seen
    in d e_0 / d pos_m (exactly zero when there is none; the envelope makes the far ones tiny:
    ~1e-18 at 0.96) and, at 0.8 cutoff spacing, by moving atom m (e_0 changes or is bitwise
    unchanged)."""
    spacing = spacing_over_cutoff * CUTOFF
    rr = reach(NUM_BLOCKS, CUTOFF)
    assert rr == (NUM_BLOCKS + 1) * CUTOFF
    n_atoms = 8
    pos, types = _chain(spacing, n_atoms)
    pos.requires_grad_(True)
    (grad,) = torch.autograd.grad(_energy0(scripted, pos, types), pos)
    felt = grad.norm(dim=1) > 0
    within = spacing * torch.arange(n_atoms) < rr
    assert torch.equal(felt, within), (felt, within)
    assert int(within.sum()) == NUM_BLOCKS + 2  # atoms 0 .. num_blocks + 1

    if spacing_over_cutoff == 0.8:
        with torch.no_grad():
            pos, types = _chain(spacing, n_atoms)
            e0 = _energy0(scripted, pos, types)
            for m in range(1, n_atoms):
                moved = pos.clone()
                moved[m] += torch.tensor([0.02, 0.05, 0.03], dtype=F64)
                change = float(_energy0(scripted, moved, types) - e0)
                assert (change != 0.0) == bool(within[m]), (m, change)


def test_float32_close_to_float64(pyg):
    model64 = DimeNetPPEnergy(pyg, Z_OF_TYPE)
    model32 = torch.jit.script(DimeNetPPEnergy(pyg, Z_OF_TYPE).to(torch.float32))
    atoms = molecule("CH3CH2OH")
    pos = torch.tensor(atoms.positions, dtype=F64)
    systems = [(pos, _types(atoms.numbers), _brute_edges(pos, CUTOFF), None)]
    cell = _gete_cell()
    pos, edge_index, shift = _ase_inputs(cell, CUTOFF)
    systems.append((pos, _types(cell.numbers), edge_index, shift))
    for pos, types, edge_index, shift in systems:
        if shift is None:
            shift = torch.zeros(edge_index.size(1), 3, dtype=F64)
        e64 = model64(pos, types, edge_index, shift)
        e32 = model32(pos.float(), types, edge_index, shift.float())
        assert e32.dtype == torch.float32
        assert (e32.double() - e64).abs().max() <= 1e-4


def test_refuses_vector_output():
    torch.manual_seed(0)
    model = DimeNetPlusPlus(hidden_channels=8, out_channels=2, num_blocks=1, int_emb_size=8,
                            basis_emb_size=2, out_emb_channels=8, num_spherical=2, num_radial=2)
    with pytest.raises(ValueError, match="out_channels=2"):
        DimeNetPPEnergy(model, [1])


# --------------------------------------------------------------------------------------
# The family adapter: a model trained by inputs/models/train_dimenet.py (egraff-lmp's
# DimeNet++ file) and an OCP/MDsim checkpoint, deployed, checked and run in LAMMPS.
# --------------------------------------------------------------------------------------


TINY_REACH = 12.0  # tests/configs/dimenet_tiny.yaml: (2 blocks + 1) x 4 Å


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """inputs/models/train_dimenet.py on 8 GeTe frames, 2 epochs (float64)."""
    out = tmp_path_factory.mktemp("dimenet") / "tiny-dimenet.pt"
    cmd = [sys.executable, ROOT / "inputs/models/train_dimenet.py", "--config",
           ROOT / "tests/configs/dimenet_tiny.yaml", "--data", GETE_VAL, "--out", out]
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def tiny_artifact(tiny):
    out = tiny.with_name("tiny.egraff.pt")
    assert main(["deploy", str(tiny), "-o", str(out), "--data", str(GETE_TEST)]) == 0
    return out


def _frame_atoms(k=5):
    ref = read_trajectory(GETE_TEST)
    f = ref[k]
    return Atoms(ref.symbols, positions=f.positions, cell=f.cell, pbc=True)


def test_the_trained_file_is_told_by_content_and_records_its_training(tiny):
    k = sniff(tiny)
    assert (k.kind, k.family) == ("torch-save", "dimenet")
    ck = torch.load(tiny, weights_only=True)
    assert ck["format"] == "egraff-lmp-dimenet++" and ck["species"] == ["Ge", "Te"]
    assert ck["dtype"] == "float64" and ck["training"]["epochs"] == 2
    assert set(ck["energy_shift_per_atom"]) == {"Ge", "Te"}
    model = DimeNetPlusPlus(**ck["hyperparameters"]).to(F64)
    model.load_state_dict(ck["state_dict"])  # PyG's own model loads it as it is


def test_deploy_through_the_cli_with_parity_against_pygs_own_forward(tiny, tiny_artifact):
    meta = _artifact.read_metadata(tiny_artifact)
    assert meta["family"] == "dimenet" and meta["type_names"] == ["Ge", "Te"]
    assert meta["ghost_cutoff"] == reach(2, 4.0) == TINY_REACH
    assert meta["ghost_cutoff"] > meta["r_max"] * meta["num_layers"]
    assert meta["species_from"] == "the file" and "edges" in meta["stages_unavailable"]
    p = meta["validation"]["parity"]
    assert p["forces"] < 1e-6 and p["energy_per_atom"] < 1e-6 and p["atom_energies"] < 1e-6
    assert meta["versions"]["torch_geometric"]

    # periodic (images within the reach) and a molecule (a 15-atom GeTe cluster)
    own = adapter.load(tiny).reference()
    periodic = _frame_atoms()
    vec = periodic.get_distances(0, range(len(periodic)), mic=True, vector=True)
    near = np.argsort(np.linalg.norm(vec, axis=1))[:15]
    cluster = Atoms([periodic.get_chemical_symbols()[i] for i in near],
                    positions=periodic.positions[0] + vec[near])
    ours = DeployedCalculator(tiny_artifact)
    for atoms in (periodic, cluster):
        a, b = atoms.copy(), atoms.copy()
        a.calc, b.calc = own, ours
        np.testing.assert_allclose(b.get_potential_energies(), a.get_potential_energies(),
                                   rtol=0, atol=1e-9)
        np.testing.assert_allclose(b.get_forces(), a.get_forces(), rtol=0, atol=1e-9)
        assert np.abs(a.get_forces()).max() > 1e-3


def _edited(src, dst, **changes):
    ck = torch.load(src, weights_only=True)
    for key, value in changes.items():
        if key == "hyperparameters":
            ck[key] = {**ck[key], **value}
            ck[key] = {k: v for k, v in ck[key].items() if v is not None}
        elif key == "drop":
            for k in value:
                del ck[k]
        else:
            ck[key] = value
    torch.save(ck, dst)
    return dst


@pytest.mark.parametrize("edit, words", [
    ({"species": ["Ge", "Xx"]}, "Xx not element symbols"),
    ({"hyperparameters": {"cutoff": None}}, "no cutoff"),
    ({"hyperparameters": {"out_channels": 2}}, "out_channels=2"),
    ({"hyperparameters": {"num_bilinear": 8}}, "does not take: num_bilinear"),
    ({"drop": ["format"]}, "unknown DimeNet++ layout"),
])
def test_what_cannot_be_deployed_is_refused_in_one_line(tiny, tmp_path, capsys, edit, words):
    bad = _edited(tiny, tmp_path / "bad.pt", **edit)
    code, err = cli(capsys, "deploy", bad, "-o", tmp_path / "x.egraff.pt")
    assert code == 2 and words in err, err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.egraff.pt").exists()


def test_the_files_species_win_over_a_different_species_option(tiny, tmp_path, capsys):
    code, err = cli(capsys, "deploy", tiny, "-o", tmp_path / "x.egraff.pt", "--species",
                     "Te,Ge")
    assert code == 2 and "drop --species" in err and len(err.strip().splitlines()) == 1


def _ocp_checkpoint(src, dst, mean=0.0, std=1.0, grad_std=None, ema=False, ddp=False):
    """The tiny model as MDsim's Trainer.save writes it: ``config`` (model name +
    model_attributes), the state dict of the OCPDataParallel-wrapped model ("module."
    keys; "module.module." under DDP) including the bias of MDsim's OutputPPBlock.lin_up,
    normalizers, optimizer and EMA state."""
    ck = torch.load(src, weights_only=True)
    hp = ck["hyperparameters"]
    state = {}  # in MDsim's parameters() order, which is PyG's, lin_up.bias after its weight
    for k, v in ck["state_dict"].items():
        state[k] = v
        if k.startswith("output_blocks.") and k.endswith(".lin_up.weight"):
            state[k.replace(".weight", ".bias")] = torch.zeros(v.shape[0], dtype=F64)
    prefix = "module.module." if ddp else "module."
    shadow = None
    if ema:  # the EMA holds the weights; the raw state dict something else
        shadow = [v.clone() for v in state.values()]
        state = {k: v + 0.01 for k, v in state.items()}
    attrs = {k: hp[k] for k in ("hidden_channels", "num_blocks", "int_emb_size",
                                "basis_emb_size", "out_emb_channels", "num_spherical",
                                "num_radial", "cutoff")}
    attrs.update(use_pbc=True, regress_forces=True, otf_graph=False)
    grad_std = std if grad_std is None else grad_std
    torch.save({
        "epoch": 2, "step": 6,
        "state_dict": {prefix + k: v for k, v in state.items()},
        "optimizer": {}, "scheduler": None,
        "normalizers": {"target": {"mean": torch.tensor(mean), "std": torch.tensor(std)},
                        "grad_target": {"mean": torch.tensor(0.0),
                                        "std": torch.tensor(grad_std)}},
        "config": {"task": {"dataset": "lmdb"}, "model": "dimenetplusplus",
                   "model_attributes": attrs, "optim": {"batch_size": 2},
                   "dataset": [{"src": "train", "normalize_labels": True}]},
        "val_metrics": None,
        "ema": ({"decay": 0.999, "num_updates": None, "shadow_params": shadow,
                 "collected_params": []} if ema else None),
        "amp": None}, dst)
    return dst


def test_an_ocp_mdsim_checkpoint_deploys_as_the_same_model(tiny, tiny_artifact, tmp_path,
                                                           capsys):
    ocp = _ocp_checkpoint(tiny, tmp_path / "best_checkpoint.pt", std=2.0)
    assert sniff(ocp).family == "dimenet"
    code, err = cli(capsys, "deploy", ocp, "-o", tmp_path / "x.egraff.pt")
    assert code == 2 and "--species" in err and len(err.strip().splitlines()) == 1
    code, err = cli(capsys, "deploy", ocp, "-o", tmp_path / "ocp.egraff.pt", "--species",
                     "Ge,Te", "--data", GETE_TEST)
    assert code == 0, err
    meta = _artifact.read_metadata(tmp_path / "ocp.egraff.pt")
    assert meta["species_from"] == "--species" and meta["ghost_cutoff"] == TINY_REACH
    assert meta["validation"]["parity"]["forces"] < 1e-6

    # the same network: energies x std (2) without the per-atom reference energies
    e0 = torch.load(tiny, weights_only=True)["energy_shift_per_atom"]
    atoms = _frame_atoms()
    a, b = atoms.copy(), atoms.copy()
    a.calc, b.calc = DeployedCalculator(tiny_artifact), DeployedCalculator(
        tmp_path / "ocp.egraff.pt")
    shift = np.array([e0[s] for s in atoms.get_chemical_symbols()])
    np.testing.assert_allclose(b.get_potential_energies(),
                               2.0 * (a.get_potential_energies() - shift), rtol=0, atol=1e-9)
    np.testing.assert_allclose(b.get_forces(), 2.0 * a.get_forces(), rtol=0, atol=1e-10)

    # EMA weights (as MDsim predicts with them), DDP's double prefix
    pos, edge_index, shift_t = _ase_inputs(atoms, 4.0)
    types = torch.tensor((atoms.numbers == 52).astype(np.int64))  # Ge 0, Te 1
    plain = adapter.load(ocp, species=["Ge", "Te"]).energy_model
    ema_src = adapter.load(_ocp_checkpoint(tiny, tmp_path / "ema.pt", std=2.0, ema=True,
                                           ddp=True), species=["Ge", "Te"])
    assert ema_src.extra["weights"].startswith("ema")
    assert torch.equal(ema_src.energy_model(pos, types, edge_index, shift_t),
                       plain(pos, types, edge_index, shift_t))


@pytest.mark.parametrize("kw, words", [
    ({"mean": -39830.0}, "global energy mean"),
    ({"grad_std": 3.0}, "normalizers differ"),
])
def test_ocp_normalizers_that_are_not_a_per_atom_scale_are_refused(tiny, tmp_path, capsys,
                                                                   kw, words):
    bad = _ocp_checkpoint(tiny, tmp_path / "checkpoint.pt", **kw)
    code, err = cli(capsys, "deploy", bad, "-o", tmp_path / "x.egraff.pt", "--species",
                     "Ge,Te")
    assert code == 2 and words in err, err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("ranks", [1, 2])
def test_dimenet_runs_20_steps_in_lammps_equal_to_ase_at_step_0(plugin, tiny_artifact,
                                                                tmp_path, ranks):
    lammps_20_steps_equal_ase_at_step_0(plugin, tiny_artifact, tmp_path, ranks)


def test_the_declared_reach_is_the_deployed_models_true_reach(tiny_artifact):
    """On a (slightly bent) chain of atoms 3.2 Å apart (0.8 cutoff), atom 3 (9.6 Å, beyond
    r_max x blocks = 8 Å) changes atom 0's energy; atom 4 (12.8 Å, beyond the 12 Å reach)
    does not."""
    calc = DeployedCalculator(tiny_artifact)

    def chain(moved=None):
        pos = np.array([[3.2 * k, 0.01 * k * k, 0.0] for k in range(7)])
        if moved is not None:
            pos[moved] += [0.02, 0.05, 0.03]
        atoms = Atoms("GeTeGeTeGeTeGe", positions=pos)
        atoms.calc = calc
        return atoms.get_potential_energies()[0]

    e0 = chain()
    change = [abs(chain(m) - e0) for m in range(1, 7)]
    assert change[2] > 1e-12  # atom 3, 9.6 Å
    assert change[3] == change[4] == change[5] == 0.0  # 12.8 Å and farther


def test_importing_pyg_leaves_torchs_index_select_scriptable():
    """PyG 2.8's import replaces torch.index_select process-wide with a function TorchScript
    cannot compile (NequIP's scripting then fails); import_pyg puts torch's own back."""
    import torch_geometric.hash_tensor as patched

    adapter.import_pyg()
    assert torch.index_select is patched._old_index_select
    assert torch.select is patched._old_select

    def pick(x: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return torch.index_select(x, 0, i)

    x = torch.arange(6.0)
    assert torch.jit.script(pick)(x, torch.tensor([4, 1])).tolist() == [4.0, 1.0]
