"""NequIP and Allegro models from the nequip 0.19 / nequip-allegro 0.8 framework.

Sources: a ``nequip-train`` checkpoint (``*.ckpt``; a Lightning pickle: unpickling runs
code from the file, loaded only because the user named it), a ``nequip-package`` archive
(``*.nequip.zip``), or a compiled TorchScript file (``*.nequip.pth``, what ``nequip-compile
--mode torchscript`` wrote before torch 2.10 and nequip's ``save_torchscript_model`` still
writes): its scripted energy network is taken as it is, species and r_max from the file's
metadata, parity against ``NequIPCalculator.from_compiled_model`` on the same file.

The adapter scripts the model's energy-only network (the ``ForceStressOutput``'s inner
``func``) with ``e3nn.util.jit.script`` — plain
``torch.jit.script`` fails on NequIP's e3nn ``Activation`` — and gives it Cartesian edge
shifts through ``cell = I``, ``edge_cell_shift = shift`` (nequip computes
``pos[j] − pos[i] + edge_cell_shift @ cell``). A fresh input dict is built on every call:
the network writes its results, edge vectors included, into the dict it is given.
"""

from __future__ import annotations

import warnings

import torch

from ...errors import located
from . import Source, StagingUnsupported, registry

FAMILY = registry.of_module(__name__)
NAME = FAMILY.name


class NequIPEnergy(torch.nn.Module):
    """Per-atom energies (eV) of a nequip energy network from explicit edges and shifts."""

    def __init__(self, func: torch.nn.Module):
        super().__init__()
        self.func = func

    def forward(self, pos: torch.Tensor, types: torch.Tensor, edge_index: torch.Tensor,
                shift: torch.Tensor) -> torch.Tensor:
        data = {
            "pos": pos,
            "edge_index": edge_index,
            "atom_types": types,
            "cell": torch.eye(3, dtype=pos.dtype, device=pos.device).view(1, 3, 3),
            "edge_cell_shift": shift,
        }
        return self.func(data)["atomic_energy"].view(-1)


def _versions() -> dict:
    import nequip

    out = {"nequip": nequip.__version__}
    try:
        import allegro

        out["allegro"] = allegro.__version__
    except ImportError:
        pass
    return out


def _load_graph_model(path):
    from nequip.model.saved_models import load_saved_model
    from nequip.utils.global_state import set_global_state

    set_global_state()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return load_saved_model(str(path)).eval()
    except Exception as exc:  # nequip/lightning raise many types for foreign files
        msg = str(exc).splitlines()[0][:160] if str(exc) else ""
        raise located(path, f"cannot load as a nequip-train checkpoint or package "
                            f"({type(exc).__name__}: {msg})") from None


def _compiled(path):
    """(scripted energy network, type names, r_max) of a ``*.nequip.pth`` file."""
    extra = {"type_names": "", "r_max": ""}
    try:
        m = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        func = m.model.func
    except Exception as exc:  # noqa: BLE001
        raise located(path, f"cannot load as a compiled nequip model ({type(exc).__name__})"
                      ) from None
    if not extra["type_names"] or not extra["r_max"]:
        raise located(path, "a compiled nequip model without type_names or r_max metadata")
    names = extra["type_names"]
    names = (names.decode() if isinstance(names, bytes) else names).split()
    r_max = extra["r_max"]
    return func, names, float(r_max.decode() if isinstance(r_max, bytes) else r_max)


