"""MACE (and BOTNet-style MACE) models from mace-torch.

Sources:
- a pickled model saved by ``mace_run_train`` (``*.model``). Unpickling runs code from the
  file: egraff-lmp loads it only because the user named it. Pickles do not load across
  e3nn versions.
- a *MACE state* file (``*.mace-state.pt``), written by :func:`save_mace_state`: the
  constructor configuration (JSON-able) and the state dict, loaded with
  ``torch.load(weights_only=True)`` (no code runs). This is how trained models are shipped.
- the TorchScript file MACE users already have for LAMMPS (``mace_create_lammps_model`` →
  ``*-lammps.pt``, mace-torch's ``LAMMPS_MACE`` wrapper): its scripted inner model becomes
  the artifact's, and the parity check runs the file's own ``forward`` (what pair_style
  mace calls). Its layers cannot be split, so it deploys without stages.

Files are recognised by content (:mod:`..sniff`), whatever their names.

BOTNet: mace-torch 0.3.16 dropped its ``BOTNet`` class ("deprecated, use MACE"); a
BOTNet-style model is a ``ScaleShiftMACE`` with correlation order 1 (two-body messages,
residual interaction blocks), which this adapter handles like any MACE.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes

from ...errors import located
from ..schema import ATTR_HEAD
from . import Source, StagingUnsupported, registry
from .reference import Evaluation, ReferenceCalculator

FAMILY = registry.of_module(__name__)
NAME = FAMILY.name
STATE_SUFFIX = ".mace-state.pt"
_STATE_KEY = "egraff_lmp_mace_state"


def head_tensor(index: int = 0) -> torch.Tensor:
    """The model's head (0-dim int64): one tensor shared by the energy model and every
    stage, so that filling it in place (schema ``ATTR_HEAD``) selects the head for all."""
    return torch.tensor(int(index), dtype=torch.long)


class MACEEnergy(torch.nn.Module):
    """Per-atom energies (eV) of a mace-torch model from explicit edges and shifts, with
    the readout, scale/shift and E0s of head ``head_index`` (multi-head models)."""

    def __init__(self, model: torch.nn.Module, n_types: int, head: torch.Tensor):
        super().__init__()
        self.model = model
        self.n_types = n_types
        self.register_buffer(ATTR_HEAD, head)

    def forward(self, pos: torch.Tensor, types: torch.Tensor, edge_index: torch.Tensor,
                shift: torch.Tensor) -> torch.Tensor:
        n = pos.shape[0]
        batch = torch.zeros(n, dtype=torch.long, device=pos.device)
        data = {
            "positions": pos,
            "node_attrs": torch.nn.functional.one_hot(types, self.n_types).to(pos.dtype),
            "edge_index": edge_index,
            "shifts": shift,
            "unit_shifts": torch.zeros_like(shift),
            "cell": torch.zeros((1, 3, 3), dtype=pos.dtype, device=pos.device),
            "batch": batch,
            # [0, n] made by tensor ops (mace reads its numel only): torch.tensor([0, n])
            # would fix n into a compiled graph (deploy/compiled.py)
            "ptr": torch.stack([batch.sum(), torch.ones_like(batch).sum()]),
            "head": self.head_index.view(1).to(pos.device),
        }
        out = self.model(data, training=False, compute_force=False, compute_virials=False,
                         compute_stress=False)
        energy = out["node_energy"]
        assert energy is not None
        return energy


def model_heads(model) -> list[str]:
    """The head names of a mace-torch model (``["Default"]`` where it records none)."""
    heads = getattr(model, "heads", None)
    return [str(h) for h in heads] if heads else ["Default"]


def _is_state(path) -> bool:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not a weights-only file: a pickled model
        return False
    return isinstance(state, dict) and _STATE_KEY in state


def _version() -> str:
    import mace

    return getattr(mace, "__version__", "unknown")


# -- the MACE state format (config + state dict) --------------------------------------------

def _to_json(config: dict) -> dict:
    from e3nn import o3

    out = {}
    for key, value in config.items():
        if isinstance(value, type):
            value = {"class": value.__name__}
        elif isinstance(value, o3.Irreps):
            value = {"irreps": str(value)}
        elif callable(value) and hasattr(value, "__name__"):
            value = {"function": value.__name__}
        elif isinstance(value, (np.ndarray, torch.Tensor)):
            value = {"array": np.asarray(value).tolist()}
        json.dumps(value)  # fail here, not when loading, on anything else
        out[key] = value
    return out


def _from_json(config: dict) -> dict:
    from e3nn import o3
    from mace import modules
    from mace.modules import blocks

    out = {}
    for key, value in config.items():
        if isinstance(value, dict) and "class" in value:
            value = getattr(blocks, value["class"])
        elif isinstance(value, dict) and "irreps" in value:
            value = o3.Irreps(value["irreps"])
        elif isinstance(value, dict) and "function" in value:
            value = {f.__name__: f for f in modules.gate_dict.values() if f is not None}[
                value["function"]]
        elif isinstance(value, dict) and "array" in value:
            value = np.asarray(value["array"])
        out[key] = value
    if "atomic_numbers" in out:
        out["atomic_numbers"] = [int(z) for z in np.asarray(out["atomic_numbers"])]
    return out


def _real_keys(keys):
    """State-dict keys less e3nn's code-generation constants (``_compiled_main*``), which
    depend only on the irreps and are rebuilt, or not, when the model is constructed."""
    return [k for k in keys if "._compiled_main" not in k]


def save_mace_state(model: torch.nn.Module, path) -> Path:
    """Write ``model`` (a ScaleShiftMACE) as config + state dict, loadable without pickle."""
    from mace.tools.scripts_utils import extract_config_mace_model

    config = extract_config_mace_model(model)
    if "error" in config:
        raise ValueError(config["error"])
    state = {_STATE_KEY: 1, "class": type(model).__name__,
             "config": json.dumps(_to_json(config)),
             "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
             "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()
                            if _real_keys([k])}}
    torch.save(state, path)
    return Path(path)


def load_mace_state(path) -> torch.nn.Module:
    from mace import modules

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise located(path, f"not a MACE state file ({type(exc).__name__})") from None
    if not isinstance(state, dict) or _STATE_KEY not in state:
        raise located(path, "not a MACE state file written by egraff-lmp")
    cls = getattr(modules, state["class"], None)
    if cls is None:
        raise located(path, f"unknown MACE class '{state['class']}' for mace-torch "
                            f"{_version()}")
    dtype = getattr(torch, state.get("dtype", "float64"))
    from ..artifact import default_dtype

    with default_dtype(dtype):
        model = cls(**_from_json(json.loads(state["config"])))
    missing, unexpected = model.load_state_dict(state["state_dict"], strict=False)
    missing, unexpected = _real_keys(missing), _real_keys(unexpected)
    if missing or unexpected:
        raise located(path, f"state dict does not fit {state['class']}: missing "
                            f"{missing[:3]}, unexpected {unexpected[:3]}")
    return model.to(dtype).eval()


# -- the adapter -----------------------------------------------------------------------------

def load_pickled_model(path) -> torch.nn.Module:
    """Unpickle a model the user named (runs code from the file)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise located(path, f"cannot load as a pickled torch model ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:120] if str(exc) else ''})") from None


