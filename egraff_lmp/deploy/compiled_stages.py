"""The stages of a message-passing artifact, compiled: forward and backward of each layer.

Mode staged runs a model layer by layer and back-propagates through each layer with the
cotangents the other ranks sent back (:mod:`egraff_lmp.deploy.stages`). A compiled package
has no autograd, so each layer k is compiled twice, from one graph:

1. ``make_fx`` unfolds the layer's *joint* function — the layer's outputs (x_{k+1},
   h_{k+1}, e_k) and their vector-Jacobian product with the cotangents of x_{k+1} and
   h_{k+1} (and 1 for the energy) — into one aten graph, symbolically;
2. :func:`partition` cuts it in two: ``layer_fw_k`` computes the outputs and the
   tensors the backward reads (*saved*, chosen by AOTAutograd's min-cut partitioner: what
   is cheap to recompute is recomputed), ``layer_bw_k``
   takes the layer's inputs, the saved tensors and the cotangents and returns the gradients
   of positions, of x_k and of h_k. Sizes (symbolic integers) are recomputed in the
   backward from its inputs, never passed;
3. each half is exported with dynamic atom, local-atom and edge counts (the saved tensors'
   counts follow from the layer's) and compiled into the same package as the one-call
   model, under its own name (libtorch's ``AOTIModelPackageLoader(path, name)``).

The stage programs' convention (the package's ``model`` is the one-call convention of
:mod:`egraff_lmp.deploy.compiled`); every call is padded (:func:`pad_stage`) with
:data:`~egraff_lmp.deploy.compiled.PAD` dummy local atoms after the real local ones, so that
no count is below 2::

    stage_embed(types i64[N])  ->  (x0 [N, w0], h0 [N, d0], e0 f64[N])
    layer_fw_k(pos f64[N,3], types, edge_index i64[2,E], edge_shift f64[E,3],
               x_k [N, w_k], h_k [n, d_k])  ->  (x_{k+1} [n, w_{k+1}], h_{k+1} [n, d_{k+1}],
                                                 e_k f64[n], *saved)
    layer_bw_k(pos, types, edge_index, edge_shift, x_k, h_k, *saved
               [, g_x_{k+1} [n, w_{k+1}], g_h_{k+1} [n, d_{k+1}]  (k < L-1 only)])
        ->  (g_pos f64[N,3] [, g_x_k [N, w_k], g_h_k [n, d_k]  (k > 0 only)])

(x and h in the model's dtype; n the local atoms; the energy's cotangent is 1.)
"""

from __future__ import annotations

import torch
import torch.fx as fx

from .compiled import PAD, pad
from .model import edge_inputs
from .schema import METHOD_STAGE_EMBED, PROGRAM_LAYER_BW, PROGRAM_LAYER_FW

#: the names of the stage programs in a package (deploy/schema.py)
EMBED = METHOD_STAGE_EMBED


def layer_fw(k: int) -> str:
    return f"{PROGRAM_LAYER_FW}{k}"


def layer_bw(k: int) -> str:
    return f"{PROGRAM_LAYER_BW}{k}"


class _Embed(torch.nn.Module):
    def __init__(self, stages, dtype):
        super().__init__()
        self.stages, self.dtype = stages, dtype

    def forward(self, types):
        return self.stages.embed(types, self.dtype)


def joint_layer(layer: torch.nn.Module, dtype: torch.dtype, first: bool, last: bool):
    """The joint function of one layer, ``f(primals, tangents)`` as AOTAutograd names its
    inputs: outputs then gradients (see the module's docstring)."""

    def joint(primals, tangents):
        pos, types, edge_index, edge_shift, x, h = primals
        pos = pos.detach().requires_grad_(True)
        x = x.detach().requires_grad_(not first)
        h = h.detach().requires_grad_(not first)
        zero, shift = edge_inputs(pos, edge_index, edge_shift, dtype)
        x_next, h_next, energy = layer(zero, types, edge_index, shift, x, h)
        outputs = [energy.sum()]
        cotangents = [torch.ones((), dtype=energy.dtype, device=energy.device)]
        if not last:
            outputs += [x_next, h_next]
            cotangents += list(tangents)
        wrt = [pos] if first else [pos, x, h]
        # an output that does not depend on the inputs (a layer whose energy term is zero,
        # NequIP's first) has no gradient to give
        pairs = [(o, g) for o, g in zip(outputs, cotangents) if o.requires_grad]
        grads = (torch.autograd.grad([o for o, _ in pairs], wrt, [g for _, g in pairs],
                                     allow_unused=True) if pairs else [None] * len(wrt))
        grads = [torch.zeros_like(w) if g is None else g for g, w in zip(grads, wrt)]
        grads[0] = grads[0].to(torch.float64)
        return [x_next.detach(), h_next.detach(), energy.detach(), *grads]

    return joint