def _source(path, inner, type_names, r_max, dtype, reference) -> Source:
    from ase.data import atomic_numbers

    not_elements = [t for t in type_names if t not in atomic_numbers]
    if not_elements:
        raise located(path, f"the model's species are not given: type names "
                            f"{', '.join(not_elements)} are not element symbols")
    children = dict(inner.named_children())
    if "allegro" in children:  # the artifact says allegro (FAMILY.artifact_families)
        family, layers, local = "allegro", int(children["allegro"].num_layers), True
    else:
        family = NAME
        layers = sum(1 for name in children if name.endswith("_convnet"))
        local = False
    versions = _versions()
    staged, why = None, None
    if not local and not isinstance(inner, torch.jit.ScriptModule):
        try:
            staged = NequIPStages(inner)
        except StagingUnsupported as exc:
            why = str(exc)
    elif not local:
        why = ("a compiled TorchScript file (*.nequip.pth): its layers cannot be split; "
               "deploy the checkpoint or package for message passing across LAMMPS ranks")
    return Source(family=family, energy_model=NequIPEnergy(inner), type_names=type_names,
                  r_max=r_max, num_layers=max(layers, 1), strictly_local=local, dtype=dtype,
                  family_version=versions.get(family, versions["nequip"]),
                  reference=reference, extra={"versions": versions},
                  stages=staged, stages_unavailable=why)


def load(path) -> Source:
    from ..sniff import sniff

    if sniff(path).kind == "torchscript":
        func, names, r_max = _compiled(path)
        return _source(path, func, names, r_max, next(func.parameters()).dtype,
                       lambda: _compiled_calculator(path))
    model = _load_graph_model(path)
    inner = getattr(getattr(model, "model", None), "func", None)
    if inner is None:
        raise located(path, "unexpected nequip model layout: no ForceStressOutput.func")
    return _source(path, inner, [str(t) for t in model.type_names],
                   float(model.metadata["r_max"]), _dtype(model.model_dtype),
                   lambda: _calculator(path))


def _compiled_calculator(path):
    """nequip's own ASE calculator on the same compiled file (parity checks)."""
    from nequip.integrations.ase import NequIPCalculator

    path = str(path)
    if not path.endswith(".nequip.pth"):  # nequip's loader goes by the name
        import os
        import tempfile

        named = os.path.join(tempfile.mkdtemp(prefix="egraff-nequip-"), "model.nequip.pth")
        os.symlink(os.path.abspath(path), named)
        path = named
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return NequIPCalculator.from_compiled_model(path, device="cpu",
                                                    chemical_species_to_atom_type_map=True)


def _calculator(path):
    """nequip's own ASE calculator on the same checkpoint/package (parity checks)."""
    from nequip.integrations.ase import NequIPCalculator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return NequIPCalculator._from_saved_model(str(path), device="cpu",
                                                  chemical_species_to_atom_type_map=True)


def _dtype(value) -> torch.dtype:
    if isinstance(value, torch.dtype):
        return value
    return getattr(torch, str(value).replace("torch.", ""))


# -- the staged path (message passing across LAMMPS ranks) ---------------------------------

# per-atom modules that may follow the last convolution (readout, per-type scale/shift, sum)
_PER_ATOM_AFTER = ("ScalarMLP", "PerTypeScaleShift", "AtomwiseReduce", "AtomwiseLinear")


def _edges_dict(pos: torch.Tensor, types: torch.Tensor, edge_index: torch.Tensor,
                shift: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"pos": pos, "edge_index": edge_index, "atom_types": types,
            "cell": torch.eye(3, dtype=pos.dtype, device=pos.device).view(1, 3, 3),
            "edge_cell_shift": shift}