def is_mace_model(obj) -> bool:
    return isinstance(obj, torch.nn.Module) and type(obj).__module__.startswith("mace.")


def source_from_model(model: torch.nn.Module, path, reference=None) -> Source:
    from ase.data import chemical_symbols

    if not is_mace_model(model):
        raise located(path, f"a {type(model).__module__}.{type(model).__name__} is not a "
                            "mace-torch model")
    numbers = [int(z) for z in model.atomic_numbers]
    if not numbers or any(not 0 < z < len(chemical_symbols) for z in numbers):
        raise located(path, "the model's species (atomic_numbers) are not given")
    dtype = next(model.parameters()).dtype
    head = head_tensor()
    energy = MACEEnergy(model.eval(), len(numbers), head)
    try:
        staged, why = MACEStages(model, len(numbers), head), None
    except StagingUnsupported as exc:
        staged, why = None, str(exc)
    return Source(family=NAME, energy_model=energy,
                  type_names=[chemical_symbols[z] for z in numbers],
                  r_max=float(model.r_max), num_layers=int(model.num_interactions),
                  strictly_local=False, dtype=dtype, family_version=_version(),
                  reference=reference, extra={"model_class": type(model).__name__},
                  stages=staged, stages_unavailable=why, heads=model_heads(model))


def _load_model(path) -> torch.nn.Module:
    if str(path).endswith(STATE_SUFFIX) or _is_state(path):
        return load_mace_state(path)
    return load_pickled_model(path)