def _functional(joint: fx.GraphModule, primals: list, tangents: list) -> fx.GraphModule:
    """``joint`` traced again without in-place ops (a layer's ``scatter_add_`` and
    ``copy_``, NequIP's: a graph cut by data dependencies alone would lose them), its
    placeholders named ``primals_*`` and ``tangents_*`` again."""
    from .compiled import _make_fx

    graph = _make_fx(torch.func.functionalize(joint, remove="mutations"),
                     (primals, tangents))
    placeholders = [n for n in graph.graph.nodes if n.op == "placeholder"]
    names = [f"primals_{i + 1}" for i in range(len(primals))]
    names += [f"tangents_{i + 1}" for i in range(len(tangents))]
    for node, name in zip(placeholders, names):
        node._rename(name)
    graph.recompile()
    return graph


def _is_size(node: fx.Node) -> bool:
    val = node.meta.get("val")
    return isinstance(val, (torch.SymInt, torch.SymFloat, torch.SymBool, int, float, bool))


def _min_cut_saved(joint: fx.GraphModule, n_forward: int) -> set:
    """The names of the tensors AOTAutograd's min-cut partitioner would save (the rest of
    the forward it recomputes in the backward: cheap elementwise work is recomputed rather
    than written out and read back)."""
    import copy
    import warnings

    from torch._functorch.partitioners import min_cut_rematerialization_partition

    with warnings.catch_warnings():  # deepcopy of the graph: pytree deprecation notices
        warnings.simplefilter("ignore", FutureWarning)
        fw, _ = min_cut_rematerialization_partition(copy.deepcopy(joint), None,
                                                    num_fwd_outputs=n_forward)
    outs = fw.graph.output_node().args[0][n_forward:]
    return {o.name for o in outs if isinstance(o, fx.Node)
            and isinstance(o.meta.get("val"), torch.Tensor)}


def partition(joint: fx.GraphModule, n_forward: int
              ) -> tuple[fx.GraphModule, fx.GraphModule, int]:
    """Cut a joint graph (placeholders ``primals_*`` then ``tangents_*``; outputs: the
    ``n_forward`` forward outputs, then the gradients) into a forward graph (the forward
    outputs, then the saved tensors) and a backward graph (inputs: the primals, the saved
    tensors, the tangents). Returns both and the number of saved tensors.

    Whatever does not depend on the cotangents can run in the forward (after the last
    layer, with no cotangents, that is the whole gradient); of it the backward receives
    the tensors AOTAutograd's min-cut partitioner would save and recomputes the rest,
    sizes and constants included. (Saving every intermediate instead made mode staged
    slower than the TorchScript stages: 80 vs 67 ms/step, gete.in, 1 rank.)"""
    graph = joint.graph
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    primals = [n for n in placeholders if n.name.startswith("primals")]
    tangents = [n for n in placeholders if n.name.startswith("tangents")]
    outputs = list(graph.output_node().args[0])
    fw_out, bw_out = outputs[:n_forward], outputs[n_forward:]

    on_tangents = set(tangents)  # what can only be computed once the cotangents are known
    for n in graph.nodes:
        if any(a in on_tangents for a in n.all_input_nodes):
            on_tangents.add(n)
    if on_tangents & _ancestors(fw_out):
        raise RuntimeError("the layer's outputs depend on the cotangents")

    depends_on_input = set()
    for n in graph.nodes:
        if n.op == "placeholder" or any(a in depends_on_input for a in n.all_input_nodes):
            depends_on_input.add(n)

    keep = _min_cut_saved(joint, n_forward)
    saved, backward = [], set()
    stack = [n for n in bw_out if isinstance(n, fx.Node)]
    while stack:
        n = stack.pop()
        if n in backward or n in saved:
            continue
        if n.op == "placeholder":
            backward.add(n)
        elif n not in on_tangents and not _is_size(n) and n in depends_on_input \
                and n.name in keep:
            saved.append(n)
        else:
            backward.add(n)
            stack.extend(n.all_input_nodes)
    order = {n: i for i, n in enumerate(graph.nodes)}
    saved.sort(key=order.get)

    fw = _extract(joint, primals, list(fw_out) + saved, _ancestors(list(fw_out) + saved))
    bw = _extract(joint, primals + saved + tangents, bw_out, backward)
    return fw, bw, len(saved)


