"""The DimeNet++ parity reference: PyG's own forward with two narrow shims.

:func:`reference_energy` is the parity reference for molecules (no cell): it runs PyG's OWN
``DimeNetPlusPlus.forward`` (its sympy bases, its blocks, its forward body), with only the
two names it cannot run here replaced, inside a context manager, in the namespace of
``torch_geometric.nn.models.dimenet``: ``radius_graph`` (needs torch_cluster) by a
brute-force pure-torch radius graph, and ``triplets`` (needs torch_sparse) by a pure-torch
copy that gives the same triplets in the same order. :class:`DimeNetReference` makes it an
ASE calculator, periodic cells included (as clusters of their images). Energies eV,
distances Å.
"""

from __future__ import annotations

import contextlib
import itertools

import numpy as np
import torch
from torch import Tensor

from ....errors import EgraffError
from ..reference import Evaluation, ReferenceCalculator
from .pyg import import_pyg
from .triplets import triplets_of


def _radius_graph_shim(x: Tensor, r: float, batch: Tensor | None = None, loop: bool = False,
                       max_num_neighbors: int = 32, flow: str = "source_to_target",
                       num_workers: int = 1, batch_size: int | None = None) -> Tensor:
    """Brute-force ``torch_cluster.radius_graph``: ``(row, col)`` = (source j, target i) for
    all pairs closer than ``r``, sorted by target then source. Refuses (rather than silently
    truncating like torch_cluster) when an atom has more than ``max_num_neighbors``."""
    if flow not in ("source_to_target", "target_to_source"):
        raise ValueError(flow)
    with torch.no_grad():
        d = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")
        adj = d < r
        if batch is not None:
            adj &= batch.view(-1, 1) == batch.view(1, -1)
        if not loop:
            adj.fill_diagonal_(False)
        if int(adj.sum(dim=1).max()) > max_num_neighbors:
            raise ValueError(
                f"an atom has more than max_num_neighbors={max_num_neighbors} neighbours: "
                "PyG's radius_graph would truncate them (order-dependent)")
        target, source = adj.nonzero(as_tuple=True)
    edge_index = torch.stack([source, target], dim=0)
    return edge_index if flow == "source_to_target" else edge_index.flip(0)


def _triplets_shim(edge_index: Tensor, num_nodes: int):
    """PyG's ``dimenet.triplets`` without torch_sparse: same outputs, same order."""
    row, col = edge_index  # j->i
    idx_kj, idx_ji = triplets_of(col, row, torch.zeros(row.size(0), 3), num_nodes)
    idx_i, idx_j, idx_k = col[idx_ji], row[idx_ji], row[idx_kj]
    return col, row, idx_i, idx_j, idx_k, idx_kj, idx_ji


@contextlib.contextmanager
def _pyg_shims():
    import_pyg()
    import torch_geometric.nn.models.dimenet as pyg_dimenet

    saved = pyg_dimenet.radius_graph, pyg_dimenet.triplets
    pyg_dimenet.radius_graph, pyg_dimenet.triplets = _radius_graph_shim, _triplets_shim
    try:
        yield
    finally:
        pyg_dimenet.radius_graph, pyg_dimenet.triplets = saved


def reference_energy(pyg_model: torch.nn.Module, z: Tensor, pos: Tensor,
                     per_atom: bool = True) -> Tensor:
    """Energy of a molecule (no cell) by PyG's own ``DimeNetPlusPlus.forward``.

    Only ``radius_graph`` and ``triplets`` of ``torch_geometric.nn.models.dimenet`` are
    replaced (see the module docstring). ``per_atom``: the per-atom energies ``[N]`` — the sum
    of the output blocks' outputs ``P[:, 0]`` as PyG's forward computes them, captured with
    forward hooks (their sum is checked against what ``forward`` returns); else the total
    ``[]`` that ``forward`` returns. Differentiable w.r.t. ``pos``.
    """
    captured: list[Tensor] = []
    hooks = [blk.register_forward_hook(lambda _m, _i, out: captured.append(out))
             for blk in pyg_model.output_blocks]
    try:
        with _pyg_shims():
            total = pyg_model(z, pos)
    finally:
        for h in hooks:
            h.remove()
    if total.numel() != 1:
        raise ValueError("reference_energy needs out_channels=1")
    total = total.view(())
    if not per_atom:
        return total
    P = captured[0]
    for out in captured[1:]:
        P = P + out
    e = P[:, 0]
    if not torch.allclose(e.sum(), total, rtol=1e-6, atol=1e-6):
        raise RuntimeError("per-atom energies captured from PyG's output blocks do not sum to "
                           "its forward's result")
    return e


