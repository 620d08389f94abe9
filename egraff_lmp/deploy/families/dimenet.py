"""DimeNet++ (``torch_geometric.nn.models.DimeNetPlusPlus``, PyG 2.8) as an energy model.

``DimeNetPPEnergy`` reproduces PyG's ``DimeNetPlusPlus.forward`` but takes the edges it is
given (``edge_index``, ``shift``) instead of building its own radius graph, so that it runs in
LAMMPS with ghost atoms (all shifts zero, every periodic image a distinct atom) and in ASE with
periodic shifts (the same atom index may be a neighbour through several images, itself
included). It is scriptable with ``torch.jit.script`` and differentiable w.r.t. ``pos`` and
``shift``; it needs neither torch_cluster, torch_sparse nor sympy at run time.

Conventions. PyG's ``radius_graph`` gives ``edge_index = (row, col)`` with ``row`` the source
``j`` and ``col`` the target ``i`` ("j->i"); the message ``m_ji`` belongs to the target ``i``
(``EmbeddingBlock`` concatenates ``x[i], x[j]``, ``OutputPPBlock`` scatters over ``i``). Our
edge ``e = (a, b) = (edge_index[0, e], edge_index[1, e])`` with ``r_e = pos[b] - pos[a] +
shift[e]`` is mapped to PyG's ``i = a`` (target, centre) and ``j = b`` (source), so PyG's
``pos[i] - pos[j]`` is ``-r_e``. A triplet ``k->j->i`` pairs the edge ``f = (j, k)`` (PyG's
``idx_kj``) with ``e = (i, j)`` (``idx_ji``), i.e. every edge ``f`` centred on ``e``'s
neighbour; it is dropped when ``k`` is ``i`` itself — the same atom *and* the same image:
``b_f == a_e`` and ``shift_e + shift_f == 0`` (exact: opposite images have exactly opposite
shifts). With zero shifts this is PyG's ``idx_i != idx_k``. Distances and angles follow PyG's
DimeNet++ branch (``pos_ij = -r_e``, ``pos_jk = -r_f``, ``atan2(|pos_ij x pos_jk|, pos_ij .
pos_jk)``); with zero shifts they are bit for bit PyG's.

Reused from PyG (scripted as they are): ``rbf`` (``BesselBasisLayer``), ``emb``
(``EmbeddingBlock``), ``interaction_blocks`` (``InteractionPPBlock``), ``output_blocks``
(``OutputPPBlock``) and the ``Envelope`` of ``sbf``. Re-implemented: ``SphericalBasisLayer``,
whose functions PyG builds with sympy ``lambdify`` (not scriptable): ``_SphericalBasis`` reads
the constants (Bessel zeros times normaliser, the spherical-harmonic prefactors) from PyG's own
sympy expressions (``dimenet_utils.bessel_basis`` / ``real_sph_harm``, the same calls PyG
makes) and evaluates the same closed forms in the same order of operations, so it matches
PyG's lambdified functions bit for bit in float64 (checked against them on construction).
The closed forms of ``j_l`` are PyG's own: they lose digits by cancellation at small
``x = d / cutoff`` for high ``l`` (as PyG's do; identical values, identical loss).

Per-atom energy: ``P[:, 0]`` with ``P`` the sum of the output blocks, exactly what PyG's
``forward`` sums over atoms (``out_channels`` must be 1). Unlike PyG's ``radius_graph``,
which keeps at most ``max_num_neighbors`` (default 32) neighbours per atom, all edges given
are used: the two agree only where no atom has more neighbours than that within the cutoff.

``reference_energy`` is the parity reference for molecules (no cell): it runs PyG's OWN
``DimeNetPlusPlus.forward`` (its sympy bases, its blocks, its forward body), with only the two
names it cannot run here replaced, inside a context manager, in the namespace of
``torch_geometric.nn.models.dimenet``: ``radius_graph`` (needs torch_cluster) by a brute-force
pure-torch radius graph, and ``triplets`` (needs torch_sparse) by a pure-torch copy that gives
the same triplets in the same order.

``reach(num_blocks, cutoff) = (num_blocks + 1) * cutoff``: the embedding makes ``m_ji`` depend
on atoms ``i`` and ``j`` (one hop, ``< cutoff``); each interaction block updates ``m_ji`` from
the ``m_kj`` on the edges into ``j``, one hop further. An atom's energy (its ``m_ji`` after the
embedding and after each block) thus depends on atoms at most ``num_blocks + 1`` hops away,
each hop shorter than the cutoff. A 1-D chain with spacing ``0.8 * cutoff`` confirms it: atom
0's energy changes when atom ``num_blocks + 1`` moves (``(num_blocks + 1) * 0.8 * cutoff``)
and not when atom ``num_blocks + 2`` moves. Ghost atoms must reach this far (the adapter
gives ``Source.reach``; ``num_layers`` is ``num_blocks``).

Files ``load(path, species=None)`` deploys (told apart by content; one-line refusals):

(a) egraff-lmp's DimeNet++ file, written by ``inputs/models/train_dimenet.py``: a
    ``torch.save`` dict ``{"format": "egraff-lmp-dimenet++", "model": "DimeNetPlusPlus",
    "hyperparameters": {PyG DimeNetPlusPlus kwargs}, "species": ["Ge", "Te"] (model type
    order), "energy_shift_per_atom": {"Ge": e0, ...} (eV per atom of that element, added to
    its energy; may be empty), "dtype": "float32" | "float64", "state_dict": {PyG state
    dict}, "training": {free-form}}``. Species come from the file.
(b) an OCP / MDsim trainer checkpoint (``Trainer.save``: ``checkpoint.pt`` or
    ``best_checkpoint.pt``) of MDsim's ``dimenetplusplus`` (``DimeNetPlusPlusWrap``, a copy
    of OCP's): ``config["model"] == "dimenetplusplus"``, ``config["model_attributes"]`` (the
    wrapper's kwargs, its defaults where absent, the cutoff required), ``state_dict`` with
    the ``module.`` prefix(es) of ``OCPDataParallel`` / DDP, ``normalizers`` and ``ema``.
    Its parameter names are PyG's (it builds on PyG's ``BesselBasisLayer``,
    ``SphericalBasisLayer``, ``EmbeddingBlock`` and ``ResidualLayer`` and its own copies of
    ``InteractionPPBlock``/``OutputPPBlock`` with the same names and forward), except that
    its ``OutputPPBlock.lin_up`` has a bias: the PyG model is given that bias. Where the
    checkpoint holds EMA weights (``ema.shadow_params``, in ``parameters()`` order), they are
    used, as MDsim's own ``predict`` (and its ASE calculator) does. Normalizers: energy =
    ``sum_i e_i * std + mean``; ``std`` is a per-atom scale (and must equal ``grad_target``'s
    std: the forces are then the energy's gradient), a non-zero ``mean`` (added once per
    structure after the sum) or a non-zero force mean is refused. OCP configs list no
    species: they come from ``--species``.
    Caveat (reported, not refused): MDsim/OCP's DimeNet++ computes its triplet angles from
    *detached* positions, so the forces it trained on and runs MD with lack the angular
    part of ``-dE/dr``; the deployed model's forces are the full gradient of the same
    energy (conservative, as LAMMPS needs). Its energies equal MDsim's; its forces do not
    equal MDsim's own force output.

Both are read with ``torch.load(weights_only=True)`` where that suffices; an OCP checkpoint
that pickles other objects (numpy scalars in ``val_metrics``) is unpickled in full, which
runs code from the file: done only because the user named it.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import itertools
from collections.abc import Sequence

import torch
from ase.calculators.calculator import Calculator, all_changes
from torch import Tensor

from ...errors import located

NAME = "dimenet"
ACCEPTS_SPECIES = True  # OCP/MDsim checkpoints record none: --species


def import_pyg():
    """``torch_geometric``, imported without what its import does to torch process-wide.

    PyG 2.8 replaces ``torch.index_select`` and ``torch.select`` for the whole process with
    Python functions aware of its ``HashTensor``; TorchScript cannot compile them, so after
    ``import torch_geometric`` scripting any model that calls ``torch.index_select``
    (NequIP, Allegro) fails. egraff-lmp never uses ``HashTensor``: torch's own functions
    are put back (PyG keeps them as ``_old_index_select``/``_old_select``), whoever
    imported PyG first. Every use of PyG here goes through this function."""
    import torch_geometric
    import torch_geometric.hash_tensor as patched
    import torch_geometric.nn.models.dimenet  # noqa: F401 - loaded here, once

    for name in ("index_select", "select"):
        new, old = getattr(patched, f"_new_{name}", None), getattr(patched, f"_old_{name}", None)
        if old is not None and getattr(torch, name) is new:
            setattr(torch, name, old)
    return torch_geometric


def reach(num_blocks: int, cutoff: float) -> float:
    """How far (Å) an atom can influence a local atom's energy: ``(num_blocks + 1) * cutoff``.

    The embedding block couples the two atoms of an edge (one hop); each of the
    ``num_blocks`` interaction blocks adds one hop (``m_ji`` from ``m_kj``). Every hop is
    shorter than the cutoff, so the bound is strict: only atoms closer than this matter.
    """
    return (int(num_blocks) + 1) * float(cutoff)


# --------------------------------------------------------------------------------------
# The spherical basis without sympy at run time.
# --------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _sympy_tables(num_spherical: int, num_radial: int):
    """Constants of PyG's ``SphericalBasisLayer`` from its own sympy expressions.

    Radial function ``(l, n)`` (column ``l * num_radial + n``) is, as PyG prints it,
    ``(sum_p c_p * x**p * trig_p(a * x)) / x**(l + 1)``, terms printed (and so evaluated by
    PyG) in descending ``p``;
    angular function ``l`` is ``sum_p a_p * cos(t)**p`` (even ``l``) or that times
    ``cos(t)`` (odd ``l``). Floats are taken as lambdify prints them (``str`` of the Float).
    """
    import sympy as sym
    import_pyg()
    from torch_geometric.nn.models.dimenet_utils import bessel_basis, real_sph_harm

    n, k = num_spherical, num_radial
    x, theta, c = sym.symbols("x theta c")
    bessel = bessel_basis(n, k)
    sph = real_sph_harm(n)

    freq = [0.0] * (n * k)
    rad_coef = [[0.0] * (n * k) for _ in range(n)]  # [power p][column]
    rad_sin = [[False] * (n * k) for _ in range(n)]
    rad_den = [0] * (n * k)
    for lo in range(n):
        for r in range(k):
            col = lo * k + r
            num, den = sym.fraction(bessel[lo][r])
            if sym.simplify(den - x ** (lo + 1)) != 0:
                raise ValueError(f"unexpected spherical Bessel form {bessel[lo][r]}")
            rad_den[col] = lo + 1
            for term in sym.Add.make_args(num):
                coef, rest = term.as_coeff_Mul()
                powers = rest.as_powers_dict()
                trig = [f for f in powers if isinstance(f, (sym.sin, sym.cos))]
                if len(trig) != 1 or set(powers) - {x, trig[0]} or powers[trig[0]] != 1:
                    raise ValueError(f"unexpected spherical Bessel term {term}")
                p = int(powers.get(x, 0))
                a = trig[0].args[0].coeff(x)
                if p >= n or rad_coef[p][col] != 0.0:
                    raise ValueError(f"unexpected spherical Bessel form {bessel[lo][r]}")
                if freq[col] == 0.0:
                    freq[col] = float(str(a))
                elif float(str(a)) != freq[col]:
                    raise ValueError(f"two frequencies in {bessel[lo][r]}")
                rad_coef[p][col] = float(str(coef))
                rad_sin[p][col] = isinstance(trig[0], sym.sin)

    ang_coef = [[0.0] * n for _ in range(n)]  # [power p][l]
    ang_odd = [False] * n
    for lo in range(n):
        expr = sym.sympify(sph[lo][0]).subs(sym.cos(theta), c)
        inner = expr
        if lo % 2 == 1:
            inner = sym.Mul(*[f for f in sym.Mul.make_args(expr) if f != c])
            if sym.expand(inner * c - expr) != 0:
                raise ValueError(f"unexpected spherical harmonic form {sph[lo][0]}")
            ang_odd[lo] = True
        for term in sym.Add.make_args(inner):
            coef, p = term.as_coeff_exponent(c)
            coef, p = sym.sympify(coef), int(p)
            if not coef.is_Number or p >= n or ang_coef[p][lo] != 0.0:
                raise ValueError(f"unexpected spherical harmonic form {sph[lo][0]}")
            ang_coef[p][lo] = float(str(coef))
    return freq, rad_coef, rad_sin, rad_den, ang_coef, ang_odd


class _SphericalBasis(torch.nn.Module):
    """PyG's ``SphericalBasisLayer`` (same values, same order of operations), in torch."""

    def __init__(self, sbf: torch.nn.Module):
        super().__init__()
        self.num_spherical = int(sbf.num_spherical)
        self.num_radial = int(sbf.num_radial)
        self.cutoff = float(sbf.cutoff)
        self.envelope = sbf.envelope
        freq, rad_coef, rad_sin, rad_den, ang_coef, ang_odd = _sympy_tables(
            self.num_spherical, self.num_radial)
        f64 = torch.float64
        self.register_buffer("freq", torch.tensor(freq, dtype=f64))
        self.register_buffer("rad_coef", torch.tensor(rad_coef, dtype=f64))
        self.register_buffer("rad_sin", torch.tensor(rad_sin, dtype=torch.bool))
        self.register_buffer("rad_den", torch.tensor(rad_den, dtype=torch.long))
        self.register_buffer("ang_coef", torch.tensor(ang_coef, dtype=f64))
        self.register_buffer("ang_odd", torch.tensor(ang_odd, dtype=torch.bool))
        self._check_against(sbf)

    def radial(self, x: Tensor) -> Tensor:
        """The normalised ``j_l(z_ln x)`` of ``x = d / cutoff``, ``[E, n * k]`` (no envelope)."""
        n = self.num_spherical
        u = x.unsqueeze(-1) * self.freq
        s, c = torch.sin(u), torch.cos(u)
        xp = [x.pow(p).unsqueeze(-1) for p in range(n + 1)]
        num = torch.zeros_like(u)
        for p in range(n - 1, -1, -1):
            num = num + self.rad_coef[p] * xp[p] * torch.where(self.rad_sin[p], s, c)
        return num / torch.cat(xp, dim=-1)[:, self.rad_den]

    def angular(self, angle: Tensor) -> Tensor:
        """``Y_l^0(angle)``, ``[T, n]``."""
        n = self.num_spherical
        cth = torch.cos(angle)
        acc = torch.zeros(angle.size(0), n, dtype=angle.dtype, device=angle.device)
        for p in range(n - 1, -1, -1):
            acc = acc + self.ang_coef[p] * cth.pow(p).unsqueeze(-1)
        return torch.where(self.ang_odd, acc * cth.unsqueeze(-1), acc)

    def forward(self, dist: Tensor, angle: Tensor, idx_kj: Tensor) -> Tensor:
        dist = dist / self.cutoff
        rbf = self.envelope(dist).unsqueeze(-1) * self.radial(dist)
        cbf = self.angular(angle)
        n, k = self.num_spherical, self.num_radial
        return (rbf[idx_kj].view(-1, n, k) * cbf.view(-1, n, 1)).view(-1, n * k)

    @torch.jit.unused
    def _check_against(self, sbf: torch.nn.Module) -> None:
        """Compare with PyG's lambdified functions in float64 (raise on disagreement)."""
        with torch.no_grad():
            x = torch.linspace(0.02, 1.0, 400, dtype=torch.float64)
            mine = self.radial(x)
            ref = torch.stack([f(x) for f in sbf.bessel_funcs], dim=1)
            t = torch.linspace(0.0, torch.pi, 400, dtype=torch.float64)
            mine_a = self.angular(t)
            ref_a = torch.stack([f(t) for f in sbf.sph_funcs], dim=1)
        for name, a, b in (("radial", mine, ref), ("angular", mine_a, ref_a)):
            scale = b.abs().amax(dim=0).clamp_min(1e-300)
            err = float(((a - b).abs() / scale).max())
            if not err <= 1e-9:
                raise ValueError(f"spherical basis ({name}) differs from PyG's: {err:.3g}")