def _ancestors(nodes) -> set:
    seen, stack = set(), [n for n in nodes if isinstance(n, fx.Node)]
    while stack:
        n = stack.pop()
        if n not in seen:
            seen.add(n)
            stack.extend(n.all_input_nodes)
    return seen


def _extract(joint: fx.GraphModule, inputs: list, outputs: list, keep: set) -> fx.GraphModule:
    """A graph of the nodes ``keep`` of ``joint`` with ``inputs`` as its placeholders."""
    new = fx.Graph()
    env = {}
    for i, n in enumerate(inputs):
        p = new.placeholder(f"in_{i}" if n.op != "placeholder" else n.name)
        p.meta = dict(n.meta)
        env[n] = p
    for n in joint.graph.nodes:
        if n in env or n not in keep or n.op in ("placeholder", "output"):
            continue
        env[n] = new.node_copy(n, lambda a: env[a])
    new.output(tuple(env[o] if isinstance(o, fx.Node) else o for o in outputs))
    new.eliminate_dead_code()
    return fx.GraphModule(joint, new)


def dynamic_shapes(graph: fx.GraphModule, dynamic: set) -> list:
    """``torch.export``'s dynamic_shapes for the placeholders of ``graph``: a dimension whose
    symbolic size involves one of the symbols ``dynamic`` is ``Dim.AUTO`` (export works out
    how it follows from the others), every other dimension is static."""
    from torch.export import Dim

    spec = []
    for n in graph.graph.nodes:
        if n.op != "placeholder":
            continue
        val = n.meta["val"]
        dims = {}
        for d, size in enumerate(val.shape):
            if isinstance(size, torch.SymInt) and size.node.expr.free_symbols & dynamic:
                dims[d] = Dim.AUTO
        spec.append(dims or None)
    return spec


def size_symbols(graph: fx.GraphModule, where: list[tuple[int, int]]) -> set:
    """The symbols of the sizes ``(placeholder index, dimension)`` of ``graph``."""
    placeholders = [n for n in graph.graph.nodes if n.op == "placeholder"]
    out = set()
    for i, d in where:
        size = placeholders[i].meta["val"].shape[d]
        out |= size.node.expr.free_symbols
    return out


# --- padding ----------------------------------------------------------------------------

def insert_rows(t: torch.Tensor, n: int) -> torch.Tensor:
    """``t`` with :data:`PAD` zero rows inserted before row ``n``."""
    return torch.cat([t[:n], t.new_zeros((PAD, *t.shape[1:])), t[n:]])


def drop_rows(t: torch.Tensor, n: int) -> torch.Tensor:
    """``t`` without the :data:`PAD` rows inserted before row ``n``."""
    return torch.cat([t[:n], t[n + PAD:]])


def pad_stage(pos, types, edge_index, edge_shift, n: int, r_max: float):
    """A stage call's inputs with the one-call model's :data:`PAD` dummy atoms, placed after
    the ``n`` local ones (a stage's local atoms are its first ones)."""
    return pad(pos, types, edge_index, edge_shift, r_max, after=n)


# --- running ----------------------------------------------------------------------------

class CompiledLayers:
    """The stages of a compiled package as a layer backend (the protocol of
    :class:`egraff_lmp.deploy.stages.ScriptedLayers`): ``layer_fw_k`` forward, keeping
    what it saved for ``layer_bw_k``."""

    def __init__(self, path, r_max: float, n_layers: int):
        from torch._inductor.package import load_package

        self.r_max = float(r_max)
        self.embed_program = load_package(str(path), EMBED)
        self.fw = [load_package(str(path), layer_fw(k)) for k in range(n_layers)]
        self.bw = [load_package(str(path), layer_bw(k)) for k in range(n_layers)]

    def embed(self, types):
        n = types.shape[0]
        x0, h0, e0 = self.embed_program(torch.cat([types, types.new_zeros(PAD)]))
        return x0[:n], h0[:n], e0[:n]

    def forward(self, k, pos, types, edges, shifts, x, h):
        n = h.shape[0]
        inputs = (*pad_stage(pos, types, edges, shifts, n, self.r_max), insert_rows(x, n),
                  insert_rows(h, n))
        out = self.fw[k](*inputs)
        return out[0][:n], out[1][:n], out[2][:n], (inputs, tuple(out[3:]), n)

    def backward(self, k, saved, g_x, g_h):
        inputs, kept, n = saved
        tangents = () if g_x is None else (insert_rows(g_x, n), insert_rows(g_h, n))
        out = self.bw[k](*inputs, *kept, *tangents)
        if k == 0:
            return drop_rows(out[0], n), None, None
        return drop_rows(out[0], n), drop_rows(out[1], n), out[2][:n]


