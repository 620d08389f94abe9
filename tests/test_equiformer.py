"""Equiformer (issue 19): egraff-lmp's re-expression of the study's model against the study's
own code. tests/data/equiformer holds a small GraphAttentionTransformerMD17 with seeded
weights (float64, {'state_dict'} as the study's trainer saves it) and the energy and forces
the original computed on acetylacetone and an open GeTe cluster (make_reference.py: the
study's nets/ at e4ee1e9 under e3nn 0.4.4; the original is not installed here)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import ROOT

from egraff_lmp.deploy.families.equiformer.model import EquiformerMD17

DATA = ROOT / "tests" / "data" / "equiformer"


@pytest.fixture(scope="module")
def model():
    config = json.loads((DATA / "config.json").read_text())
    m = EquiformerMD17(**config["kwargs"]).double().eval()
    state = torch.load(DATA / "equiformer-small.pt", weights_only=True)["state_dict"]
    missing, unexpected = m.load_state_dict(state)
    assert not missing and not unexpected
    return m


def _edges(pos, r_max=5.0):
    """All pairs within r_max, no boundaries (as the original's radius_graph): src, dst."""
    d = torch.cdist(pos.detach(), pos.detach())
    dst, src = ((d <= r_max) & ~torch.eye(len(pos), dtype=torch.bool)).nonzero(as_tuple=True)
    return src, dst


@pytest.mark.parametrize("label", ["acac", "gete_cluster"])
def test_the_study_checkpoint_loads_key_for_key_and_gives_the_originals_numbers(model, label):
    ref = np.load(DATA / "reference.npz")
    z = torch.tensor(ref[f"{label}_z"])
    pos = torch.tensor(ref[f"{label}_pos"]).requires_grad_(True)
    src, dst = _edges(pos)
    energy = model(z, src, dst, pos[src] - pos[dst]).sum()
    forces = -torch.autograd.grad(energy, pos)[0]
    assert float(energy) == pytest.approx(float(ref[f"{label}_energy"][0]), abs=1e-10)
    np.testing.assert_allclose(forces.numpy(), ref[f"{label}_forces"], atol=1e-10)


def test_the_edge_order_does_not_matter_and_the_sign_of_edge_vectors_does(model):
    """The same graph in another order gives the same outputs; flipping every edge vector
    (a mirror image through the origin) changes them: the model is not mirror-symmetric."""
    ref = np.load(DATA / "reference.npz")
    z = torch.tensor(ref["acac_z"])
    pos = torch.tensor(ref["acac_pos"])
    src, dst = _edges(pos)
    with torch.no_grad():
        base = model(z, src, dst, pos[src] - pos[dst])
        perm = torch.randperm(len(src), generator=torch.Generator().manual_seed(3))
        again = model(z, src[perm], dst[perm], (pos[src] - pos[dst])[perm])
        mirror = model(z, src, dst, -(pos[src] - pos[dst]))
    np.testing.assert_allclose(again.numpy(), base.numpy(), atol=1e-12)
    assert np.abs(mirror.numpy() - base.numpy()).max() > 1e-6


def test_the_studys_configuration_has_its_parameters_and_keys():
    """graph_attention_transformer_nonlinear_exp_l2_md17 with the study's 32 radial bases:
    3,496,001 parameters and 414 state-dict entries, as the study's checkpoints have."""
    m = EquiformerMD17(number_of_basis=32)
    assert sum(p.numel() for p in m.parameters()) == 3_496_001
    assert len(m.state_dict()) == 414


def test_it_scripts_and_the_scripted_model_gives_the_same_numbers(model):
    """TorchScript (e3nn's jit.script), as every artifact is: the original does not script
    (LinearRS keeps a list of slices)."""
    from e3nn.util import jit

    scripted = jit.script(model)
    ref = np.load(DATA / "reference.npz")
    z = torch.tensor(ref["gete_cluster_z"])
    pos = torch.tensor(ref["gete_cluster_pos"]).requires_grad_(True)
    src, dst = _edges(pos)
    energy = scripted(z, src, dst, pos[src] - pos[dst]).sum()
    forces = -torch.autograd.grad(energy, pos)[0]
    assert float(energy) == pytest.approx(float(ref["gete_cluster_energy"][0]), abs=1e-10)
    np.testing.assert_allclose(forces.numpy(), ref["gete_cluster_forces"], atol=1e-10)


def test_an_atom_without_neighbours_gets_its_self_energy_and_no_force(model):
    """A Ge atom 20 Å from a Te pair: its output is that of a Ge atom alone (no edges at
    all), finite, and it feels no force; the pair is unaffected by it."""
    z = torch.tensor([32, 52, 52])
    pos = torch.tensor([[0.0, 0, 0], [20, 0, 0], [22.6, 0, 0]], dtype=torch.float64,
                       requires_grad=True)
    src, dst = _edges(pos)
    assert src.tolist() == [2, 1]  # the pair only
    out = model(z, src, dst, pos[src] - pos[dst])
    forces = -torch.autograd.grad(out.sum(), pos)[0]
    none = torch.zeros(0, dtype=torch.long)
    alone = model(z[:1], none, none, torch.zeros((0, 3), dtype=torch.float64))
    assert torch.isfinite(out).all()
    assert float(out[0]) == pytest.approx(float(alone[0]), abs=1e-14)
    assert forces[0].abs().max() == 0.0 and forces[1:].abs().max() > 1e-3
    np.testing.assert_allclose(forces[1].numpy(), -forces[2].numpy(), atol=1e-12)
