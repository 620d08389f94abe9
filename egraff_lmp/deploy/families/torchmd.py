"""TorchMD-Net equivariant transformer (ET) checkpoints written by ``torchmd-train``.

Source: a ``torchmd-train`` checkpoint (``*.ckpt``: a Lightning pickle with the model's
``hyper_parameters`` and ``state_dict``; unpickling runs code from the file, done only
because the user named it), loaded with TorchMD-Net's own ``load_model``.

Why the network is taken apart: ``TorchMD_ET.forward`` builds its own neighbour list (a
Warp kernel, periodic only in one fixed box at least twice the cutoff wide). The adapter
keeps every learned part — ``embedding``, ``distance_expansion``, ``neighbor_embedding``,
the ``attention_layers``, ``out_norm``, the output model's ``pre_reduce``, the ``std``
scale and an ``Atomref`` prior — and feeds them the edges it is given, in TorchMD-Net's
own form: ``edge_index = (neighbour, centre)``, ``edge_vec = pos[neighbour] −
pos[centre]`` (our r_ij), both directions, ``cutoff_lower ≤ r < cutoff_upper``, plus one
self-loop per atom (weight 0, vector 0), which the ET attends to.

What is reproduced and what is refused (one line each):
- reproduced: per-atom output (``Scalar``/``EquivariantScalar``), ``std``, ``Atomref``
  (enabled or not, as the checkpoint says), ``vector_cutoff``;
- refused: a non-zero global ``mean`` (``standardize: true``; added *after* the sum over
  atoms, so not a per-atom energy and not splittable over LAMMPS ranks), ``reduce_op:
  mean``, the ``ZBL``, ``D2`` and ``Coulomb`` priors (pairwise terms on their own
  neighbour lists, after the network), charge/spin inputs, other TorchMD-Net models.

Reach: every attention layer reads neighbours within ``cutoff_upper``, and the neighbour
embedding (``neighbor_embedding: true``) is one more hop, so a local atom's energy depends
on atoms up to ``(num_layers + neighbor_embedding) × cutoff_upper`` away: the ghost shell.

Species: the ET embeds atomic numbers and the checkpoint holds no species list. They come
from ``--species``, or from the training data the checkpoint records (``embed_files`` of a
``Custom`` dataset, or ``dataset_arg.embedglob`` of one derived from it; looked up as
written, beside the checkpoint and in its parents); the
metadata says which (``species_from``).
"""

from __future__ import annotations

import glob
import warnings
from pathlib import Path

import torch

from ...errors import located
from . import Source, refuse, registry
from .offsets import PerTypeAffine
from .reference import Evaluation, ReferenceCalculator
from .species import resolve as resolve_species

FAMILY = registry.of_module(__name__)  # accepts --species: its checkpoints record none
NAME = FAMILY.name

_PRIORS_REFUSED = {"ZBL": "a ZBL repulsion on its own neighbour list",
                   "D2": "a D2 dispersion on its own neighbour list",
                   "Coulomb": "a Coulomb term on its own neighbour list, with charges"}


