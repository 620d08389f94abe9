"""DimeNet++'s energy model on explicit edges, and how far it reaches.

:class:`DimeNetPPEnergy` reproduces PyG's ``DimeNetPlusPlus.forward`` but takes the edges it
is given (``edge_index``, ``shift``) instead of building its own radius graph, so that it
runs in LAMMPS with ghost atoms (all shifts zero, every periodic image a distinct atom) and
in ASE with periodic shifts (the same atom index may be a neighbour through several images,
itself included). It is scriptable with ``torch.jit.script`` and differentiable w.r.t.
``pos`` and ``shift``; it needs neither torch_cluster, torch_sparse nor sympy at run time.

Conventions. PyG's ``radius_graph`` gives ``edge_index = (row, col)`` with ``row`` the
source ``j`` and ``col`` the target ``i`` ("j->i"); the message ``m_ji`` belongs to the
target ``i`` (``EmbeddingBlock`` concatenates ``x[i], x[j]``, ``OutputPPBlock`` scatters
over ``i``). Our edge ``e = (a, b) = (edge_index[0, e], edge_index[1, e])`` with ``r_e =
pos[b] - pos[a] + shift[e]`` (Å) is mapped to PyG's ``i = a`` (target, centre) and ``j =
b`` (source), so PyG's ``pos[i] - pos[j]`` is ``-r_e``. Triplets: :mod:`.triplets`.
Distances and angles follow PyG's DimeNet++ branch (``pos_ij = -r_e``, ``pos_jk = -r_f``,
``atan2(|pos_ij x pos_jk|, pos_ij . pos_jk)``); with zero shifts they are bit for bit
PyG's.

Reused from PyG (scripted as they are): ``rbf`` (``BesselBasisLayer``), ``emb``
(``EmbeddingBlock``), ``interaction_blocks`` (``InteractionPPBlock``), ``output_blocks``
(``OutputPPBlock``) and the ``Envelope`` of ``sbf``; re-implemented: the spherical basis
(:mod:`.basis`).

Per-atom energy: ``P[:, 0]`` with ``P`` the sum of the output blocks, exactly what PyG's
``forward`` sums over atoms (``out_channels`` must be 1). Unlike PyG's ``radius_graph``,
which keeps at most ``max_num_neighbors`` (default 32) neighbours per atom, all edges given
are used: the two agree only where no atom has more neighbours than that within the cutoff.

``reach(num_blocks, cutoff) = (num_blocks + 1) * cutoff``: the embedding makes ``m_ji``
depend on atoms ``i`` and ``j`` (one hop, ``< cutoff``); each interaction block updates
``m_ji`` from the ``m_kj`` on the edges into ``j``, one hop further. An atom's energy (its
``m_ji`` after the embedding and after each block) thus depends on atoms at most
``num_blocks + 1`` hops away, each hop shorter than the cutoff. A 1-D chain with spacing
``0.8 * cutoff`` confirms it: atom 0's energy changes when atom ``num_blocks + 1`` moves
(``(num_blocks + 1) * 0.8 * cutoff``) and not when atom ``num_blocks + 2`` moves. Ghost
atoms must reach this far (the adapter gives ``Source.reach``; ``num_layers`` is
``num_blocks``).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor

from ..offsets import PerTypeAffine
from .basis import SphericalBasis
from .pyg import import_pyg
from .triplets import triplets_of


def reach(num_blocks: int, cutoff: float) -> float:
    """How far (Å) an atom can influence a local atom's energy: ``(num_blocks + 1) * cutoff``.

    The embedding block couples the two atoms of an edge (one hop); each of the
    ``num_blocks`` interaction blocks adds one hop (``m_ji`` from ``m_kj``). Every hop is
    shorter than the cutoff, so the bound is strict: only atoms closer than this matter.
    """
    return (int(num_blocks) + 1) * float(cutoff)


class DimeNetPPEnergy(torch.nn.Module):
    """Per-atom energies (eV) of a PyG ``DimeNetPlusPlus`` from explicit edges and shifts.

    ``forward(pos [N, 3], types [N] (model type index), edge_index [2, E], shift [E, 3])``;
    an edge ``(i, j)`` has the vector ``pos[j] - pos[i] + shift[e]``; edges come in both
    directions. ``atomic_numbers[t]`` is the atomic number of model type ``t``. The PyG model
    is copied (casting this module's dtype leaves it alone).
    """

    def __init__(self, model: torch.nn.Module, atomic_numbers: Sequence[int]):
        super().__init__()
        import_pyg()
        from torch_geometric.nn.models.dimenet import DimeNetPlusPlus

        if not isinstance(model, DimeNetPlusPlus):
            raise TypeError(f"expected torch_geometric DimeNetPlusPlus, got {type(model)}")
        out_channels = model.output_blocks[0].lin.out_features
        if out_channels != 1:
            raise ValueError(
                f"DimeNetPlusPlus has out_channels={out_channels}; an energy model needs 1 "
                "(one energy per atom)")
        z = [int(v) for v in atomic_numbers]
        if not z or min(z) < 0 or max(z) >= model.emb.emb.num_embeddings:
            raise ValueError(f"atomic numbers {z} outside the model's embedding table")
        model = copy.deepcopy(model)
        self.cutoff = float(model.cutoff)
        self.num_blocks = int(model.num_blocks)
        self.register_buffer("z_of_type", torch.tensor(z, dtype=torch.long))
        self.rbf = model.rbf
        self.sbf = SphericalBasis(model.sbf)
        self.emb = model.emb
        self.output_first = model.output_blocks[0]
        self.output_blocks = torch.nn.ModuleList(list(model.output_blocks)[1:])
        self.interaction_blocks = model.interaction_blocks

    @torch.jit.unused
    def reach(self) -> float:
        return reach(self.num_blocks, self.cutoff)

    def forward(self, pos: Tensor, types: Tensor, edge_index: Tensor, shift: Tensor) -> Tensor:
        num_nodes = pos.size(0)
        z = self.z_of_type[types]
        i, j = edge_index[0], edge_index[1]  # PyG's target i (centre) and source j
        vec = pos[j] - pos[i] + shift.to(pos.dtype)
        dist = vec.pow(2).sum(dim=-1).sqrt()
        idx_kj, idx_ji = triplets_of(i, j, shift, num_nodes)
        pos_ij, pos_jk = -vec[idx_ji], -vec[idx_kj]
        a = (pos_ij * pos_jk).sum(dim=-1)
        b = torch.linalg.vector_norm(torch.cross(pos_ij, pos_jk, dim=1), 2.0, dim=-1)
        angle = torch.atan2(b, a)

        rbf = self.rbf(dist)
        sbf = self.sbf(dist, angle, idx_kj)

        x = self.emb(z, rbf, i, j)
        P = self.output_first(x, rbf, i, num_nodes)
        for interaction_block, output_block in zip(self.interaction_blocks,
                                                   self.output_blocks):
            x = interaction_block(x, rbf, sbf, idx_kj, idx_ji)
            P = P + output_block(x, rbf, i, num_nodes)
        return P[:, 0]


class DimeNetPPAtomEnergy(torch.nn.Module):
    """Per-atom energies (eV) of a deployed DimeNet++: ``scale * e_i + e0[type_i]``, with
    ``e_i`` from :class:`DimeNetPPEnergy` (in the model's dtype) and the scale and
    per-type reference energies applied in float64 (``e0`` ~ -200 eV would lose
    digits in float32)."""

    def __init__(self, net: DimeNetPPEnergy, scale: float, e0_of_type: Sequence[float]):
        super().__init__()
        self.net = net
        self.offsets = PerTypeAffine(float(scale), e0_of_type, torch.float64)

    def forward(self, pos: Tensor, types: Tensor, edge_index: Tensor, shift: Tensor) -> Tensor:
        return self.offsets(self.net(pos, types, edge_index, shift), types)
