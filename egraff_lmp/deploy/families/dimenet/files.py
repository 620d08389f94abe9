"""The DimeNet++ files egraff-lmp deploys, read into one :class:`DimeNetFile`.

Told apart by content; what cannot be deployed is refused in one line:

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

from dataclasses import dataclass

import torch

from ....errors import located
from .. import refuse, registry
from ..species import Species
from ..species import resolve as resolve_species
from .pyg import import_pyg

FAMILY = registry.of_module(__name__)


@dataclass
class DimeNetFile:
    """A DimeNet++ file read: PyG's model (weights loaded, in ``dtype``, eval mode), its
    species in model type order, and what the artifact adds to the network's per-atom
    output ``e_i``: ``scale * e_i + e0[type_i]`` (eV)."""

    model: torch.nn.Module  # torch_geometric's DimeNetPlusPlus
    species: Species
    scale: float  # per-atom energy scale (an OCP normalizer's std; 1 for egraff-lmp's file)
    e0: list[float]  # eV per model type
    dtype: torch.dtype
    extra: dict  # the artifact's metadata about the file


def read(path, species=None) -> DimeNetFile:
    """The DimeNet++ file at ``path`` (egraff-lmp's format or an OCP/MDsim checkpoint);
    ``species``: ``--species`` (element symbols in model order)."""
    ck = _read(path)
    if ck.get("format") == FORMAT:
        return _egraff_file(path, ck, species)
    if isinstance(ck.get("config"), dict) and "state_dict" in ck:
        return _ocp_checkpoint(path, ck, species)
    keys = ", ".join(sorted(map(str, ck))[:8])
    raise located(path, f"an unknown DimeNet++ layout (keys: {keys}): expected "
                        f"egraff-lmp's '{FORMAT}' file or an OCP/MDsim checkpoint "
                        "(config + state_dict)")


def _refuse_out_channels(path, n):
    raise located(path, f"out_channels={n}: an energy model has one output per atom "
                        "(out_channels=1)")


FORMAT = "egraff-lmp-dimenet++"
#: MDsim's ``DimeNetPlusPlusWrap`` defaults (its kwargs absent from ``model_attributes``)
_OCP_DEFAULTS = {"hidden_channels": 128, "num_blocks": 4, "int_emb_size": 64,
                 "basis_emb_size": 8, "out_emb_channels": 256, "num_spherical": 7,
                 "num_radial": 6, "envelope_exponent": 5, "num_before_skip": 1,
                 "num_after_skip": 2, "num_output_layers": 3}
#: MDsim/OCP's on-the-fly ``radius_graph_pbc(data, cutoff, 50)``: at most 50 neighbours
_OCP_MAX_NEIGHBOURS = 50
_OCP_IGNORED = {"use_pbc", "regress_forces", "otf_graph", "num_targets", "name"}


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
        refuse.no_cutoff(path, "cutoff", "the hyperparameters",
                         "give it explicitly rather than rely on a default")
    required = [n for n, p in params.items()
                if n != "self" and p.default is inspect.Parameter.empty and n not in hp]
    if required:
        raise located(path, f"hyperparameters lack {', '.join(required)}")
    if int(hp["out_channels"]) != 1:
        _refuse_out_channels(path, hp["out_channels"])
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


def _egraff_file(path, ck: dict, species) -> DimeNetFile:
    if ck.get("model") != "DimeNetPlusPlus":
        raise located(path, f"an egraff-lmp '{FORMAT}' file of model {ck.get('model')!r}, "
                            "not DimeNetPlusPlus")
    hp = _hyperparameters(path, ck.get("hyperparameters"))
    names = ck.get("species")
    found = resolve_species(path, FAMILY.model, species,
                            recorded=[] if names is None else names)
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
    extra = {"species_from": found.where, "model": "DimeNetPlusPlus", "layout": FORMAT,
             "energy_shift_per_atom": dict(zip(names, e0)), "scale": 1.0,
             "training": ck.get("training", {})}
    return DimeNetFile(model, found, 1.0, e0, dtype, extra)


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
        refuse.global_energy_mean(path, target["mean"], "normalizers.target.mean")
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


def _ocp_checkpoint(path, ck: dict, species) -> DimeNetFile:
    config = ck["config"]
    name = config.get("model")
    if not isinstance(name, str) or name.lower() != "dimenetplusplus":
        raise located(path, f"an OCP/MDsim checkpoint of model {name!r}: egraff-lmp deploys "
                            "its dimenetplusplus")
    attrs = dict(config.get("model_attributes") or {})
    if attrs.get("cutoff") is None:
        refuse.no_cutoff(path, "cutoff", "config.model_attributes",
                         "MDsim's default of 10 Å is not assumed")
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
        _refuse_out_channels(path, f"{head.shape[0]} (num_targets)")
    found = resolve_species(path, f"{FAMILY.model} (an OCP/MDsim checkpoint)", species)
    hp = {k: attrs.get(k, v) for k, v in _OCP_DEFAULTS.items()}
    hp.update(out_channels=1, cutoff=float(attrs["cutoff"]), act="swish",
              max_num_neighbors=_OCP_MAX_NEIGHBOURS)
    scale = _ocp_scale(path, ck.get("normalizers"))
    weights, which = _ocp_weights(path, ck, state)
    dtype = _state_dtype(path, weights)
    model = _build(path, hp, weights, dtype,
                   lin_up_bias="output_blocks.0.lin_up.bias" in weights)
    extra = {"species_from": found.where, "model": "DimeNetPlusPlus",
             "layout": f"OCP/MDsim checkpoint ({name})", "weights": which, "scale": scale,
             "forces_note": "MDsim/OCP's DimeNet++ detaches positions in its angles: its own "
                            "forces lack the angular part of -dE/dr; the deployed forces "
                            "are the full gradient of the same energy"}
    return DimeNetFile(model, found, scale, [0.0] * len(found.numbers), dtype, extra)