# --------------------------------------------------------------------------------------
# The energy model.
# --------------------------------------------------------------------------------------


def _triplets_of(a: Tensor, b: Tensor, shift: Tensor, num_nodes: int) -> tuple[Tensor, Tensor]:
    """``(idx_kj, idx_ji)`` of all triplets ``k->j->i``: edge ``e = (i, j)`` with every edge
    ``f = (j, k)`` centred on its neighbour, except ``k`` = ``i`` in the same image.

    Ordered as PyG's ``triplets``: by ``e``, then by ``(centre, neighbour)`` of ``f``.
    """
    num_edges = a.size(0)
    order = torch.argsort(a * num_nodes + b, stable=True)
    counts = torch.bincount(a, minlength=num_nodes)
    ptr = torch.cumsum(counts, 0) - counts
    per_edge = counts[b]
    idx_ji = torch.repeat_interleave(torch.arange(num_edges, device=a.device), per_edge)
    first = torch.cumsum(per_edge, 0) - per_edge
    offset = torch.arange(idx_ji.size(0), device=a.device) - first[idx_ji]
    idx_kj = order[ptr[b[idx_ji]] + offset]
    s = shift.detach()
    back = (b[idx_kj] == a[idx_ji]) & (s[idx_kj] + s[idx_ji] == 0).all(dim=-1)
    keep = ~back
    return idx_kj[keep], idx_ji[keep]


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
        self.sbf = _SphericalBasis(model.sbf)
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
        idx_kj, idx_ji = _triplets_of(i, j, shift, num_nodes)
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


