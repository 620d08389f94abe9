"""The one calling convention every deployed artifact implements (see deploy/README.md).

``DeployedModel`` wraps a family's *energy model* — a module mapping (positions [N, 3],
model type index [N], edge index [2, E], edge shift [E, 3]) to per-atom energies [N] — and
adds what every engine needs, once for all families: the energy of the local atoms, forces
on all N atoms (local and ghost) by autograd of that energy, and the virial by autograd with
respect to a symmetric strain applied to positions and shifts.

Conventions: an edge (i, j) = (edge_index[0, e], edge_index[1, e]) has the vector
r_ij = pos[j] − pos[i] + edge_shift[e] (Å). A LAMMPS full neighbour list with explicit
ghost atoms passes zero shifts; ASE passes N = n_local atoms and the periodic shifts
(S @ cell). Inputs and outputs are float64 whatever the model's dtype; the model runs in
its own dtype. Outputs: per-atom energies [N] (eV; their sum over the first ``n_local``
atoms is the energy of the local atoms), forces [N, 3] (eV/Å), virial [3, 3]
(eV, W = −∂E/∂ε = Σ_i r_i ⊗ F_i; zeros unless ``compute_virial``).

A model with heads (multi-head MACE) evaluates the head whose index its buffer
``head_index`` (schema ``ATTR_HEAD``) holds: one 0-dim tensor shared by the energy model and
every stage, which the engines fill in place (:meth:`Artifact.select_head
<egraff_lmp.deploy.artifact.Artifact.select_head>`, ``pair_style egraff ... head NAME``).
"""

from __future__ import annotations

import torch

from .schema import (
    ATTR_HEAD,
    CALLING_CONVENTION,  # noqa: F401  (the artifact's, stated once)
)


