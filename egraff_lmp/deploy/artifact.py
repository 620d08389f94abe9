"""The deployed artifact: one TorchScript file with its metadata inside.

A TorchScript archive (``*.egraff.pt``) holding a scripted
:class:`~egraff_lmp.deploy.model.DeployedModel` and, as the extra file
``egraff_lmp.json``, its metadata (family, type names in model order, r_max, layers, ghost
cutoff, dtype, source sha256, versions, creation time, validation results). It loads with
``torch::jit::load`` in C++ and ``torch.jit.load`` in Python, without the training code, and
nothing in it is unpickled by Python's pickle: metadata is read straight from the zip.

Why TorchScript for every family: mace-torch models script under torch 2.13 (as
``mace_create_lammps_model`` does), and so do NequIP/Allegro models through nequip's own
scripting path (``prepare_model_for_compile`` + ``e3nn.util.jit.script``), even though
``nequip-compile`` refuses ``--mode torchscript`` on torch >= 2.10 as a deprecation
policy. One format keeps one loader in the LAMMPS plugin, needs no C++ compiler at deploy
time and does not tie an artifact to a CPU instruction set, as AOTInductor ``.pt2`` would.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import __version__
from ..errors import located
from .model import CALLING_CONVENTION

META_NAME = "egraff_lmp.json"
FORMAT = "egraff-lmp-artifact"
SUFFIX = ".egraff.pt"


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def build_metadata(source, source_path, validation: dict, stages: dict | None = None) -> dict:
    return {
        "format": FORMAT,
        "calling_convention": CALLING_CONVENTION,
        "family": source.family,
        "type_names": list(source.type_names),
        "r_max": float(source.r_max),
        "num_layers": int(source.num_layers),
        "strictly_local": bool(source.strictly_local),
        "ghost_cutoff": float(source.ghost_cutoff),
        "dtype": str(source.dtype).replace("torch.", ""),
        "source_file": Path(source_path).name,
        "source_sha256": sha256(source_path),
        "versions": {"egraff_lmp": __version__, "torch": torch.__version__,
                     source.family: source.family_version, **source.extra.get("versions", {})},
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"),
        "validation": validation,
        "units": "metal (eV, Å)",
        "stages": stages,
        **({"stages_unavailable": source.stages_unavailable}
           if source.stages_unavailable else {}),
        **({"species_from": source.extra["species_from"]}
           if "species_from" in source.extra else {}),
    }


def script(source) -> torch.jit.ScriptModule:
    from e3nn.util import jit

    from .model import DeployedModel, StagedDeployedModel

    if source.stages is not None:
        return jit.script(StagedDeployedModel(source.energy_model, source.stages,
                                              source.dtype).eval())
    return jit.script(DeployedModel(source.energy_model, source.dtype).eval())


def stage_widths(module, n_layers: int) -> dict:
    """The ``stages`` metadata entry, measured on the scripted module: per layer k the
    width of the features exchanged before it (x_k, in numbers of the model's dtype) and of
    the local state h_k."""
    types = torch.zeros(1, dtype=torch.long)
    with torch.no_grad(), torch.jit.optimized_execution(False):
        x, h, _ = module.stage_embed(types)
        pos = torch.zeros((1, 3), dtype=torch.float64)
        edges = torch.zeros((2, 0), dtype=torch.long)
        shifts = torch.zeros((0, 3), dtype=torch.float64)
        features, states = [], []
        for k in range(n_layers):
            features.append(int(x.shape[1]))
            states.append(int(h.shape[1]))
            x_next, h, _ = module.stage_layer(k, pos, types, edges, shifts, x, h[:1])
            x = x_next
    return {"layers": n_layers, "feature_widths": features, "state_widths": states,
            "exchange": "x_k: the features layer k reads from neighbours (after the "
                        "layer's pre-message linear), forward-communicated before layer "
                        "k >= 1; their gradients reverse-communicated after it"}


def save(module: torch.jit.ScriptModule, metadata: dict, path) -> Path:
    """Write the artifact atomically."""
    from ..files import atomic_path

    with atomic_path(path) as tmp:
        torch.jit.save(module, str(tmp), _extra_files={META_NAME: json.dumps(metadata,
                                                                            indent=1)})
    return Path(path)


def read_metadata(path) -> dict:
    """The artifact's metadata, read from the zip without loading the model."""
    p = Path(path)
    if not p.is_file():
        raise located(path, "no such artifact file")
    try:
        with zipfile.ZipFile(p) as z:
            names = [n for n in z.namelist() if n.endswith(f"/extra/{META_NAME}")]
            if not names:
                raise located(path, "not an egraff-lmp artifact (no egraff_lmp.json inside); "
                                    "deploy the trained model with 'egraff-lmp deploy'")
            meta = json.loads(z.read(names[0]))
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise located(path, f"not a complete artifact: truncated or not a TorchScript "
                            f"archive ({exc})") from None
    except json.JSONDecodeError:
        raise located(path, "corrupt artifact metadata") from None
    if meta.get("format") != FORMAT:
        raise located(path, "not an egraff-lmp artifact")
    _check_compatible(path, meta)
    return meta


def _check_compatible(path, meta):
    if meta.get("calling_convention") != CALLING_CONVENTION:
        raise located(path, f"artifact uses calling convention {meta.get('calling_convention')}"
                            f"; this egraff-lmp speaks {CALLING_CONVENTION}: deploy it again")
    built = meta.get("versions", {}).get("torch", "?")
    if built.split(".")[0] != torch.__version__.split(".")[0]:
        raise located(path, f"artifact built with torch {built}, running torch "
                            f"{torch.__version__} (another major version): deploy it again")


@dataclass
class Artifact:
    """A loaded artifact: the TorchScript module and its metadata."""

    path: Path
    module: torch.jit.ScriptModule
    metadata: dict
    device: torch.device = torch.device("cpu")

    @property
    def type_names(self) -> list[str]:
        return list(self.metadata["type_names"])

    @property
    def r_max(self) -> float:
        return float(self.metadata["r_max"])

    def __call__(self, pos, types, edge_index, edge_shift, n_local: int,
                 compute_virial: bool = False):
        # TorchScript's graph optimisations (profiling executor, fusion) make MACE 1.2-1.3x
        # slower at 5,400 atoms and gain nothing at 200 (measured side by side in one
        # process); the LAMMPS plugin runs the model unoptimised too.
        d = self.device
        with torch.jit.optimized_execution(False):
            out = self.module(pos.to(d), types.to(d), edge_index.to(d), edge_shift.to(d),
                              n_local, compute_virial)
        return tuple(t.cpu() for t in out) if d.type != "cpu" else out


def torch_device(device: str = "cpu") -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N`` as a torch device, with one clear error where this
    torch has no CUDA."""
    from ..errors import EgraffError

    if device == "cpu":
        return torch.device("cpu")
    if device != "cuda" and not device.startswith("cuda:"):
        raise EgraffError(f"unknown device '{device}' (cpu, cuda or cuda:N)")
    if not torch.cuda.is_available():
        raise EgraffError(f"CUDA asked for, this torch has none (torch {torch.__version__} "
                          "is a CPU build or sees no GPU): use device cpu")
    return torch.device(device)


def load(path, device: str = "cpu") -> Artifact:
    meta = read_metadata(path)
    where = torch_device(device)
    try:
        module = torch.jit.load(str(path), map_location=where)
    except Exception as exc:
        raise located(path, f"not a complete artifact: TorchScript could not load it "
                            f"({type(exc).__name__})") from None
    return Artifact(Path(path), module.eval(), meta, where)