# --------------------------------------------------------------------------------------
# Parity reference: PyG's own forward with two narrow shims.
# --------------------------------------------------------------------------------------


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
    idx_kj, idx_ji = _triplets_of(col, row, torch.zeros(row.size(0), 3), num_nodes)
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


# --------------------------------------------------------------------------------------
# The family adapter: egraff-lmp's DimeNet++ file and OCP/MDsim checkpoints.
# --------------------------------------------------------------------------------------

FORMAT = "egraff-lmp-dimenet++"
STAGES_UNAVAILABLE = "DimeNet++ passes messages along edges: no per-atom stages"
#: MDsim's ``DimeNetPlusPlusWrap`` defaults (its kwargs absent from ``model_attributes``)
_OCP_DEFAULTS = {"hidden_channels": 128, "num_blocks": 4, "int_emb_size": 64,
                 "basis_emb_size": 8, "out_emb_channels": 256, "num_spherical": 7,
                 "num_radial": 6, "envelope_exponent": 5, "num_before_skip": 1,
                 "num_after_skip": 2, "num_output_layers": 3}
#: MDsim/OCP's on-the-fly ``radius_graph_pbc(data, cutoff, 50)``: at most 50 neighbours
_OCP_MAX_NEIGHBOURS = 50
_OCP_IGNORED = {"use_pbc", "regress_forces", "otf_graph", "num_targets", "name"}


