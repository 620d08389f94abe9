"""PaiNN (and SchNet) models trained with SchNetPack 2.

Source: the model file SchNetPack's trainer writes (``best_model``: ``torch.save`` of a
``NeuralNetworkPotential``, by ``spktrain`` or SchNetPack's ``ModelCheckpoint``; a pickle,
loaded with SchNetPack's own ``load_model`` only because the user named it).

Why SchNetPack 2.1.1 and a shim: 2.2.0 needs Python ≥ 3.12, and 2.1.1 does not import on
torch 2.13 because ``schnetpack.data.loader`` imports ``T_co`` from
``torch.utils.data.dataloader``, which torch removed. ``T_co`` is a ``TypeVar`` used only in
a type annotation there, so :func:`import_schnetpack` defines it (nothing else) before
importing SchNetPack. SchNetPack 2.1.1 also pins ``sympy<=1.12`` (torch 2.13 needs ≥ 1.13):
it is installed with ``--no-deps`` (the ``[schnetpack]`` extra lists what it needs), as
mace-torch is.

SchNetPack's representations already take a neighbour list as input (``_Rij = R[j] − R[i]
+ offsets``, ``_idx_i``, ``_idx_j``: our edge convention), so the adapter calls the trained
``representation`` and the ``Atomwise`` output network on our edges unchanged, and adds the
post-processing that is per atom: ``AddOffsets``' mean (per atom when the property is
extensive) and atom references. Refused in one line: a non-extensive mean, ``avg``
aggregation, electronic (charge/spin) embeddings, other post-processors.

Reach: each interaction reads neighbours within the cutoff and PaiNN's mixing is per atom,
so n_interactions × cutoff. Species: SchNetPack embeds atomic numbers and its model file
records none: from ``--species``, else from the training database of the run that wrote
the model (spktrain's ``.hydra/config.yaml`` ``data.datapath``, or a ``*.db`` beside the
model); ``species_from`` in the metadata says which.
"""

from __future__ import annotations

import warnings

import torch

from ...errors import located
from . import Source, refuse, registry
from .offsets import PerTypeAffine
from .species import resolve as resolve_species

FAMILY = registry.of_module(__name__)  # accepts --species: its model files record none
NAME = FAMILY.name