class NequIPLayerStage(torch.nn.Module):
    """Convolution ``k`` of a NequIP network as one stage (see
    :mod:`egraff_lmp.deploy.stages`): reads ``x`` = the neighbour-normalised ``linear_1``
    of every atom's features, the local features ``h`` and the local atoms' edges; returns
    the next layer's ``x`` of the local atoms (width 0 after the last), their new features
    and, in the last layer, the per-atom energies (readout, per-type scale and shift; f64,
    eV). nequip's edge convention is ours: (i, j) = (centre, neighbour)."""

    __constants__ = ["resnet", "has_next", "has_sc"]

    def __init__(self, convnets, k: int, before, after):
        super().__init__()
        layer = convnets[k]
        self.conv = layer.conv
        self.nonlin = layer.equivariant_nonlin
        self.resnet = bool(layer.resnet)
        self.has_sc = layer.conv.sc is not None
        self.before = before  # embeddings of nodes and edges, as in the whole network
        self.has_next = k + 1 < len(convnets)
        if self.has_next:
            self.next_linear = convnets[k + 1].conv.linear_1
            self.next_norm = convnets[k + 1].conv.avg_num_neighbors_norm
        else:
            self.after = after

    def forward(self, pos: torch.Tensor, types: torch.Tensor, edge_index: torch.Tensor,
                edge_shift: torch.Tensor, x: torch.Tensor, h: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n_local = h.shape[0]
        data = _edges_dict(pos, types, edge_index, edge_shift)
        for module in self.before:
            data = module(data)
        conv = self.conv
        y = conv.tp_scatter(x=x, edge_attr=data["edge_attrs"],
                            edge_weight=conv.edge_mlp(data["edge_embedding"]),
                            edge_dst=edge_index[0], edge_src=edge_index[1])[:n_local]
        y = conv.linear_2(y)
        if self.has_sc:
            y = y + conv.sc(h, data["node_attrs"][:n_local])
        y = self.nonlin(y)
        if self.resnet:
            y = h + y
        local_types = types[:n_local]
        energy = torch.zeros(n_local, dtype=torch.float64, device=pos.device)
        if self.has_next:
            d = {"node_features": self.next_linear(y), "atom_types": local_types}
            x_next = self.next_norm(d)["node_features"]
        else:
            x_next = torch.zeros((n_local, 0), dtype=x.dtype, device=x.device)
            d = {"node_features": y, "atom_types": local_types}
            for module in self.after:
                d = module(d)
            energy = d["atomic_energy"].view(-1).to(torch.float64)
        return x_next, y, energy


class NequIPStages(torch.nn.Module):
    """A nequip energy network (SequentialGraphNetwork) cut into stages: ``embed`` (the
    network's node embedding and the first ``linear_1``, from the types alone) and one stage
    per ``ConvNetLayer``. Shares its submodules with :class:`NequIPEnergy`."""

    def __init__(self, func: torch.nn.Module):
        super().__init__()
        names = list(func._modules)
        conv_names = [n for n in names if type(func._modules[n]).__name__ == "ConvNetLayer"]
        if not conv_names:
            raise StagingUnsupported("no ConvNetLayer in the network")
        first, last = names.index(conv_names[0]), names.index(conv_names[-1])
        if names[first:last + 1] != conv_names:
            raise StagingUnsupported("modules between the convolutions")
        after = [func._modules[n] for n in names[last + 1:]]
        odd = [type(m).__name__ for m in after if type(m).__name__ not in _PER_ATOM_AFTER]
        if odd:
            raise StagingUnsupported(f"modules after the last convolution that are not "
                                     f"per-atom: {', '.join(odd)}")
        before = torch.nn.ModuleList([func._modules[n] for n in names[:first]])
        convnets = [func._modules[n] for n in conv_names]
        self.before = before
        self.first_linear = convnets[0].conv.linear_1
        self.first_norm = convnets[0].conv.avg_num_neighbors_norm
        self.layers = torch.nn.ModuleList(
            [NequIPLayerStage(convnets, k, before, torch.nn.ModuleList(after))
             for k in range(len(convnets))])

    def embed(self, types: torch.Tensor, dtype: torch.dtype
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n = types.shape[0]
        data = _edges_dict(torch.zeros((n, 3), dtype=dtype, device=types.device), types,
                           torch.zeros((2, 0), dtype=torch.long, device=types.device),
                           torch.zeros((0, 3), dtype=dtype, device=types.device))
        for module in self.before:
            data = module(data)
        h = data["node_features"]
        d = {"node_features": self.first_linear(h), "atom_types": types}
        x = self.first_norm(d)["node_features"]
        return x, h, torch.zeros(n, dtype=torch.float64, device=types.device)