class DimeNetPPAtomEnergy(torch.nn.Module):
    """Per-atom energies (eV) of a deployed DimeNet++: ``scale * e_i + e0[type_i]``, with
    ``e_i`` from :class:`DimeNetPPEnergy` (in the model's dtype) and the scale and
    per-type reference energies applied in float64 (``e0`` ~ -200 eV would lose
    digits in float32)."""

    def __init__(self, net: DimeNetPPEnergy, scale: float, e0_of_type: Sequence[float]):
        super().__init__()
        self.net = net
        self.register_buffer("scale", torch.tensor(float(scale), dtype=torch.float64))
        self.register_buffer("e0", torch.tensor([float(v) for v in e0_of_type],
                                                dtype=torch.float64))

    def forward(self, pos: Tensor, types: Tensor, edge_index: Tensor, shift: Tensor) -> Tensor:
        e = self.net(pos, types, edge_index, shift)
        return e.to(torch.float64) * self.scale + self.e0[types]


def claims(path) -> bool:
    return False  # a torch.save pickle like many: told apart by content (sniff)


def _read(path) -> dict:
    last = None
    for weights_only in (True, False):  # False: OCP checkpoints may pickle numpy scalars
        try:
            ck = torch.load(str(path), map_location="cpu", weights_only=weights_only)
            break
        except Exception as exc:  # noqa: BLE001
            last = exc
    else:
        raise located(path, f"cannot read as a torch.save checkpoint "
                            f"({type(last).__name__})") from None
    if not isinstance(ck, dict):
        raise located(path, f"a torch.save'd {type(ck).__name__}, not a DimeNet++ checkpoint "
                            f"(egraff-lmp's '{FORMAT}' file or an OCP/MDsim checkpoint)")
    return ck


