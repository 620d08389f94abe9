"""NequIP and Allegro models from the nequip 0.19 / nequip-allegro 0.8 framework.

Sources: a ``nequip-train`` checkpoint (``*.ckpt``; a Lightning pickle: unpickling runs
code from the file, loaded only because the user named it) or a ``nequip-package`` archive
(``*.nequip.zip``). The adapter scripts the model's energy-only network (the
``ForceStressOutput``'s inner ``func``) with ``e3nn.util.jit.script`` — plain
``torch.jit.script`` fails on NequIP's e3nn ``Activation`` — and gives it Cartesian edge
shifts through ``cell = I``, ``edge_cell_shift = shift`` (nequip computes
``pos[j] − pos[i] + edge_cell_shift @ cell``). A fresh input dict is built on every call:
the network writes its results, edge vectors included, into the dict it is given.
"""

from __future__ import annotations

import warnings

import torch

from ...errors import located
from . import Source

NAME = "nequip"


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


def claims(path) -> bool:
    p = str(path)
    return p.endswith(".ckpt") or p.endswith(".nequip.zip")


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


def load(path) -> Source:
    from ase.data import atomic_numbers

    model = _load_graph_model(path)
    inner = getattr(getattr(model, "model", None), "func", None)
    if inner is None:
        raise located(path, "unexpected nequip model layout: no ForceStressOutput.func")
    type_names = [str(t) for t in model.type_names]
    not_elements = [t for t in type_names if t not in atomic_numbers]
    if not_elements:
        raise located(path, f"the model's species are not given: type names "
                            f"{', '.join(not_elements)} are not element symbols")
    allegro = getattr(inner, "allegro", None)
    if allegro is not None:
        family, layers, local = "allegro", int(allegro.num_layers), True
    else:
        family = "nequip"
        layers = sum(1 for name in inner._modules if name.endswith("_convnet"))
        local = False
    versions = _versions()
    return Source(family=family, energy_model=NequIPEnergy(inner), type_names=type_names,
                  r_max=float(model.metadata["r_max"]), num_layers=max(layers, 1),
                  strictly_local=local, dtype=_dtype(model.model_dtype),
                  family_version=versions.get(family, versions["nequip"]),
                  reference=lambda: _calculator(path), extra={"versions": versions})


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