def edge_inputs(pos: torch.Tensor, edge_index: torch.Tensor, edge_shift: torch.Tensor,
                dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """What the energy model is given: zero displacements u [N, 3] and edge shifts equal
    to the whole edge vectors r_ij = pos[j] − pos[i] + edge_shift, formed in float64 and
    only then cast to ``dtype``.

    The energy model sees r_ij = u[j] − u[i] + shift, the same vectors, but without the
    rounding of absolute coordinates: cast first, a float32 position 100 Å from the origin
    is off by up to 4e-6 Å, so forces from large boxes (and LAMMPS' ghosts beyond them)
    carry noise that grows with the coordinates. ``u`` is (pos − pos.detach()) in
    ``dtype``: zero, with the gradient of ``pos`` (forces, and the strain's virial, flow
    through it as through the positions)."""
    p = pos.detach().to(torch.float64)
    vec = p.index_select(0, edge_index[1]) - p.index_select(0, edge_index[0]) \
        + edge_shift.to(torch.float64)
    return (pos - pos.detach()).to(dtype), vec.to(dtype)


class DeployedModel(torch.nn.Module):
    def __init__(self, energy_model: torch.nn.Module, dtype: torch.dtype):
        super().__init__()
        self.energy_model = energy_model
        self.model_dtype = dtype
        for p in self.energy_model.parameters():
            p.requires_grad_(False)
        if hasattr(energy_model, ATTR_HEAD):
            # a model with heads: the very tensor its parts read, where the engines find it
            self.register_buffer(ATTR_HEAD, getattr(energy_model, ATTR_HEAD))

    def forward(self, pos: torch.Tensor, types: torch.Tensor, edge_index: torch.Tensor,
                edge_shift: torch.Tensor, n_local: int,
                compute_virial: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        dtype = self.model_dtype
        zero, shift = edge_inputs(pos, edge_index, edge_shift, dtype)
        pos = zero.detach().requires_grad_(True)
        strain = torch.zeros((3, 3), dtype=dtype, device=pos.device)
        if compute_virial:
            strain.requires_grad_(True)
        sym = 0.5 * (strain + strain.transpose(0, 1))
        atom_energy = self.energy_model(pos + pos @ sym, types, edge_index, shift + shift @ sym)
        e_local = atom_energy[:n_local].sum()
        if compute_virial:
            grads = torch.autograd.grad([e_local], [pos, strain], allow_unused=True)
        else:
            grads = torch.autograd.grad([e_local], [pos], allow_unused=True)
        g_pos = grads[0]
        forces = torch.zeros_like(pos) if g_pos is None else -g_pos
        virial = torch.zeros((3, 3), dtype=torch.float64, device=pos.device)
        if compute_virial:
            g_strain = grads[1]
            if g_strain is not None:
                virial = -g_strain.to(torch.float64)
        return (atom_energy.detach().to(torch.float64), forces.detach().to(torch.float64),
                virial.detach())

    @torch.jit.export
    def forward_edges(self, pos: torch.Tensor, types: torch.Tensor, edge_index: torch.Tensor,
                      edge_shift: torch.Tensor, n_local: int
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Calling convention 2: :meth:`forward`'s per-atom energies and forces, and the
        gradient of the local energy with respect to every edge vector, g_e = ∂E_local/∂r_e
        (f64 [E, 3], eV/Å), from which the engines tally per-atom virials: edge e = (i, j)
        adds −½ r_e ⊗ g_e (eV) to atoms i and j; summed over edges it is the virial.

        The energy model sees positions only through the edge vectors (u = 0 plus the whole
        vector as the shift, :func:`edge_inputs`), so g_e is the gradient with respect to the
        shift input, and F_i = Σ_{e: i→·} g_e − Σ_{e: ·→i} g_e."""
        dtype = self.model_dtype
        shift_in = edge_shift.detach().to(torch.float64).requires_grad_(True)
        zero, shift = edge_inputs(pos, edge_index, shift_in, dtype)
        pos = zero.detach().requires_grad_(True)
        atom_energy = self.energy_model(pos, types, edge_index, shift)
        e_local = atom_energy[:n_local].sum()
        grads = torch.autograd.grad([e_local], [pos, shift_in], allow_unused=True)
        g_pos, g_edge = grads[0], grads[1]
        forces = torch.zeros_like(pos) if g_pos is None else -g_pos
        if g_edge is None:
            g_edge = torch.zeros_like(shift_in)
        return (atom_energy.detach().to(torch.float64), forces.detach().to(torch.float64),
                g_edge.detach())


def edge_virials(vectors: torch.Tensor, edge_grad: torch.Tensor) -> torch.Tensor:
    """The virial of each edge, −r_e ⊗ g_e (f64 [E, 3, 3], eV; component [a, b] = −r_a g_b,
    LAMMPS' order of r ⊗ f), from its vector r_e (Å) and g_e = ∂E/∂r_e (eV/Å)."""
    return -vectors.unsqueeze(2) * edge_grad.unsqueeze(1)


class StagedDeployedModel(DeployedModel):
    """A deployed model that also exposes its message-passing layers as stages.

    ``forward`` is calling convention 1, unchanged. The stages (see
    :mod:`egraff_lmp.deploy.stages` and deploy/README.md) let an engine run one layer at a
    time, exchanging the features a layer reads from its neighbours between layers, and
    back-propagate layer by layer with vector-Jacobian products of each stage's outputs
    (autograd on the retained graph, from Python or C++). ``stages`` is a family's module
    with ``embed(types, dtype)`` and ``layers`` (a ModuleList of per-layer stages with the
    signature of :meth:`stage_layer`).
    """

    def __init__(self, energy_model: torch.nn.Module, stages: torch.nn.Module,
                 dtype: torch.dtype):
        super().__init__(energy_model, dtype)
        self.stages = stages
        for p in self.stages.parameters():
            p.requires_grad_(False)

    @torch.jit.export
    def stage_embed(self, types: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Stage 0, from the types of all N atoms alone: the features layer 1 reads from
        neighbours x0 [N, w0], the node state h0 [N, d0] (model dtype) and the per-atom
        energy terms that depend on the species only (f64 [N], eV)."""
        return self.stages.embed(types, self.model_dtype)

    @torch.jit.export
    def stage_layer(self, k: int, pos: torch.Tensor, types: torch.Tensor,
                    edge_index: torch.Tensor, edge_shift: torch.Tensor, x: torch.Tensor,
                    h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Layer k (0-based) for the n_local = h.shape[0] first atoms: pos f64 [N, 3]
        (Å), types [N], edges (i, j) with i < n_local, every neighbour j of every local i
        within r_max, r_ij = pos[j] − pos[i] + edge_shift (Å); x [N, w_k] the features of
        all N atoms, h [n_local, d_k] the local state. Returns x_next [n_local, w_{k+1}]
        (width 0 after the last layer), h_next [n_local, d_{k+1}] and the layer's per-atom
        energy terms (f64 [n_local], eV)."""
        dtype = self.model_dtype
        out = (x, h, torch.zeros(0, dtype=torch.float64))
        for i, stage in enumerate(self.stages.layers):
            if i == k:
                zero, shift = edge_inputs(pos, edge_index, edge_shift, dtype)
                out = stage(zero, types, edge_index, shift, x, h)
        return out