def _elements(path, species, what) -> list[int]:
    from ase.data import atomic_numbers

    if not isinstance(species, (list, tuple)) or not species:
        raise located(path, f"{what}: no species list")
    bad = [str(s) for s in species if not isinstance(s, str) or s not in atomic_numbers
           or atomic_numbers[s] == 0]
    if bad:
        raise located(path, f"{what}: {', '.join(bad)} not element symbols")
    if len(set(species)) != len(species):
        raise located(path, f"{what}: repeated species {', '.join(species)}")
    return [atomic_numbers[s] for s in species]


def _hyperparameters(path, hp: dict) -> dict:
    import inspect

    import_pyg()
    from torch_geometric.nn.models import DimeNetPlusPlus

    if not isinstance(hp, dict):
        raise located(path, "no hyperparameters dict")
    params = inspect.signature(DimeNetPlusPlus.__init__).parameters
    unknown = sorted(set(hp) - set(params) - {"self"})
    if unknown:
        raise located(path, f"hyperparameters PyG's DimeNetPlusPlus does not take: "
                            f"{', '.join(unknown)}")
    if hp.get("cutoff") is None:
        raise located(path, "no cutoff in the hyperparameters: cannot size neighbour lists "
                            "(give it explicitly rather than rely on a default)")
    required = [n for n, p in params.items()
                if n != "self" and p.default is inspect.Parameter.empty and n not in hp]
    if required:
        raise located(path, f"hyperparameters lack {', '.join(required)}")
    if int(hp["out_channels"]) != 1:
        raise located(path, f"out_channels={hp['out_channels']}: an energy model has one "
                            "output per atom (out_channels=1)")
    if not isinstance(hp.get("act", "swish"), str):
        raise located(path, "act must be an activation name (a string)")
    return dict(hp)