def load_lammps_file(path) -> torch.jit.ScriptModule:
    """mace-torch's TorchScript file for LAMMPS (``mace_create_lammps_model``)."""
    try:
        m = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # noqa: BLE001
        raise located(path, f"cannot load as TorchScript ({type(exc).__name__})") from None
    missing = [a for a in ("model", "atomic_numbers", "r_max", "num_interactions")
               if not hasattr(m, a)]
    if missing:
        raise located(path, "a TorchScript file, but not MACE's LAMMPS model "
                            f"(mace_create_lammps_model): it has no {', '.join(missing)}")
    return m


def source_from_lammps_file(path) -> Source:
    from ase.data import chemical_symbols

    m = load_lammps_file(path)
    numbers = [int(z) for z in m.atomic_numbers]
    if not numbers or any(not 0 < z < len(chemical_symbols) for z in numbers):
        raise located(path, "the model's species (atomic_numbers) are not elements")
    inner = m.model
    heads = model_heads(inner)
    # the file's head, chosen by mace_create_lammps_model (--head), becomes the default
    chosen = int(m.head.flatten()[0]) if hasattr(m, "head") else 0
    return Source(
        family=NAME, energy_model=MACEEnergy(inner, len(numbers), head_tensor(chosen)),
        heads=heads, default_head=heads[chosen],
        type_names=[chemical_symbols[z] for z in numbers], r_max=float(m.r_max),
        num_layers=int(m.num_interactions), strictly_local=False,
        dtype=next(inner.parameters()).dtype, family_version=_version(),
        reference=lambda head=None: LammpsMACECalculator(load_lammps_file(path), head),
        extra={"model_class": "LAMMPS_MACE (TorchScript, mace_create_lammps_model)"},
        stages=None, stages_unavailable="a TorchScript file (mace_create_lammps_model): its "
        "layers cannot be split; deploy the .model or a .mace-state.pt for message passing "
        "across LAMMPS ranks")


def load(path) -> Source:
    from ..sniff import sniff

    if sniff(path).kind == "torchscript":
        return source_from_lammps_file(path)
    # the reference loads its own copy: scripting the adapter compiles the model in place
    return source_from_model(_load_model(path), path,
                             reference=lambda head=None: _calculator(_load_model(path), head))


def _calculator(model: torch.nn.Module, head: str | None = None):
    """mace-torch's own ASE calculator on the same model, with head ``head`` (for the
    parity check), run with the model's dtype as torch's default (:class:`InModelDtype`)."""
    import warnings

    from mace.calculators import MACECalculator

    dtype = next(model.parameters()).dtype
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        calc = MACECalculator(models=model, device="cpu",
                              default_dtype=str(dtype).replace("torch.", ""),
                              **({} if head is None else {"head": head}))
    return InModelDtype(calc, dtype)


class InModelDtype(Calculator):
    """An ASE calculator run with torch's default dtype set to ``dtype``: mace-torch's makes
    its head mask without a dtype, so a float32 multi-head model fails where the process's
    default is float64 (another float64 calculator set it)."""

    def __init__(self, calc, dtype: torch.dtype):
        super().__init__()
        self.calc, self.dtype = calc, dtype
        self.implemented_properties = list(calc.implemented_properties)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        from ..artifact import default_dtype

        super().calculate(atoms, properties, system_changes)
        with default_dtype(self.dtype):
            self.calc.calculate(self.atoms, properties, system_changes)
        self.results = dict(self.calc.results)