def import_schnetpack():
    """SchNetPack 2.1.1 on torch 2.13: define the one name it imports that torch removed."""
    import typing

    import torch.utils.data.dataloader as dl

    if not hasattr(dl, "T_co"):
        dl.T_co = typing.TypeVar("T_co", covariant=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import schnetpack
    return schnetpack


class PaiNNRepresentation(torch.nn.Module):
    """SchNetPack's ``PaiNN.forward`` on its own trained modules, with two differences: the
    vector features start as zeros of the model's dtype (SchNetPack allocates them in
    torch's *default* dtype, so a float32 PaiNN fails wherever that default is float64: in
    a Python session beside a float64 MACE calculator, for one), and the messages are
    summed by :func:`_painn_messages` (traceable with a dynamic atom count)."""

    __constants__ = ["share_filters", "n_interactions", "n_atom_basis"]

    def __init__(self, rep):
        super().__init__()
        self.embedding = rep.embedding
        self.radial_basis = rep.radial_basis
        self.cutoff_fn = rep.cutoff_fn
        self.filter_net = rep.filter_net
        self.interactions = rep.interactions
        self.mixing = rep.mixing
        self.share_filters = bool(rep.share_filters)
        self.n_interactions = int(rep.n_interactions)
        self.n_atom_basis = int(rep.n_atom_basis)

    def forward(self, z: torch.Tensor, r_ij: torch.Tensor, idx_i: torch.Tensor,
                idx_j: torch.Tensor) -> torch.Tensor:
        n_atoms = z.shape[0]
        d_ij = torch.norm(r_ij, dim=1, keepdim=True)
        dir_ij = r_ij / d_ij
        phi_ij = self.radial_basis(d_ij)
        fcut = self.cutoff_fn(d_ij)
        filters = self.filter_net(phi_ij) * fcut[..., None]
        if self.share_filters:
            filter_list = [filters] * self.n_interactions
        else:
            filter_list = torch.split(filters, 3 * self.n_atom_basis, dim=-1)
        q = self.embedding(z).unsqueeze(1)
        mu = torch.zeros((q.shape[0], 3, q.shape[2]), device=q.device, dtype=q.dtype)
        for i, (interaction, mixing) in enumerate(zip(self.interactions, self.mixing)):
            x = interaction.interatomic_context_net(q)
            q, mu = _painn_messages(q, mu, x, filter_list[i], dir_ij, idx_i, idx_j,
                                    n_atoms, self.n_atom_basis)
            q, mu = mixing(q, mu)
        return q.squeeze(1)


def _painn_messages(q: torch.Tensor, mu: torch.Tensor, x: torch.Tensor, w_ij: torch.Tensor,
                    dir_ij: torch.Tensor, idx_i: torch.Tensor, idx_j: torch.Tensor,
                    n_atoms: int, n_basis: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``PaiNNInteraction.forward`` after its context network (``x``): the same sums,
    with the atom count kept a size of the inputs. SchNetPack's ``scatter_add`` is a
    scripted function, and calling it turns a traced atom count into a constant."""
    dq, dmu_r, dmu_mu = torch.split(w_ij * x[idx_j], n_basis, dim=-1)
    dmu = dmu_r * dir_ij[..., None] + dmu_mu * mu[idx_j]
    dq = q.new_zeros((n_atoms,) + dq.shape[1:]).index_add(0, idx_i, dq)
    dmu = mu.new_zeros((n_atoms,) + dmu.shape[1:]).index_add(0, idx_i, dmu)
    return q + dq, mu + dmu


class _Generic(torch.nn.Module):
    """Any other SchNetPack representation, called with its input dict as it is."""

    def __init__(self, rep):
        super().__init__()
        self.rep = rep

    def forward(self, z: torch.Tensor, r_ij: torch.Tensor, idx_i: torch.Tensor,
                idx_j: torch.Tensor) -> torch.Tensor:
        inputs: dict[str, torch.Tensor] = {"_atomic_numbers": z, "_Rij": r_ij,
                                           "_idx_i": idx_i, "_idx_j": idx_j}
        return self.rep(inputs)["scalar_representation"]


class SchNetPackEnergy(torch.nn.Module):
    """Per-atom energies (eV) of a SchNetPack representation + ``Atomwise`` network from
    explicit edges and shifts, with the per-atom offsets of its post-processing
    (``offset_per_z``: eV by atomic number, in the model's dtype)."""

    def __init__(self, representation, outnet, atomic_numbers: list[int],
                 offset_per_z: torch.Tensor):
        super().__init__()
        self.representation = (PaiNNRepresentation(representation)
                               if type(representation).__name__ == "PaiNN"
                               else _Generic(representation))
        self.outnet = outnet
        self.register_buffer("z_of_type", torch.tensor(atomic_numbers, dtype=torch.long))
        self.offsets = PerTypeAffine(None, offset_per_z[self.z_of_type], offset_per_z.dtype)

    def forward(self, pos: torch.Tensor, types: torch.Tensor, edge_index: torch.Tensor,
                shift: torch.Tensor) -> torch.Tensor:
        z = self.z_of_type[types]
        i, j = edge_index[0], edge_index[1]
        r_ij = pos.index_select(0, j) - pos.index_select(0, i) + shift
        y = self.outnet(self.representation(z, r_ij, i, j)).view(-1)
        return self.offsets(y, types)


def _load_model(path):
    import_schnetpack()
    from schnetpack.utils.compatibility import load_model

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return load_model(str(path), device=torch.device("cpu"),
                              weights_only=False).eval()
    except Exception as exc:  # noqa: BLE001
        raise located(path, f"cannot load as a SchNetPack model ({type(exc).__name__})"
                      ) from None


def _parts(path, model):
    """(representation, Atomwise module, energy key, per-atom offsets by Z)."""
    names = {type(m).__name__: m for m in model.output_modules}
    forces = names.get("Forces")
    if forces is None:
        raise located(path, "a SchNetPack model without a Forces output is not a force field")
    key = forces.energy_key
    atomwise = [m for m in model.output_modules
                if type(m).__name__ == "Atomwise" and m.output_key == key]
    if not atomwise:
        raise located(path, f"no Atomwise output module predicts '{key}'")
    atomwise = atomwise[0]
    if atomwise.aggregation_mode != "sum":
        refuse.not_a_sum(path, f"Atomwise aggregation '{atomwise.aggregation_mode}'")
    rep = model.representation
    if len(getattr(rep, "electronic_embeddings", [])) > 0:
        refuse.charge_spin(path, FAMILY.model, "electronic (charge/spin) embeddings")
    n_z = int(rep.embedding.num_embeddings)
    offset = torch.zeros(n_z, dtype=torch.float64)
    if model.do_postprocessing:
        for post in model.postprocessors:
            kind = type(post).__name__
            if kind == "CastTo64":
                continue
            if kind != "AddOffsets" or post._property != key:
                refuse.not_reproduced(path, f"post-processor {kind}")
            if post.add_mean:
                if not post.is_extensive:
                    refuse.global_energy_mean(path, float(post.mean.view(-1)[0]),
                                              "AddOffsets' non-extensive mean")
                offset = offset + float(post.mean.view(-1)[0])
            if post.add_atomrefs:
                ref = post.atomref.detach().double().view(-1)
                offset[: len(ref)] = offset[: len(ref)] + ref[:n_z]
    return rep, atomwise, offset


def _training_databases(path):
    """The SchNetPack databases a training run beside the model used: the ``data.datapath``
    of spktrain's Hydra config (``.hydra/config.yaml`` beside the model or one level up),
    else the ``*.db`` files in the model's directory."""
    from pathlib import Path

    import yaml

    here = Path(path).resolve().parent
    for cfg in (here / ".hydra" / "config.yaml", here.parent / ".hydra" / "config.yaml"):
        if cfg.is_file():
            try:
                datapath = (yaml.safe_load(cfg.read_text()) or {}).get("data", {}).get(
                    "datapath")
            except (yaml.YAMLError, AttributeError):
                datapath = None
            if datapath:
                p = Path(datapath)
                p = p if p.is_absolute() else cfg.parent.parent / p
                if p.is_file():
                    return [p]
    return sorted(here.glob("*.db"))


def _species_from_training_data(path):
    """(atomic numbers in increasing order, where from) of the training database, or
    None."""
    from ase.db import connect

    for db in _training_databases(path):
        try:
            with connect(str(db)) as conn:
                z = sorted({int(n) for row in conn.select() for n in row.numbers})
        except Exception:  # noqa: BLE001 - not an ASE database: look further
            continue
        if z:
            return z, f"training data ({db.name}, the SchNetPack database beside the model)"
    return None


def load(path, species=None) -> Source:
    spk = import_schnetpack()
    model = _load_model(path)
    rep, atomwise, offset = _parts(path, model)
    found = resolve_species(path, FAMILY.model, species,
                            found=lambda: _species_from_training_data(path),
                            searched="nor was a training database found beside it")
    z = found.numbers
    cutoff = getattr(rep, "cutoff", None)
    if cutoff is None:
        refuse.no_cutoff(path, "cutoff", "the representation")
    cutoff = float(cutoff)
    layers = len(rep.interactions)
    dtype = next(rep.parameters()).dtype
    energy = SchNetPackEnergy(rep, atomwise.outnet, z, offset.to(dtype))
    return Source(
        family=NAME, energy_model=energy, type_names=found.symbols, r_max=cutoff,
        num_layers=layers, strictly_local=False, dtype=dtype,
        family_version=spk.__version__,
        reference=lambda: _calculator(path, cutoff),
        stages_unavailable="SchNetPack models are not split into stages yet",
        extra={"species_from": found.where, "model": type(rep).__name__})


def _calculator(path, cutoff):
    """SchNetPack's own ASE calculator on the same file (its own neighbour list; float64).

    Its loader calls ``torch.load`` without ``weights_only``, which torch ≥ 2.6 defaults to
    True, refusing every SchNetPack model: the one method that loads is given
    ``weights_only=False`` (the user named this file); the calculation is SchNetPack's."""
    import_schnetpack()
    from schnetpack.interfaces import SpkCalculator
    from schnetpack.transform import ASENeighborList

    class _Calc(SpkCalculator):
        def _load_model(self, model_file):
            return _load_model(model_file).to(torch.float64).eval()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _Calc(str(path), neighbor_list=ASENeighborList(cutoff=cutoff),
                     energy_unit="eV", position_unit="Ang", dtype=torch.float64)