# --- making -----------------------------------------------------------------------------

def _example(atoms, type_names, r_max):
    """A stage call's inputs from ASE ``atoms``: its first half local, the rest standing in
    for ghosts (every edge from a local atom), padded; and the local count."""
    from vesin import NeighborList

    from ..calculator import neighbour_list

    index = {s: k for k, s in enumerate(type_names)}
    edge_index, shift = neighbour_list(atoms, NeighborList(cutoff=r_max, full_list=True))
    n = max(len(atoms) // 2, 1)
    keep = edge_index[0] < n
    pos = torch.from_numpy(atoms.positions.astype("float64"))
    types = torch.tensor([index[s] for s in atoms.get_chemical_symbols()], dtype=torch.long)
    return pad_stage(pos, types, edge_index[:, keep], shift[keep], n, r_max), n + PAD


def stage_programs(stages: torch.nn.Module, dtype: torch.dtype, n_layers: int, atoms,
                   type_names, r_max: float, where) -> dict:
    """The exported stage programs of a family's ``stages`` (:class:`~egraff_lmp.deploy.
    families.Source`'s), traced on ``atoms``: name -> ExportedProgram. A layer that does
    not unfold or export raises one line naming it."""
    from torch.export import Dim

    from ..errors import located
    from .compiled import _make_fx

    (pos, types, edges, shifts), n = _example(atoms, type_names, r_max)
    programs = {}
    embed = _Embed(stages, dtype).eval()
    try:
        programs[EMBED] = torch.export.export(embed, (types,),
                                              dynamic_shapes=({0: Dim("N", min=PAD)},))
    except Exception as exc:  # noqa: BLE001
        raise located(where, f"the stages do not export ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0][:200]}): use the TorchScript "
                             "artifact for mode staged") from None
    with torch.no_grad():
        x, h, _ = stages.embed(types, dtype)
    h = h[:n]
    for k, layer in enumerate(stages.layers):
        first, last = k == 0, k == n_layers - 1
        with torch.no_grad():
            zero, shift = edge_inputs(pos, edges, shifts, dtype)
            x_next, h_next, _ = layer(zero, types, edges, shift, x, h)
        primals = [pos, types, edges, shifts, x, h]
        tangents = [] if last else [torch.randn_like(x_next), torch.randn_like(h_next)]
        try:
            joint = _functional(_make_fx(joint_layer(layer, dtype, first, last),
                                         (primals, tangents)), primals, tangents)
            fw, bw, _ = partition(joint, 3)
            dims = [(0, 0), (1, 0), (2, 1), (3, 0), (4, 0), (5, 0)]
            dims += [(6, 0), (7, 0)] if not last else []
            dynamic = size_symbols(joint, dims)
            fw_out = fw(*primals)
            bw_in = [*primals, *fw_out[3:], *tangents]
            programs[layer_fw(k)] = torch.export.export(
                fw, tuple(primals), dynamic_shapes=dynamic_shapes(fw, dynamic))
            programs[layer_bw(k)] = torch.export.export(
                bw, tuple(bw_in), dynamic_shapes=dynamic_shapes(bw, dynamic))
        except Exception as exc:  # noqa: BLE001 - any op the tracer or exporter refuses
            raise located(where, f"stage layer {k} does not compile "
                                 f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
                                 ": use the TorchScript artifact for mode staged") from None
        if not last:  # the next layer's inputs: x_{k+1} of the local atoms, zero on ghosts
            x = torch.cat([x_next, x_next.new_zeros((pos.shape[0] - n, x_next.shape[1]))])
            h = h_next
    return programs
