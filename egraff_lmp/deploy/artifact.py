"""The deployed artifact: one TorchScript file with its metadata inside.

A TorchScript archive (``*.egraff.pt``) holding a scripted
:class:`~egraff_lmp.deploy.model.DeployedModel` and, as the extra file
``egraff_lmp.json``, its metadata (family, type names in model order, r_max, layers, ghost
cutoff, dtype, source sha256, versions, creation time, validation results). The keys, their
meaning and units are those of :mod:`egraff_lmp.deploy.schema`, whose generated C++ header
the LAMMPS plugin reads them by. It loads with
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

import contextlib
import datetime
import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import __version__
from ..errors import located
from .schema import (
    ATTR_HEAD,
    CALLING_CONVENTION,
    FORMAT,
    KEY_CALLING_CONVENTION,
    KEY_CREATED_AT,
    KEY_DEFAULT_HEAD,
    KEY_DTYPE,
    KEY_FAMILY,
    KEY_FORMAT,
    KEY_GHOST_CUTOFF,
    KEY_HEADS,
    KEY_NUM_LAYERS,
    KEY_R_MAX,
    KEY_SOURCE_FILE,
    KEY_SOURCE_SHA256,
    KEY_SPECIES_FROM,
    KEY_STAGES,
    KEY_STAGES_UNAVAILABLE,
    KEY_STRICTLY_LOCAL,
    KEY_TYPE_NAMES,
    KEY_UNITS,
    KEY_VALIDATION,
    KEY_VERSIONS,
    META_FILE,
    METHOD_STAGE_EMBED,
    METHOD_STAGE_LAYER,
    OLDEST_CALLING_CONVENTION,
    STAGES_EXCHANGE,
    STAGES_FEATURE_WIDTHS,
    STAGES_LAYERS,
    STAGES_STATE_WIDTHS,
)

#: the archive's extra file holding the metadata (the schema's META_FILE)
META_NAME = META_FILE
SUFFIX = ".egraff.pt"


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def build_metadata(source, source_path, validation: dict, stages: dict | None = None) -> dict:
    """The artifact's metadata: the keys of :mod:`egraff_lmp.deploy.schema` (``KEYS``
    there gives each one's meaning and units)."""
    return {
        KEY_FORMAT: FORMAT,
        KEY_CALLING_CONVENTION: CALLING_CONVENTION,
        KEY_FAMILY: source.family,
        KEY_TYPE_NAMES: list(source.type_names),
        KEY_R_MAX: float(source.r_max),
        KEY_NUM_LAYERS: int(source.num_layers),
        KEY_STRICTLY_LOCAL: bool(source.strictly_local),
        KEY_GHOST_CUTOFF: float(source.ghost_cutoff),
        KEY_DTYPE: str(source.dtype).replace("torch.", ""),
        KEY_SOURCE_FILE: Path(source_path).name,
        KEY_SOURCE_SHA256: sha256(source_path),
        KEY_VERSIONS: {"egraff_lmp": __version__, "torch": torch.__version__,
                       source.family: source.family_version,
                       **source.extra.get("versions", {})},
        KEY_CREATED_AT: datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"),
        KEY_VALIDATION: validation,
        KEY_UNITS: "metal (eV, Å)",
        KEY_STAGES: stages,
        **({KEY_STAGES_UNAVAILABLE: source.stages_unavailable}
           if source.stages_unavailable else {}),
        **({KEY_SPECIES_FROM: source.extra["species_from"]}
           if "species_from" in source.extra else {}),
        **({KEY_HEADS: list(source.heads)} if source.heads else {}),
        **({KEY_DEFAULT_HEAD: source.default_head} if source.default_head else {}),
    }