def _build(path, hp: dict, state: dict, dtype: torch.dtype, lin_up_bias: bool = False):
    """PyG's DimeNetPlusPlus with ``state`` loaded (strict), in ``dtype``."""
    import_pyg()
    from torch_geometric.nn.models import DimeNetPlusPlus

    try:
        model = DimeNetPlusPlus(**hp)
    except Exception as exc:  # noqa: BLE001
        raise located(path, f"PyG's DimeNetPlusPlus refuses the hyperparameters "
                            f"({type(exc).__name__}: {str(exc)[:160]})") from None
    if lin_up_bias:  # MDsim/OCP's OutputPPBlock: lin_up with a bias
        for blk in model.output_blocks:
            blk.lin_up = torch.nn.Linear(blk.lin_up.in_features, blk.lin_up.out_features,
                                         bias=True)
    model = model.to(dtype)
    try:
        model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True)
    except RuntimeError as exc:
        first = " ".join(str(exc).split())[:200]
        args = ", ".join(f"{k}={v}" for k, v in sorted(hp.items()))
        raise located(path, f"the state dict does not fit DimeNetPlusPlus({args}): "
                            f"{first}") from None
    return model.eval()


def _state_dtype(path, state: dict) -> torch.dtype:
    kinds = {v.dtype for v in state.values() if torch.is_tensor(v) and v.is_floating_point()}
    if len(kinds) != 1 or next(iter(kinds)) not in (torch.float32, torch.float64):
        raise located(path, f"state dict tensors of dtypes {sorted(map(str, kinds))}: "
                            "expected float32 or float64 throughout")
    return next(iter(kinds))


def _egraff_file(path, ck: dict, species):
    if ck.get("model") != "DimeNetPlusPlus":
        raise located(path, f"an egraff-lmp '{FORMAT}' file of model {ck.get('model')!r}, "
                            "not DimeNetPlusPlus")
    hp = _hyperparameters(path, ck.get("hyperparameters"))
    names = ck.get("species")
    z = _elements(path, names, "the file's species")
    if species and list(species) != list(names):
        raise located(path, f"the file records its species ({','.join(names)}): drop "
                            "--species or give them in that order")
    shifts = ck.get("energy_shift_per_atom") or {}
    if not isinstance(shifts, dict) or set(shifts) - set(names):
        raise located(path, f"energy_shift_per_atom must map the file's species "
                            f"({','.join(names)}) to eV")
    dtype = {"float32": torch.float32, "float64": torch.float64}.get(ck.get("dtype"))
    if dtype is None:
        raise located(path, f"dtype {ck.get('dtype')!r}: expected float32 or float64")
    state = ck.get("state_dict")
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise located(path, "no state_dict of tensors")
    model = _build(path, hp, state, dtype)
    e0 = [float(shifts.get(s, 0.0)) for s in names]
    extra = {"species_from": "the file", "model": "DimeNetPlusPlus", "layout": FORMAT,
             "energy_shift_per_atom": dict(zip(names, e0)), "scale": 1.0,
             "training": ck.get("training", {})}
    return model, list(names), z, 1.0, e0, dtype, extra


def _strip_module(state: dict) -> dict:
    out = {}
    for k, v in state.items():
        while k.startswith("module."):  # OCPDataParallel, then DistributedDataParallel
            k = k[len("module."):]
        out[k] = v
    return out


def _scalar(t) -> float:
    t = torch.as_tensor(t, dtype=torch.float64)
    if t.numel() != 1:
        raise ValueError(f"{t.numel()} values")
    return float(t.reshape(()))


