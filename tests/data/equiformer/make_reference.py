"""Reference numbers of the study's own Equiformer code, for egraff-lmp's re-expression of it
(issue 19). Not run by the tests: they compare against what this wrote.

    pip download e3nn==0.4.4 --no-deps -d WHEELS          # the study's e3nn pin
    python -m venv --system-site-packages VENV
    VENV/bin/pip install --no-deps WHEELS/e3nn-0.4.4-*.whl
    VENV/bin/python tests/data/equiformer/make_reference.py --repo MDBENCHGNN_GIT_DIR

The study's code (M3RG-IITD/MDBENCHGNN at COMMIT, ``mdbenchgnn/models/equiformer/nets/``,
MIT licence) is read from its git directory into a temporary folder and imported as it is,
with three scratch stand-ins written next to it, never shipped: ``torch_cluster.radius_graph``
(all pairs within r, no self loops), ``torch_scatter.scatter`` (sum) and
``torch_geometric.utils.softmax`` (per target node) in plain torch, and a ``nets/__init__.py``
that imports the MD17 models only (the package's own imports the OC20 trainer too). Two
changes to run it here: the node embedding's one-hot follows the weights'
dtype (the original hard-codes ``.float()``); and ``slice`` allowed in ``torch.load`` (e3nn
0.4.4 loads its constants with it, refused by torch >= 2.6's weights-only default).

The model: ``GraphAttentionTransformerMD17`` with the options of the study's
``graph_attention_transformer_nonlinear_exp_l2_md17`` (exp-normal basis, cosine cutoff 5 Å,
non-linear messages, equivariant layer norm, l <= 2 harmonics, no dropout) but small widths
(:data:`SMALL`), seeded random weights and biases, float64. Configurations: acetylacetone
(the first DFT frame of inputs/acac/acac_test_300K.xyz) and an open cluster cut from GeTe
(atoms within 7 Å of atom 0 of the first frame of inputs/gete/gete_test.npz, minimum image,
no periodic boundaries: the way the study ran its models). Writes ``equiformer-small.pt``
(``{'state_dict'}``, as the study's trainer saves it), ``config.json`` (the model's
arguments, versions, commit) and ``reference.npz`` (per configuration: atomic numbers,
positions Å, the model's energy output and forces -dE/dr).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
COMMIT = "e4ee1e9"
NETS = "mdbenchgnn/models/equiformer/nets"
SEED = 20261204
SMALL = dict(irreps_in="64x0e", irreps_node_embedding="16x0e+8x1e+4x2e", num_layers=2,
             irreps_node_attr="1x0e", irreps_sh="1x0e+1x1e+1x2e", max_radius=5.0,
             number_of_basis=8, fc_neurons=[16, 16], basis_type="exp",
             irreps_feature="32x0e", irreps_head="8x0e+4x1e+2x2e", num_heads=2,
             irreps_pre_attn=None, rescale_degree=False, nonlinear_message=True,
             irreps_mlp_mid="24x0e+12x1e+6x2e", norm_layer="layer", alpha_drop=0.0,
             proj_drop=0.0, out_drop=0.0, drop_path_rate=0.0)

SHIMS = {
    "torch_cluster/__init__.py": '''
import torch
def radius_graph(x, r, batch=None, loop=False, max_num_neighbors=32, flow="source_to_target"):
    n = x.shape[0]
    batch = torch.zeros(n, dtype=torch.long) if batch is None else batch
    d = torch.cdist(x.detach(), x.detach())
    mask = (d <= r) & (batch[:, None] == batch[None, :])
    if not loop:
        mask &= ~torch.eye(n, dtype=torch.bool)
    target, source = mask.nonzero(as_tuple=True)
    return torch.stack([source, target])
''',
    "torch_scatter/__init__.py": '''
import torch
def scatter(src, index, dim=0, dim_size=None, reduce="sum", **kwargs):
    assert reduce in ("sum", "add") and dim == 0
    dim_size = int(index.max()) + 1 if dim_size is None else dim_size
    out = torch.zeros((dim_size,) + tuple(src.shape[1:]), dtype=src.dtype)
    return out.index_add(0, index, src)
''',
    "torch_geometric/__init__.py": "from . import nn, utils  # noqa\n",
    "torch_geometric/utils/__init__.py": '''
import torch
def softmax(src, index, ptr=None, num_nodes=None, dim=0):
    n = int(index.max()) + 1 if num_nodes is None else num_nodes
    shape = (n,) + tuple(src.shape[1:])
    idx = index.view(-1, *[1] * (src.dim() - 1)).expand_as(src)
    top = torch.full(shape, float("-inf"), dtype=src.dtype).scatter_reduce(
        0, idx, src, "amax", include_self=True)
    out = (src - top[index]).exp()
    total = torch.zeros(shape, dtype=src.dtype).index_add(0, index, out)
    return out / (total[index] + 1e-16)
def degree(index, num_nodes=None, dtype=None):
    n = int(index.max()) + 1 if num_nodes is None else num_nodes
    return torch.zeros(n, dtype=dtype).index_add(0, index, torch.ones(len(index), dtype=dtype))
''',
    "torch_geometric/nn/__init__.py": '''
from . import inits  # noqa
def _unused(*args, **kwargs):
    raise NotImplementedError("graph pooling: not used by the MD17 models")
global_mean_pool = global_max_pool = global_add_pool = _unused
''',
    "torch_geometric/nn/inits.py": '''
import math
import torch
def glorot(value):
    bound = math.sqrt(6.0 / (value.size(-2) + value.size(-1)))
    with torch.no_grad():
        value.uniform_(-bound, bound)
''',
    "ocpmodels/__init__.py": "", "ocpmodels/models/__init__.py": "",
    "ocpmodels/models/gemnet/__init__.py": "",
    "ocpmodels/models/gemnet/layers/__init__.py": "",
    "ocpmodels/models/gemnet/layers/radial_basis.py": '''
class RadialBasis:
    def __init__(self, *args, **kwargs):
        raise NotImplementedError("the bessel basis: not used by the study's models")
''',
}


def configurations():
    import ase.io

    acac = ase.io.read(ROOT / "inputs" / "acac" / "acac_test_300K.xyz", 0)
    gete = np.load(ROOT / "inputs" / "gete" / "gete_test.npz")
    pos, z = gete["pos"][0], gete["atomic_numbers"]
    box = np.diag(gete["cell"][0]) if gete["cell"].ndim == 3 else np.diag(gete["cell"])
    d = pos - pos[0]
    d -= box * np.round(d / box)  # minimum image around atom 0, then no boundaries
    keep = np.linalg.norm(d, axis=1) < 7.0
    return {"acac": (acac.numbers, acac.positions), "gete_cluster": (z[keep], d[keep])}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", required=True, help="git directory of M3RG-IITD/MDBENCHGNN")
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args()
    import torch

    # e3nn 0.4.4 torch.loads its tables of constants, which hold slices: torch >= 2.6 loads
    # weights only unless slice is allowed
    torch.serialization.add_safe_globals([slice])
    import e3nn

    tmp = Path(tempfile.mkdtemp(prefix="equiformer-ref-"))
    for rel, text in SHIMS.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_text(text)
    names = subprocess.run(["git", "-C", args.repo, "ls-tree", "--name-only", f"{COMMIT}:{NETS}"],
                           check=True, capture_output=True, text=True).stdout.split()
    (tmp / "nets").mkdir()
    for name in names:
        if name.endswith(".py") and name != "__init__.py":
            (tmp / "nets" / name).write_bytes(subprocess.run(
                ["git", "-C", args.repo, "show", f"{COMMIT}:{NETS}/{name}"], check=True,
                capture_output=True).stdout)
    (tmp / "nets" / "__init__.py").write_text(
        "from .registry import model_entrypoint\nfrom .graph_attention_transformer_md17 import *\n")
    sys.path[:0] = [str(tmp)]
    import nets.graph_attention_transformer as gat
    from nets.graph_attention_transformer_md17 import GraphAttentionTransformerMD17

    def embed(self, node_atom):  # the original, with the one-hot in the weights' dtype
        onehot = torch.nn.functional.one_hot(node_atom, self.max_atom_type).to(
            self.atom_type_lin.tp.weight.dtype)
        return self.atom_type_lin(onehot), onehot, onehot

    gat.NodeEmbeddingNetwork.forward = embed
    torch.manual_seed(SEED)
    model = GraphAttentionTransformerMD17(**SMALL).double().eval()
    with torch.no_grad():  # biases and norm offsets start at zero: make them count
        for p in model.parameters():
            if torch.count_nonzero(p) == 0:
                p.normal_(0.0, 0.1)
    out = {}
    for label, (z, pos) in configurations().items():
        energy, forces = model(node_atom=torch.tensor(z, dtype=torch.long),
                               pos=torch.tensor(pos, dtype=torch.float64),
                               batch=torch.zeros(len(z), dtype=torch.long))
        out[f"{label}_z"] = np.asarray(z)
        out[f"{label}_pos"] = np.asarray(pos, dtype=np.float64)
        out[f"{label}_energy"] = energy.detach().numpy().ravel()
        out[f"{label}_forces"] = forces.detach().numpy()
        print(f"{label}: {len(z)} atoms, energy {float(energy):.12g}, max |F| "
              f"{float(forces.abs().max()):.6g}")
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict()}, args.out / "equiformer-small.pt")
    np.savez(args.out / "reference.npz", **out)
    (args.out / "config.json").write_text(json.dumps({
        "model_class": "GraphAttentionTransformerMD17", "kwargs": SMALL, "dtype": "float64",
        "seed": SEED, "upstream": f"M3RG-IITD/MDBENCHGNN@{COMMIT}:{NETS}",
        "e3nn": e3nn.__version__, "torch": torch.__version__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "state_dict_keys": len(model.state_dict())}, indent=1) + "\n")


if __name__ == "__main__":
    main()