def head_index(metadata: dict, head: str | None, where="") -> int | None:
    """The index of ``head`` among the artifact's heads (schema ``KEY_HEADS``); for
    ``head=None`` its default head, or its only one. ``None`` for an artifact without heads
    and no head asked for. One-line errors: a multi-head artifact with no head given and no
    default, an unknown head, a head asked of an artifact without heads."""
    from ..errors import EgraffError

    heads = list(metadata.get(KEY_HEADS) or [])
    at = f"{where}: " if where else ""
    if not heads:
        if head is not None:
            raise EgraffError(f"{at}head {head} asked for, but the {metadata.get(KEY_FAMILY)} "
                              "model has no heads")
        return None
    if head is None:
        head = metadata.get(KEY_DEFAULT_HEAD) or (heads[0] if len(heads) == 1 else None)
        if head is None:
            raise EgraffError(f"{at}a model with {len(heads)} heads ({', '.join(heads)}): "
                              "name the one to use (head NAME)")
    if head not in heads:
        raise EgraffError(f"{at}the model has no head {head} (its heads: {', '.join(heads)})")
    return heads.index(head)


def script(source) -> torch.jit.ScriptModule:
    from e3nn.util import jit

    from .model import DeployedModel, StagedDeployedModel

    if source.stages is not None:
        return jit.script(StagedDeployedModel(source.energy_model, source.stages,
                                              source.dtype).eval())
    return jit.script(DeployedModel(source.energy_model, source.dtype).eval())


def stage_widths(module, n_layers: int) -> dict:
    """The ``stages`` metadata entry (schema ``KEY_STAGES``), measured on the scripted
    module: per layer k the width of the features exchanged before it (x_k, in numbers of
    the model's dtype) and of the local state h_k."""
    types = torch.zeros(1, dtype=torch.long)
    embed, layer = getattr(module, METHOD_STAGE_EMBED), getattr(module, METHOD_STAGE_LAYER)
    with torch.no_grad(), torch.jit.optimized_execution(False):
        x, h, _ = embed(types)
        pos = torch.zeros((1, 3), dtype=torch.float64)
        edges = torch.zeros((2, 0), dtype=torch.long)
        shifts = torch.zeros((0, 3), dtype=torch.float64)
        features, states = [], []
        for k in range(n_layers):
            features.append(int(x.shape[1]))
            states.append(int(h.shape[1]))
            x_next, h, _ = layer(k, pos, types, edges, shifts, x, h[:1])
            x = x_next
    return {STAGES_LAYERS: n_layers, STAGES_FEATURE_WIDTHS: features,
            STAGES_STATE_WIDTHS: states,
            STAGES_EXCHANGE: "x_k: the features layer k reads from neighbours (after the "
                             "layer's pre-message linear), forward-communicated before layer "
                             "k >= 1; their gradients reverse-communicated after it"}


def save(module: torch.jit.ScriptModule, metadata: dict, path) -> Path:
    """Write the artifact atomically."""
    from ..files import atomic_path

    with atomic_path(path) as tmp:
        torch.jit.save(module, str(tmp), _extra_files={META_FILE: json.dumps(metadata,
                                                                            indent=1)})
    return Path(path)


def read_metadata(path) -> dict:
    """The artifact's metadata, read from the zip without loading the model."""
    p = Path(path)
    if not p.is_file():
        raise located(path, "no such artifact file")
    from . import compiled

    if compiled.is_package(p):
        return compiled.read_metadata(p)
    try:
        with zipfile.ZipFile(p) as z:
            names = [n for n in z.namelist() if n.endswith(f"/extra/{META_FILE}")]
            if not names:
                raise located(path, f"not an egraff-lmp artifact (no {META_FILE} inside); "
                                    "deploy the trained model with 'egraff-lmp deploy'")
            meta = json.loads(z.read(names[0]))
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise located(path, f"not a complete artifact: truncated or not a TorchScript "
                            f"archive ({exc})") from None
    except json.JSONDecodeError:
        raise located(path, "corrupt artifact metadata") from None
    if meta.get(KEY_FORMAT) != FORMAT:
        raise located(path, "not an egraff-lmp artifact")
    _check_compatible(path, meta)
    return meta