def image_cluster(atoms, reach_: float, margin: float = 0.1):
    """Periodic images of ``atoms`` within ``reach_ + margin`` (Å) of an atom of the cell:
    ``(positions [M, 3], base index [M], central [M] bool)``; the atoms themselves first
    (``central``), in order. A molecule (no periodic direction) is returned as it is."""
    pos = np.asarray(atoms.positions, dtype=np.float64)
    n = len(atoms)
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if not pbc.any():
        return pos, np.arange(n), np.ones(n, dtype=bool)
    cell = np.asarray(atoms.cell[:], dtype=np.float64)
    if abs(np.linalg.det(cell)) < 1e-9:
        raise ValueError("a periodic configuration needs a full 3x3 cell")
    frac = np.linalg.solve(cell.T, pos.T).T
    spread = frac.max(axis=0) - frac.min(axis=0)
    heights = 1.0 / np.linalg.norm(np.linalg.inv(cell).T, axis=1)
    n_img = [int(np.ceil(spread[k] + (reach_ + margin) / heights[k])) if pbc[k] else 0
             for k in range(3)]
    shifts = [s for s in itertools.product(*(range(-m, m + 1) for m in n_img)) if any(s)]
    S = np.array([(0, 0, 0)] + shifts, dtype=np.float64)
    images = (pos[None, :, :] + (S @ cell)[:, None, :]).reshape(-1, 3)
    base = np.tile(np.arange(n), len(S))
    tp = torch.from_numpy(images)
    d = torch.cdist(tp, torch.from_numpy(pos), compute_mode="donot_use_mm_for_euclid_dist")
    keep = (d.min(dim=1).values < reach_ + margin).numpy()
    keep[:n] = True
    central = np.zeros(len(images), dtype=bool)
    central[:n] = True
    return images[keep], base[keep], central[keep]


class DimeNetReference(ReferenceCalculator):
    """PyG's own ``DimeNetPlusPlus.forward`` (through :func:`reference_energy`) as an ASE
    calculator, for the parity checks: energy, per-atom energies (``scale * e_i + e0``, eV)
    and forces (eV/Å) by autograd. PyG's forward knows no cell: a periodic configuration is
    evaluated as the cluster of its periodic images within the model's reach (Å) of the
    cell (exact: an atom's energy depends on no atom farther than the reach), keeping the
    energies of the cell's own atoms and summing each image's force gradient onto its
    atom."""

    per_atom = True

    def __init__(self, model, atomic_numbers, scale, e0_of_type, reach_):
        super().__init__(model.rbf.freq.dtype, atomic_numbers)
        self.model = model
        self.z_of_type = list(self.atomic_numbers)
        self.e0_by_z = {z: float(v) for z, v in zip(self.z_of_type, e0_of_type)}
        self.scale = float(scale)
        self.reach = reach_

    def evaluate(self, a) -> Evaluation:
        try:
            pos, base, central = image_cluster(a, self.reach)
        except ValueError as exc:
            raise EgraffError(f"parity reference: {exc}") from None
        z = torch.from_numpy(a.numbers[base].astype(np.int64))
        p = self.positions(pos)
        try:
            e = reference_energy(self.model, z, p)
        except ValueError as exc:
            raise EgraffError(f"parity reference (PyG's own forward on {len(pos)} atoms): "
                              f"{exc}") from None
        ec = e[torch.from_numpy(central)]
        f = np.zeros((len(a), 3))
        np.add.at(f, base, self.forces(ec.sum(), p))
        e0 = np.array([self.e0_by_z[int(v)] for v in a.numbers])
        energies = ec.detach().double().numpy() * self.scale + e0
        f *= self.scale
        return Evaluation(forces=f, energies=energies)