def _ocp_scale(path, normalizers) -> float:
    """The per-atom scale of an OCP checkpoint's normalizers (refusing what is not one)."""
    normalizers = normalizers or {}
    try:
        target = {k: _scalar(v) for k, v in (normalizers.get("target") or {}).items()}
        grad = {k: _scalar(v) for k, v in (normalizers.get("grad_target") or {}).items()}
    except (ValueError, TypeError) as exc:
        raise located(path, f"normalizers are not one mean and std each ({exc})") from None
    if target.get("mean", 0.0) != 0.0:
        raise located(path, f"the checkpoint adds a global energy mean "
                            f"({target['mean']:.6g} eV, normalizers.target.mean) after the "
                            "sum over atoms: not a per-atom energy, and not splittable over "
                            "LAMMPS ranks")
    if grad.get("mean", 0.0) != 0.0:
        raise located(path, f"the checkpoint adds a constant force ({grad['mean']:.6g} eV/Å, "
                            "normalizers.grad_target.mean): not the gradient of an energy")
    stds = [d["std"] for d in (target, grad) if "std" in d]
    if len(stds) == 2 and abs(stds[0] - stds[1]) > 1e-6 * max(abs(stds[0]), abs(stds[1])):
        raise located(path, f"energy and force normalizers differ (target std {stds[0]:.6g}, "
                            f"grad_target std {stds[1]:.6g}): the forces would not be the "
                            "energy's gradient")
    scale = stds[0] if stds else 1.0
    if not scale > 0:
        raise located(path, f"normalizer std {scale:g}: not a positive scale")
    return scale


def _ocp_weights(path, ck: dict, state: dict) -> tuple[dict, str]:
    """The EMA weights where the checkpoint has them (MDsim predicts with those)."""
    ema = ck.get("ema")
    if not isinstance(ema, dict) or not ema.get("shadow_params"):
        return state, "state_dict"
    shadow = list(ema["shadow_params"])
    # MDsim's DimeNet++ has parameters only, all trained: the state dict's order
    keys = list(state)
    if len(shadow) != len(keys) or any(
            tuple(s.shape) != tuple(state[k].shape) for s, k in zip(shadow, keys)):
        raise located(path, f"the EMA weights ({len(shadow)} tensors) do not line up with "
                            f"the state dict ({len(keys)} tensors)")
    return {k: s.detach().clone() for k, s in zip(keys, shadow)}, "ema (as MDsim predicts)"


def _ocp_checkpoint(path, ck: dict, species):
    config = ck["config"]
    name = config.get("model")
    if not isinstance(name, str) or name.lower() != "dimenetplusplus":
        raise located(path, f"an OCP/MDsim checkpoint of model {name!r}: egraff-lmp deploys "
                            "its dimenetplusplus")
    attrs = dict(config.get("model_attributes") or {})
    if attrs.get("cutoff") is None:
        raise located(path, "no cutoff in config.model_attributes: cannot size neighbour "
                            "lists (MDsim's default of 10 Å is not assumed)")
    unknown = sorted(set(attrs) - set(_OCP_DEFAULTS) - _OCP_IGNORED - {"cutoff"})
    if unknown:
        raise located(path, f"model_attributes MDsim's DimeNetPlusPlusWrap does not take: "
                            f"{', '.join(unknown)}")
    state = ck.get("state_dict")
    if not isinstance(state, dict) or not state or not all(
            torch.is_tensor(v) for v in state.values()):
        raise located(path, "no state_dict of tensors")
    state = _strip_module(state)
    head = state.get("output_blocks.0.lin.weight")
    if head is None:
        raise located(path, "the state dict has no output_blocks.0.lin.weight: not a "
                            "DimeNet++ state dict")
    if head.shape[0] != 1:
        raise located(path, f"out_channels={head.shape[0]} (num_targets): an energy model "
                            "has one output per atom (out_channels=1)")
    if not species:
        raise located(path, "an OCP/MDsim checkpoint records no species (the model embeds "
                            "atomic numbers): give --species, e.g. --species Ge,Te")
    z = _elements(path, list(species), "--species")
    hp = {k: attrs.get(k, v) for k, v in _OCP_DEFAULTS.items()}
    hp.update(out_channels=1, cutoff=float(attrs["cutoff"]), act="swish",
              max_num_neighbors=_OCP_MAX_NEIGHBOURS)
    scale = _ocp_scale(path, ck.get("normalizers"))
    weights, which = _ocp_weights(path, ck, state)
    dtype = _state_dtype(path, weights)
    model = _build(path, hp, weights, dtype,
                   lin_up_bias="output_blocks.0.lin_up.bias" in weights)
    extra = {"species_from": "--species", "model": "DimeNetPlusPlus",
             "layout": f"OCP/MDsim checkpoint ({name})", "weights": which, "scale": scale,
             "forces_note": "MDsim/OCP's DimeNet++ detaches positions in its angles: its own "
                            "forces lack the angular part of -dE/dr; the deployed forces "
                            "are the full gradient of the same energy"}
    return model, list(species), z, scale, [0.0] * len(z), dtype, extra