def _check_compatible(path, meta):
    conv = meta.get(KEY_CALLING_CONVENTION)
    if not isinstance(conv, int) or not OLDEST_CALLING_CONVENTION <= conv <= CALLING_CONVENTION:
        raise located(path, f"artifact uses calling convention {conv}; this egraff-lmp speaks "
                            f"{OLDEST_CALLING_CONVENTION} to {CALLING_CONVENTION}: deploy it "
                            "again")
    built = meta.get(KEY_VERSIONS, {}).get("torch", "?")
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
        return list(self.metadata[KEY_TYPE_NAMES])

    @property
    def r_max(self) -> float:
        return float(self.metadata[KEY_R_MAX])

    @property
    def strictly_local(self) -> bool:
        return bool(self.metadata[KEY_STRICTLY_LOCAL])

    @property
    def dtype(self) -> torch.dtype:
        """The model's dtype (the metadata's)."""
        return getattr(torch, self.metadata.get(KEY_DTYPE, "float64"))

    @property
    def heads(self) -> list[str]:
        """The model's heads (empty: none)."""
        return list(self.metadata.get(KEY_HEADS) or [])

    @property
    def head(self) -> str | None:
        """The head the module evaluates now (None: a model without heads)."""
        if not self.heads:
            return None
        return self.heads[int(getattr(self.module, ATTR_HEAD))]

    def select_head(self, head: str | None = None) -> str | None:
        """Make the module evaluate ``head`` (None: the default or only head) and return
        its name; see :func:`head_index` for the errors."""
        index = head_index(self.metadata, head, str(self.path))
        if index is None:
            return None
        with torch.no_grad():
            getattr(self.module, ATTR_HEAD).fill_(index)
        return self.heads[index]

    def __call__(self, pos, types, edge_index, edge_shift, n_local: int,
                 compute_virial: bool = False):
        # TorchScript's graph optimisations (profiling executor, fusion) make MACE 1.2-1.3x
        # slower at 5,400 atoms and gain nothing at 200 (measured side by side in one
        # process); the LAMMPS plugin runs the model unoptimised too.
        d = self.device
        with torch.jit.optimized_execution(False), default_dtype(self.dtype):
            out = self.module(pos.to(d), types.to(d), edge_index.to(d), edge_shift.to(d),
                              n_local, compute_virial)
        return tuple(t.cpu() for t in out) if d.type != "cpu" else out

    def edges(self, pos, types, edge_index, edge_shift, n_local: int):
        """Calling convention 2 (``forward_edges``): per-atom energies [N] (eV), forces
        [N, 3] (eV/Å) and ∂E_local/∂r_e per edge [E, 3] (eV/Å), for per-atom virials."""
        from ..errors import EgraffError

        conv = self.metadata.get(KEY_CALLING_CONVENTION)
        if conv < 2:
            raise EgraffError(f"{self.path}: per-atom virials need calling convention 2, the "
                              f"artifact has {conv}: deploy it again with this egraff-lmp")
        d = self.device
        with torch.jit.optimized_execution(False), default_dtype(self.dtype):
            out = self.module.forward_edges(pos.to(d), types.to(d), edge_index.to(d),
                                            edge_shift.to(d), n_local)
        return tuple(t.cpu() for t in out) if d.type != "cpu" else out

    def layers(self):
        """Its stages as a layer backend (:mod:`egraff_lmp.deploy.stages`)."""
        from .stages import ScriptedLayers

        return ScriptedLayers(self.module, self.dtype)


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    """torch's default dtype set to ``dtype`` for the block: code inside a model that makes
    tensors without a dtype (mace-torch's head mask, ``torch.zeros(...)``) follows the
    process-wide default, which another library (mace-torch's float64 calculator) may have
    changed, and a float32 model then fails with mixed dtypes."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


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
    """The artifact at ``path``: a TorchScript archive, or a compiled package
    (:mod:`.compiled`, read from the file's content)."""
    from . import compiled

    if compiled.is_package(path):
        return compiled.load(path, device)
    meta = read_metadata(path)
    where = torch_device(device)
    try:
        module = torch.jit.load(str(path), map_location=where)
    except Exception as exc:
        raise located(path, f"not a complete artifact: TorchScript could not load it "
                            f"({type(exc).__name__})") from None
    return Artifact(Path(path), module.eval(), meta, where)