class _GatedBlock(torch.nn.Module):
    """TorchMD-Net's ``GatedEquivariantBlock`` with its parameters and arithmetic, without
    the Python warning it raises for atoms whose vector features are zero: in LAMMPS the
    outermost ghost atoms have no neighbours on every step, which would print it every step
    (their energies are never counted)."""

    def __init__(self, block):
        super().__init__()
        self.vec1_proj = block.vec1_proj
        self.vec2_proj = block.vec2_proj
        self.update_net = block.update_net
        self.out_channels = int(block.out_channels)
        self.has_act = block.act is not None
        self.act = block.act if self.has_act else torch.nn.Identity()

    def forward(self, x: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        buf = self.vec1_proj(v)
        vec1 = torch.zeros(buf.size(0), buf.size(2), device=buf.device, dtype=buf.dtype)
        mask = (buf != 0).view(buf.size(0), -1).any(dim=1)
        vec1[mask] = torch.norm(buf[mask], dim=-2)  # zero rows detached, as TorchMD-Net
        vec2 = self.vec2_proj(v)
        x = torch.cat([x, vec1], dim=-1)
        x, v = torch.split(self.update_net(x), self.out_channels, dim=-1)
        v = v.unsqueeze(1) * vec2
        if self.has_act:
            x = self.act(x)
        return x, v


class TorchMDETEnergy(torch.nn.Module):
    """Per-atom energies (eV) of a TorchMD-Net ET from explicit edges and shifts."""

    __constants__ = ["cutoff_lower", "cutoff_upper", "has_ne", "gated"]

    def __init__(self, net: torch.nn.Module, atomic_numbers: list[int]):
        super().__init__()
        rep = net.representation_model
        self.embedding = rep.embedding
        self.distance_expansion = rep.distance_expansion
        self.has_ne = rep.neighbor_embedding is not None
        ne = rep.neighbor_embedding
        self.ne_embedding = ne.embedding if self.has_ne else torch.nn.Identity()
        self.ne_distance_proj = ne.distance_proj if self.has_ne else torch.nn.Identity()
        self.ne_combine = ne.combine if self.has_ne else torch.nn.Identity()
        self.ne_cutoff = ne.cutoff if self.has_ne else torch.nn.Identity()
        self.attention_layers = rep.attention_layers
        self.out_norm = rep.out_norm
        self.output_model = net.output_model
        self.gated = type(net.output_model).__name__ == "EquivariantScalar"
        self.gated_blocks = torch.nn.ModuleList(
            [_GatedBlock(b) for b in net.output_model.output_network] if self.gated else [])
        self.cutoff_lower = float(rep.cutoff_lower)
        self.cutoff_upper = float(rep.cutoff_upper)
        dtype = rep.embedding.weight.dtype
        self.register_buffer("z_of_type", torch.tensor(atomic_numbers, dtype=torch.long))
        std = net.std if net.std is not None else torch.ones(())
        ref = torch.zeros(int(max(atomic_numbers)) + 1, dtype=dtype)
        for prior in (net.prior_model or []):
            if type(prior).__name__ == "Atomref" and prior.enable:
                w = prior.atomref.weight.detach().view(-1).to(dtype)
                n = min(len(ref), len(w))
                ref = ref.clone()
                ref[:n] = ref[:n] + w[:n]
        # std and the Atomref prior's reference energies (eV) of each model type
        self.offsets = PerTypeAffine(std, ref[self.z_of_type], dtype)

    def forward(self, pos: torch.Tensor, types: torch.Tensor, edge_index: torch.Tensor,
                shift: torch.Tensor) -> torch.Tensor:
        n = pos.shape[0]
        z = self.z_of_type[types]
        centre, nb = edge_index[0], edge_index[1]
        vec = pos.index_select(0, nb) - pos.index_select(0, centre) + shift
        dist = torch.linalg.vector_norm(vec, dim=1)
        keep = dist < self.cutoff_upper
        if self.cutoff_lower > 0:
            keep = keep & (dist >= self.cutoff_lower)
        centre, nb, vec, dist = centre[keep], nb[keep], vec[keep], dist[keep]
        loops = torch.arange(n, dtype=edge_index.dtype, device=pos.device)
        # TorchMD-Net's layout: row 0 = the neighbour (source), row 1 = the centre
        tm_index = torch.cat([torch.stack([nb, centre]), torch.stack([loops, loops])], dim=1)
        weight = torch.cat([dist, torch.zeros(n, dtype=pos.dtype, device=pos.device)])
        unit = torch.cat([vec / dist.unsqueeze(1),
                          torch.zeros((n, 3), dtype=pos.dtype, device=pos.device)])
        attr = self.distance_expansion(weight)
        x = self.embedding(z)
        if self.has_ne:
            # TorchMD-Net's NeighborEmbedding without its self-loops: the same parameters,
            # the same sums (an atom's own periodic image counts as a neighbour here)
            w = self.ne_distance_proj(attr[: dist.shape[0]]) * self.ne_cutoff(dist).view(-1, 1)
            msg = w * self.ne_embedding(z).index_select(0, nb)
            xn = torch.zeros((n, x.shape[1]), dtype=x.dtype, device=x.device).index_add(
                0, centre, msg)
            x = self.ne_combine(torch.cat([x, xn], dim=1))
        v = torch.zeros((n, 3, x.shape[1]), dtype=x.dtype, device=x.device)
        for attn in self.attention_layers:
            dx, dv = attn(x, v, tm_index, weight, attr, unit)
            x = x + dx
            v = v + dv
        x = self.out_norm(x)
        if self.gated:  # EquivariantScalar.pre_reduce
            for block in self.gated_blocks:
                x, v = block(x, v)
            e = x + v.sum() * 0
        else:
            batch = torch.zeros(n, dtype=torch.long, device=pos.device)
            e = self.output_model.pre_reduce(x, v, z, pos, batch)
        return self.offsets(e.view(-1), types)


def _checkpoint(path) -> dict:
    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=False)
        hp = ckpt["hyper_parameters"]
        ckpt["state_dict"]
    except Exception as exc:  # noqa: BLE001
        raise located(path, f"cannot read as a torchmd-train checkpoint "
                            f"({type(exc).__name__})") from None
    return hp