class LammpsMACECalculator(ReferenceCalculator):
    """An ASE calculator that evaluates a ``*-lammps.pt`` file through its own ``forward``
    (the call LAMMPS' pair_style mace makes): energy (eV), forces (eV/Å), per-atom
    energies, on ASE's neighbour list (all periodic images within r_max). ``head``: a head
    name of the model (default: the file's own, chosen when it was created)."""

    per_atom = True

    def __init__(self, module, head: str | None = None):
        super().__init__(next(module.model.parameters()).dtype, module.atomic_numbers)
        if head is not None:
            with torch.no_grad():
                module.head.fill_(model_heads(module.model).index(head))
        self.module = module
        self.r_max = float(module.r_max)
        self.numbers = self.atomic_numbers  # model type order

    def evaluate(self, a) -> Evaluation:
        from ase.neighborlist import primitive_neighbor_list

        i, j, shift = primitive_neighbor_list("ijS", a.pbc, a.cell.array, a.positions,
                                              self.r_max, self_interaction=False)
        n, dt = len(a), self.dtype
        pos = self.positions(a.positions)
        types = torch.tensor([self.numbers.index(int(z)) for z in a.numbers])
        cell = torch.tensor(np.asarray(a.cell.array), dtype=dt)
        unit = torch.tensor(shift, dtype=dt)
        data = {"positions": pos, "edge_index": torch.tensor(np.stack([i, j])),
                "node_attrs": torch.nn.functional.one_hot(types, len(self.numbers)).to(dt),
                "shifts": unit @ cell, "unit_shifts": unit, "cell": cell.view(1, 3, 3),
                "batch": torch.zeros(n, dtype=torch.long), "ptr": torch.tensor([0, n])}
        out = self.module(data, torch.ones(n, dtype=dt), False)
        return Evaluation(forces=out["forces"].detach().numpy().astype(float),
                          energies=out["node_energy"].detach().numpy().astype(float))


# -- the staged path (message passing across LAMMPS ranks) ---------------------------------

def _per_head(model, name: str, default: float) -> torch.Tensor:
    """The scale or shift of ``model.scale_shift`` per head (f64 [n_heads]; ``default``
    for models without one)."""
    heads = len(model_heads(model))
    block = getattr(model, "scale_shift", None)
    if block is None:
        return torch.full((heads,), default, dtype=torch.float64)
    value = torch.atleast_1d(getattr(block, name).detach().to(torch.float64).flatten())
    return value.expand(heads).clone() if value.numel() == 1 else value.clone()