def load(path, species=None):
    """A DimeNet++ file (egraff-lmp's format or an OCP/MDsim checkpoint) as a ``Source``."""
    torch_geometric = import_pyg()

    from . import Source

    ck = _read(path)
    if ck.get("format") == FORMAT:
        parts = _egraff_file(path, ck, species)
    elif isinstance(ck.get("config"), dict) and "state_dict" in ck:
        parts = _ocp_checkpoint(path, ck, species)
    else:
        keys = ", ".join(sorted(map(str, ck))[:8])
        raise located(path, f"an unknown DimeNet++ layout (keys: {keys}): expected "
                            f"egraff-lmp's '{FORMAT}' file or an OCP/MDsim checkpoint "
                            "(config + state_dict)")
    model, names, z, scale, e0, dtype, extra = parts
    try:
        net = DimeNetPPEnergy(model, z)
    except ValueError as exc:
        raise located(path, str(exc)) from None
    energy = DimeNetPPAtomEnergy(net.to(dtype), scale, e0)
    cutoff, blocks = float(model.cutoff), int(model.num_blocks)
    extra.update({"max_num_neighbors": int(model.max_num_neighbors),
                  "versions": {"torch_geometric": torch_geometric.__version__}})
    return Source(
        family=NAME, energy_model=energy, type_names=names, r_max=cutoff, num_layers=blocks,
        strictly_local=False, dtype=dtype, family_version=torch_geometric.__version__,
        reference=lambda: DimeNetReference(model, z, scale, e0, reach(blocks, cutoff)),
        stages_unavailable=STAGES_UNAVAILABLE, reach=reach(blocks, cutoff), extra=extra)


# --------------------------------------------------------------------------------------
# The parity reference as an ASE calculator.
# --------------------------------------------------------------------------------------


def image_cluster(atoms, reach_: float, margin: float = 0.1):
    """Periodic images of ``atoms`` within ``reach_ + margin`` of an atom of the cell:
    ``(positions [M, 3], base index [M], central [M] bool)``; the atoms themselves first
    (``central``), in order. A molecule (no periodic direction) is returned as it is."""
    import numpy as np

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


class DimeNetReference(Calculator):
    """PyG's own ``DimeNetPlusPlus.forward`` (through :func:`reference_energy`) as an ASE
    calculator, for the parity checks: energy, per-atom energies (``scale * e_i + e0``) and
    forces by autograd. PyG's forward knows no cell: a periodic configuration is evaluated
    as the cluster of its periodic images within the model's reach of the cell (exact: an
    atom's energy depends on no atom farther than the reach), keeping the energies of the
    cell's own atoms and summing each image's force gradient onto its atom."""

    implemented_properties = ["energy", "free_energy", "energies", "forces"]

    def __init__(self, model, atomic_numbers, scale, e0_of_type, reach_):
        super().__init__()
        self.model = model
        self.z_of_type = list(atomic_numbers)
        self.e0_by_z = {z: float(v) for z, v in zip(self.z_of_type, e0_of_type)}
        self.scale = float(scale)
        self.reach = reach_
        self.dtype = model.rbf.freq.dtype

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        import numpy as np

        from ...errors import EgraffError

        super().calculate(atoms, properties, system_changes)
        a = self.atoms
        unknown = sorted(set(a.numbers.tolist()) - set(self.z_of_type))
        if unknown:
            raise EgraffError(f"the parity reference has no atomic numbers {unknown}")
        try:
            pos, base, central = image_cluster(a, self.reach)
        except ValueError as exc:
            raise EgraffError(f"parity reference: {exc}") from None
        z = torch.from_numpy(a.numbers[base].astype(np.int64))
        p = torch.tensor(pos, dtype=self.dtype, requires_grad=True)
        try:
            e = reference_energy(self.model, z, p)
        except ValueError as exc:
            raise EgraffError(f"parity reference (PyG's own forward on {len(pos)} atoms): "
                              f"{exc}") from None
        ec = e[torch.from_numpy(central)]
        (g,) = torch.autograd.grad(ec.sum(), p)
        f = np.zeros((len(a), 3))
        np.add.at(f, base, -g.detach().double().numpy())
        e0 = np.array([self.e0_by_z[int(v)] for v in a.numbers])
        energies = ec.detach().double().numpy() * self.scale + e0
        f *= self.scale
        self.results = {"energies": energies, "energy": float(energies.sum()),
                        "free_energy": float(energies.sum()), "forces": f}