def _species_from_training_data(path, hp) -> tuple[list[int], str] | None:
    pattern = hp.get("embed_files")
    if hp.get("dataset") != "Custom":  # a Custom-derived dataset named with its globs
        pattern = (hp.get("dataset_arg") or {}).get("embedglob")
    if not pattern:
        return None
    bases = [Path.cwd(), *Path(path).resolve().parents]
    for base in bases:
        files = sorted(glob.glob(str(base / pattern)))
        if files:
            import numpy as np

            z = sorted({int(v) for f in files for v in np.load(f).ravel()})
            return z, f"training data ({Path(files[0]).name} of the checkpoint's Custom " \
                      f"dataset, found under {base})"
    return None


def _refused_settings(path, hp):
    """One line for a hyper-parameter the artifact cannot reproduce (before loading)."""
    model = hp.get("model")
    if model != "equivariant-transformer":
        raise located(path, f"a TorchMD-Net '{model}' model: egraff-lmp deploys TorchMD-Net's "
                            "equivariant-transformer")
    if hp.get("cutoff_upper") is None:
        refuse.no_cutoff(path, "cutoff_upper", "the checkpoint's hyper-parameters")
    if hp.get("charge") or hp.get("spin"):
        refuse.charge_spin(path, FAMILY.model)
    if hp.get("reduce_op", "add") != "add":
        refuse.not_a_sum(path, f"reduce_op '{hp.get('reduce_op')}'")


def _refused_parts(path, net):
    """One line for a part of the loaded network the artifact cannot reproduce."""
    out = type(net.output_model).__name__
    if out not in ("Scalar", "EquivariantScalar"):
        raise located(path, f"output model {out} is not an energy")
    if net.mean is not None and float(net.mean.abs().max()) != 0.0:
        refuse.global_energy_mean(path, float(net.mean), "standardize: true",
                                  "train with an Atomref prior and standardize: false")
    for prior in (net.prior_model or []):
        name = type(prior).__name__
        if name in _PRIORS_REFUSED:
            refuse.not_reproduced(path, f"the {name} prior ({_PRIORS_REFUSED[name]})")
        if name != "Atomref":
            raise located(path, f"unknown TorchMD-Net prior {name}")
    if getattr(net.representation_model, "extra_energy", None) is not None:
        raise located(path, "the representation adds extra energy terms of its own")


def _load_net(path, box=None):
    from torchmdnet.models.model import load_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_model(str(path), derivative=False, box_vecs=box).eval()


def load(path, species=None) -> Source:
    import torchmdnet

    hp = _checkpoint(path)
    _refused_settings(path, hp)
    found = resolve_species(path, FAMILY.model, species,
                            found=lambda: _species_from_training_data(path, hp),
                            searched="nor was the training data the checkpoint names found")
    z = found.numbers
    try:
        net = _load_net(path)
    except Exception as exc:  # noqa: BLE001 - TorchMD-Net raises many kinds
        raise located(path, f"TorchMD-Net's load_model failed ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:160] if str(exc) else ''})") from None
    _refused_parts(path, net)
    layers = int(hp["num_layers"])
    cutoff = float(hp["cutoff_upper"])
    hops = layers + (1 if hp.get("neighbor_embedding") else 0)
    dtype = net.representation_model.embedding.weight.dtype
    return Source(
        family=NAME, energy_model=TorchMDETEnergy(net, z),
        type_names=found.symbols, r_max=cutoff, num_layers=layers,
        strictly_local=False, dtype=dtype, family_version=torchmdnet.__version__,
        reference=lambda: TorchMDNetReference(_load_net(path)),
        stages_unavailable="TorchMD-Net's layers are not split into stages yet",
        reach=hops * cutoff, reference_min_width=2.0 * cutoff,
        extra={"species_from": found.where, "model": hp["model"],
               "neighbor_embedding": bool(hp.get("neighbor_embedding"))})


class TorchMDNetReference(ReferenceCalculator):
    """TorchMD-Net's own forward (its own neighbour list, periodic in the atoms' cell) as
    an ASE calculator, for the parity checks: energy (eV) and forces (eV/Å; autograd, as
    TorchMD-Net's ``derivative``); no per-atom energies (its forward returns the total
    only). Cells must satisfy TorchMD-Net's box rules (lower triangular, each width ≥ 2 ×
    cutoff_upper)."""

    def __init__(self, net):
        super().__init__(net.representation_model.embedding.weight.dtype)
        self.net = net

    def evaluate(self, a) -> Evaluation:
        pos = self.positions(a.positions)
        z = torch.tensor(a.numbers, dtype=torch.long)
        box = torch.tensor(a.cell[:], dtype=self.dtype) if a.pbc.all() else None
        y, _ = self.net(z, pos, box=box)
        return Evaluation(forces=self.forces(y.sum(), pos), energy=float(y.detach().sum()))