class MACELayerStage(torch.nn.Module):
    """Interaction ``k`` of a MACE model as one stage (see :mod:`egraff_lmp.deploy.stages`).

    Reads ``x`` = ``linear_up_k(h_k)`` of every atom (locals computed here, ghosts filled by
    the engine's exchange), the local atoms' state ``h_k`` and the edges of the local
    atoms; returns ``linear_up_{k+1}(h_{k+1})`` of the local atoms (what the next layer
    exchanges; width 0 after the last layer), ``h_{k+1}`` and the layer's energy terms
    (readout × scale, plus ZBL pair repulsion in the first layer), float64, eV; readout
    column and scale those of the head ``head_index`` (shared with :class:`MACEEnergy`).
    """

    __constants__ = ["residual", "has_readout", "has_next"]

    def __init__(self, model, k: int, n_types: int, head: torch.Tensor):
        super().__init__()
        from mace.modules.blocks import (
            RealAgnosticInteractionBlock,
            RealAgnosticResidualInteractionBlock,
        )

        inter = model.interactions[k]
        if type(inter) not in (RealAgnosticInteractionBlock,
                               RealAgnosticResidualInteractionBlock):
            raise StagingUnsupported(f"interaction block {type(inter).__name__}")
        if hasattr(inter, "conv_fusion"):
            raise StagingUnsupported("fused convolutions (cuequivariance/openequivariance)")
        n = len(model.interactions)
        self.interaction = inter
        self.product = model.products[k]
        self.residual = type(inter) is RealAgnosticResidualInteractionBlock
        self.has_readout = len(model.readouts) == n or k == n - 1
        self.readout = model.readouts[k if len(model.readouts) == n else 0]
        self.has_next = k + 1 < n
        self.next_up = model.interactions[k + 1].linear_up if self.has_next else \
            torch.nn.Identity()
        self.spherical_harmonics = model.spherical_harmonics
        self.radial_embedding = model.radial_embedding
        self.register_buffer("atomic_numbers", model.atomic_numbers.clone())
        if k == 0 and hasattr(model, "pair_repulsion"):
            self.pair = model.pair_repulsion_fn
        self.n_types = n_types
        self.register_buffer(ATTR_HEAD, head)
        self.register_buffer("scale", _per_head(model, "scale", 1.0))

    def forward(self, pos: torch.Tensor, types: torch.Tensor, edge_index: torch.Tensor,
                edge_shift: torch.Tensor, x: torch.Tensor, h: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n_local = h.shape[0]
        attrs = torch.nn.functional.one_hot(types, self.n_types).to(x.dtype)
        attrs_local = attrs[:n_local]
        # our edge (i, j) is MACE's message j -> i: sender j, receiver i (local)
        receiver = edge_index[0]
        sender = edge_index[1]
        vectors = pos[receiver] - pos[sender] - edge_shift
        lengths = torch.linalg.norm(vectors, dim=-1, keepdim=True)
        mace_edges = torch.stack([sender, receiver])
        edge_attrs = self.spherical_harmonics(vectors)
        edge_feats, cutoff = self.radial_embedding(lengths, attrs, mace_edges,
                                                   self.atomic_numbers)
        inter = self.interaction
        sc: torch.Tensor | None = None
        if self.residual:
            sc = inter.skip_tp(h, attrs_local)
        tp_weights = inter.conv_tp_weights(edge_feats)
        if cutoff is not None:
            tp_weights = tp_weights * cutoff
        mji = inter.conv_tp(x[sender], edge_attrs, tp_weights)
        message = torch.zeros((n_local, mji.shape[1]), dtype=mji.dtype,
                              device=mji.device).index_add_(0, receiver, mji)
        message = inter.linear(message) / inter.avg_num_neighbors
        if not self.residual:
            message = inter.skip_tp(message, attrs_local)
        h_next = self.product(node_feats=inter.reshape(message), sc=sc, node_attrs=attrs_local)
        energy = torch.zeros(n_local, dtype=torch.float64, device=pos.device)
        # the head by index_select, not [head]: a tensor index would become a scalar
        # (.item()), which compiled code cannot take from a constant
        head = self.head_index.view(1).to(pos.device)
        scale = self.scale.index_select(0, head)
        if self.has_readout:
            heads = head.expand(n_local)
            e_head = self.readout(h_next, heads).index_select(1, head)[:, 0]
            energy = energy + scale * e_head.to(torch.float64)
        if hasattr(self, "pair"):
            pair = self.pair(lengths, attrs, mace_edges, self.atomic_numbers)
            energy = energy + scale * pair[:n_local].to(torch.float64)
        if self.has_next:
            x_next = self.next_up(h_next)
        else:
            x_next = torch.zeros((n_local, 0), dtype=x.dtype, device=x.device)
        return x_next, h_next, energy


class MACEStages(torch.nn.Module):
    """A mace-torch model cut into stages: ``embed`` (types only) and one stage per
    interaction. Shares its submodules with :class:`MACEEnergy`."""


    def __init__(self, model, n_types: int, head: torch.Tensor):
        super().__init__()
        if getattr(model, "joint_embedding", None) is not None or hasattr(
                model, "embedding_readout"):
            raise StagingUnsupported("extra node embeddings (embedding_specs)")
        self.node_embedding = model.node_embedding
        self.atomic_energies_fn = model.atomic_energies_fn
        self.first_up = model.interactions[0].linear_up
        self.layers = torch.nn.ModuleList(
            [MACELayerStage(model, k, n_types, head) for k in range(len(model.interactions))])
        self.n_types = n_types
        self.register_buffer(ATTR_HEAD, head)
        self.register_buffer("shift", _per_head(model, "shift", 0.0))

    def embed(self, types: torch.Tensor, dtype: torch.dtype
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        attrs = torch.nn.functional.one_hot(types, self.n_types).to(dtype)
        h = self.node_embedding(attrs)
        head = self.head_index.view(1).to(types.device)
        e0 = self.atomic_energies_fn(attrs).index_select(1, head)[:, 0].to(torch.float64) \
            + self.shift.index_select(0, head)
        return self.first_up(h), h, e0

