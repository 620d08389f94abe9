"""The staged path of message-passing artifacts, and its emulation on sub-domains.

A message-passing model (MACE, BOTNet-style MACE, NequIP) with L layers is deployed with
L + 1 stages besides the one-call ``forward`` (see deploy/README.md, "Stages"):

- ``stage_embed(types)`` → x0 [N, w0], h0 [N, d0], e0 [N]: what depends on the species
  alone (node embedding, the first layer's pre-message linear, E0s).
- ``stage_layer(k, pos, types, edges, shifts, x_k, h_k)`` → x_{k+1}, h_{k+1}, e_k for the
  local atoms: the messages of layer k from the neighbours' x_k, the node update and the
  layer's energy readout, then the next layer's pre-message linear, so that x_{k+1} is the
  one thing neighbours read from a local atom in layer k + 1.

An engine on several ranks keeps a ghost shell one r_max deep, fills the ghosts' x_k from
their owners after each layer (forward communication; layer 0 needs none: x0 follows from
the types), and back-propagates layer by layer: the vector-Jacobian product of layer k's
outputs gives the gradients of positions (forces on local and ghost atoms), of h_k, and of
x_k for every atom; the ghosts' x_k gradients are summed onto their owners (reverse
communication) before layer k − 1's product. Forces on ghosts go home as LAMMPS' usual
reverse communication, and the virial is Σ r_i ⊗ f_i over local and ghost atoms.

:func:`staged_domains` does exactly this in Python on a grid of sub-domains of one periodic
frame, so that the staging can be checked against the one-call evaluation before any C++
runs it (``egraff-lmp deploy --check`` does, on the user's frames).

The backward pass is written twice, here and in the plugin's staged driver
(deploy/plugin/pair_egraff_staged.cpp), on purpose. One scripted per-layer vector-Jacobian
method in the artifact, called by both, would have to recompute its layer from the layer's
inputs (a TorchScript method cannot receive the autograd graph of an earlier call), and a
backward that recomputes every layer made mode staged 1.14-1.57x slower at 200 atoms and up
to 1.5x at 5,400 (bench/staged_bench.py's runs for issue 17; docs/plugin.md, "Sources and
the schema"); the artifacts already deployed have no such method either. The two are held
together by tests instead: both match the one-call evaluation (tests/test_staged.py), and
both use the method and metadata names of :mod:`egraff_lmp.deploy.schema`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

from .schema import (
    KEY_R_MAX,
    KEY_STAGES,
    KEY_TYPE_NAMES,
    METHOD_STAGE_EMBED,
    METHOD_STAGE_LAYER,
    STAGES_LAYERS,
)


@dataclass
class Domain:
    """One sub-domain: its local atoms, then ghosts (periodic images inside the shell).

    ``atoms`` [n] global indices of local atoms followed by ghosts' owners; ``positions``
    [n, 3] (Å), the ghosts' image positions; ``n_local``; ``edges`` [2, E] (i local, j any)
    within r_max."""

    atoms: np.ndarray
    positions: np.ndarray
    n_local: int
    edges: np.ndarray


def decompose(positions, cell, grid=(2, 1, 1), r_ghost=5.0, r_max=5.0) -> list[Domain]:
    """Split a periodic frame into ``grid`` sub-domains along the cell's lattice vectors,
    each with a ghost shell ``r_ghost`` (Å) deep, LAMMPS-style (several images of an atom
    where the shell is wider than the box), and the full edge list of its local atoms."""
    positions = np.asarray(positions, dtype=np.float64)
    cell = np.asarray(cell, dtype=np.float64)
    frac = np.linalg.solve(cell.T, positions.T).T
    frac -= np.floor(frac)
    frac[frac >= 1.0] = 0.0
    volume = abs(np.linalg.det(cell))
    heights = [volume / np.linalg.norm(np.cross(cell[(a + 1) % 3], cell[(a + 2) % 3]))
               for a in range(3)]
    delta = np.array([r_ghost / h for h in heights])
    reach = [int(np.ceil(d)) + 1 for d in delta]
    images = np.array(list(itertools.product(*[range(-m, m + 1) for m in reach])))
    out = []
    for cidx in itertools.product(*[range(g) for g in grid]):
        lo = np.array(cidx, float) / grid
        hi = (np.array(cidx, float) + 1) / grid
        local = np.where(np.all((frac >= lo) & (frac < hi), axis=1))[0]
        gh_atoms, gh_frac = [], []
        for n in images:
            s = frac + n
            inside = np.all((s >= lo - delta) & (s < hi + delta), axis=1)
            if not np.any(n):
                inside &= ~np.all((frac >= lo) & (frac < hi), axis=1)
            idx = np.where(inside)[0]
            gh_atoms.append(idx)
            gh_frac.append(s[idx])
        atoms = np.concatenate([local] + gh_atoms)
        fr = np.concatenate([frac[local]] + gh_frac)
        pos = fr @ cell
        d = np.linalg.norm(pos[None, :, :] - pos[: len(local), None, :], axis=-1)
        i, j = np.where((d < r_max) & (d > 0.0))
        out.append(Domain(atoms.astype(np.int64), pos, len(local), np.stack([i, j])))
    return out


@dataclass
class StagedResult:
    """Energy (eV), per-atom energies [n] (eV), forces [n, 3] (eV/Å), virial [3, 3] (eV,
    Σ r ⊗ f over local and ghost atoms of every domain) and ghosts per domain."""

    energy: float
    energies: np.ndarray
    forces: np.ndarray
    virial: np.ndarray
    ghosts: list


class ScriptedLayers:
    """The stages of a TorchScript artifact's module: each layer's forward keeps its autograd
    graph, its backward is the vector-Jacobian product on that graph.

    The protocol of a layer backend (:func:`staged_domains`; the compiled one is
    :class:`egraff_lmp.deploy.compiled_stages.CompiledLayers`): ``embed(types)`` → (x0, h0,
    e0); ``forward(k, pos, types, edges, shifts, x, h)`` → (x_next, h_next, e_k, saved);
    ``backward(k, saved, g_x_next, g_h_next)`` → (g_pos f64 [N, 3], g_x_k [N, w_k], g_h_k
    [n, d_k]), the cotangents None after the last layer, the last two None for k = 0."""

    def __init__(self, module, dtype: torch.dtype | None = None):
        self.stage_embed = getattr(module, METHOD_STAGE_EMBED)
        self.stage_layer = getattr(module, METHOD_STAGE_LAYER)
        self.dtype = dtype  # the model's: torch's default while a stage runs

    def _default_dtype(self):
        import contextlib

        from .artifact import default_dtype

        return contextlib.nullcontext() if self.dtype is None else default_dtype(self.dtype)

    def embed(self, types):
        with self._default_dtype():
            return self.stage_embed(types)

    def forward(self, k, pos, types, edges, shifts, x, h):
        pos = pos.detach().requires_grad_(True)
        x_in = x.detach().requires_grad_(k > 0)
        h_in = h.detach().requires_grad_(k > 0)
        with self._default_dtype():
            x_next, h_next, e = self.stage_layer(k, pos, types, edges, shifts, x_in, h_in)
        return x_next.detach(), h_next.detach(), e.detach(), (pos, x_in, h_in, x_next,
                                                               h_next, e)

    def backward(self, k, saved, g_x, g_h):
        pos, x_in, h_in, x_next, h_next, e = saved
        outputs, cotangents = [], []
        pairs = [(e.sum(), torch.ones((), dtype=torch.float64))]
        if g_x is not None:
            pairs += [(x_next, g_x), (h_next, g_h)]
        for o, g in pairs:
            if o.requires_grad and o.numel():
                outputs.append(o)
                cotangents.append(g)
        inputs = [pos] + ([h_in, x_in] if k > 0 else [])
        grads = (torch.autograd.grad(outputs, inputs, cotangents, allow_unused=True)
                 if outputs else [None] * len(inputs))
        grads = [torch.zeros_like(i) if g is None else g.detach()
                 for g, i in zip(grads, inputs)]
        return (grads[0], grads[2], grads[1]) if k > 0 else (grads[0], None, None)


def staged_domains(layers, types, domains: list[Domain], n_atoms: int, n_stages: int,
                   skip_exchange: int | None = None) -> StagedResult:
    """Evaluate the stages ``layers`` (a layer backend: :class:`ScriptedLayers` or a
    compiled package's) on sub-domains exchanging features as an engine on several ranks
    does. ``skip_exchange=k`` (k ≥ 1) leaves the ghosts' layer-k features at zero instead
    of exchanging them: a wrong exchange, for tests."""
    types = torch.as_tensor(types, dtype=torch.long)
    doms = []
    for d in domains:
        e = torch.from_numpy(d.edges)
        doms.append({"d": d, "pos": torch.tensor(d.positions, dtype=torch.float64),
                     "types": types[torch.from_numpy(d.atoms)], "edges": e,
                     "shift": torch.zeros((e.shape[1], 3), dtype=torch.float64)})
    energies = np.zeros(n_atoms)
    for dom in doms:
        x0, h0, e0 = layers.embed(dom["types"])
        dom["x"], dom["h"] = x0.detach(), h0[: dom["d"].n_local].detach()
        energies[dom["d"].atoms[: dom["d"].n_local]] += e0[: dom["d"].n_local].numpy()
    saved = []  # per layer: per domain, what its backward needs
    for k in range(n_stages):
        outs = []
        for dom in doms:
            nl = dom["d"].n_local
            x_next, h_next, e, ctx = layers.forward(k, dom["pos"], dom["types"], dom["edges"],
                                                    dom["shift"], dom["x"], dom["h"])
            outs.append((x_next, h_next))
            saved.append(ctx)
            energies[dom["d"].atoms[:nl]] += e.numpy()
        if k + 1 < n_stages:  # forward communication of x_{k+1}
            width = outs[0][0].shape[1]
            owner_x = torch.zeros((n_atoms, width), dtype=outs[0][0].dtype)
            for dom, (x_next, _) in zip(doms, outs):
                owner_x[torch.from_numpy(dom["d"].atoms[: dom["d"].n_local])] = x_next
            for dom, (x_next, h_next) in zip(doms, outs):
                gx = owner_x[torch.from_numpy(dom["d"].atoms[dom["d"].n_local:])]
                if skip_exchange == k + 1:
                    gx = torch.zeros_like(gx)
                dom["x"] = torch.cat([x_next, gx])
                dom["h"] = h_next
    forces = np.zeros((n_atoms, 3))
    virial = np.zeros((3, 3))
    g_next = [(None, None)] * len(doms)  # (grad of x_{k+1}, grad of h_{k+1}) per domain
    for k in reversed(range(n_stages)):
        g_x_all = []
        for m, dom in enumerate(doms):
            g_pos, g_x, g_h = layers.backward(k, saved[k * len(doms) + m], *g_next[m])
            f = -g_pos.numpy()
            np.add.at(forces, dom["d"].atoms, f)
            virial += dom["d"].positions.T @ f
            g_x_all.append(g_x)
            g_next[m] = (None, g_h)
        if k > 0:  # reverse communication: ghosts' feature gradients summed on owners
            width = g_x_all[0].shape[1]
            total = torch.zeros((n_atoms, width), dtype=g_x_all[0].dtype)
            for dom, g in zip(doms, g_x_all):
                total.index_add_(0, torch.from_numpy(dom["d"].atoms), g)
            for m, dom in enumerate(doms):
                local = torch.from_numpy(dom["d"].atoms[: dom["d"].n_local])
                g_next[m] = (total[local], g_next[m][1])
    return StagedResult(float(energies.sum()), energies, forces, virial,
                        [len(d.atoms) - d.n_local for d in domains])


def emulate(artifact, atoms, grid=(2, 1, 1), skip_exchange: int | None = None
            ) -> StagedResult:
    """The staged artifact (an :class:`~egraff_lmp.deploy.artifact.Artifact`) on ``grid``
    sub-domains of the periodic ASE ``atoms``, with a ghost shell of r_max."""
    meta = artifact.metadata
    index = {s: k for k, s in enumerate(meta[KEY_TYPE_NAMES])}
    types = [index[s] for s in atoms.get_chemical_symbols()]
    r_max = float(meta[KEY_R_MAX])
    domains = decompose(atoms.positions, atoms.cell[:], grid, r_max, r_max)
    with torch.jit.optimized_execution(False):
        return staged_domains(artifact.layers(), types, domains, len(atoms),
                              int(meta[KEY_STAGES][STAGES_LAYERS]), skip_exchange)


def deviation(result: StagedResult, reference_calc, atoms) -> dict:
    """Max deviations of the staged evaluation from the one-call calculator: energy
    (eV), per-atom energies (eV), forces (eV/Å), virial (eV)."""
    a = atoms.copy()
    a.calc = reference_calc
    e = a.get_potential_energy()
    ei = a.get_potential_energies()
    f = a.get_forces()
    w = -a.get_stress(voigt=False) * a.get_volume()
    return {"energy": abs(result.energy - e),
            "atom_energies": float(np.abs(result.energies - ei).max()),
            "forces": float(np.abs(result.forces - f).max()),
            "virial": float(np.abs(result.virial - w).max())}
