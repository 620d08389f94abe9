"""Compiled artifacts: an artifact's model as an AOTInductor package (``*.egraff.pt2``).

A TorchScript artifact runs its network op by op; AOTInductor turns the same computation,
energy *and* its gradients, into generated C++ (or Triton on a GPU). The package is made
from the trained model (TorchScript cannot be exported), checked against the TorchScript
artifact it sits beside and written only when it agrees with it:

1. the family's energy module is loaded again, traceable (e3nn's TorchScript codegen off);
2. :class:`Unfolded` (the calling convention: per-atom energies, forces and virial by
   autograd) is unfolded by ``make_fx`` into one graph of aten ops, symbolically, at two
   atom and edge counts: the two graphs must be the same (no size fixed into them);
3. ``torch.export`` with dynamic atom and edge counts, ``aoti_compile_and_package``;
4. parity with the TorchScript artifact on the validation configurations and on one of
   another size, with deploy's tolerances.

The package's calling convention (package metadata key ``egraff_lmp.json``: the artifact's
metadata, ``stages`` null, plus ``compiled``: torch version, device, CPU capability, seconds,
the artifact's sha256)::

    (pos f64[N,3] Å, types i64[N], edge_index i64[2,E], edge_shift f64[E,3] Å,
     n_local i64[] (0-d))  ->  (atom_energy f64[N] eV, forces f64[N,3] eV/Å,
                                virial f64[3,3] eV, always computed)

N ≥ 2 and E ≥ 2: every caller appends :data:`PAD` dummy atoms (type 0, at atom 0's
position) joined only to each other by two edges of r_max/2 (:func:`pad`); their index is
≥ n_local, so they add nothing to the energy and no real atom sees them. A package runs
with the torch version and device type it was compiled for, on a CPU with at least its
instruction set; anything else is refused in one line.
"""

from __future__ import annotations

import contextlib
import json
import time
import zipfile
from pathlib import Path

import torch

from ..errors import EgraffError, located
from . import artifact as _artifact
from .model import DeployedModel, edge_inputs
from .schema import (
    ATTR_HEAD,
    COMPILED_CPU,
    COMPILED_DEVICE,
    COMPILED_FROM_SHA256,
    COMPILED_HEAD,
    COMPILED_SECONDS,
    COMPILED_TORCH,
    KEY_COMPILED,
    KEY_HEADS,
    KEY_STAGES,
    META_FILE,
    PROGRAM_MODEL,
    STAGES_LAYERS,
)

SUFFIX = ".egraff.pt2"
#: the name of the one-call program in a package (libtorch's default)
MODEL = PROGRAM_MODEL
#: dummy atoms (and edges) appended to every call: the package's sizes start at 2
PAD = 2
#: torch's CPU capabilities, weakest first
_CAPABILITIES = ("DEFAULT", "VSX", "ZVECTOR", "AVX2", "AVX512")


class Unfolded(DeployedModel):
    """:class:`~egraff_lmp.deploy.model.DeployedModel`'s forward in a traceable form: the
    local atoms chosen by a mask from a 0-d ``n_local`` (not a slice by a Python int) and
    the virial always computed."""

    def forward(self, pos, types, edge_index, edge_shift, n_local):
        dtype = self.model_dtype
        zero, shift = edge_inputs(pos, edge_index, edge_shift, dtype)
        u = zero.detach().requires_grad_(True)
        strain = torch.zeros((3, 3), dtype=dtype, device=pos.device).requires_grad_(True)
        sym = 0.5 * (strain + strain.transpose(0, 1))
        atom_energy = self.energy_model(u + u @ sym, types, edge_index, shift + shift @ sym)
        local = torch.arange(pos.shape[0], device=pos.device) < n_local
        e_local = torch.where(local, atom_energy, torch.zeros_like(atom_energy)).sum()
        g_pos, g_strain = torch.autograd.grad([e_local], [u, strain])
        return (atom_energy.detach().to(torch.float64), (-g_pos).to(torch.float64),
                (-g_strain).to(torch.float64))


def pad(pos, types, edge_index, edge_shift, r_max: float, after: int | None = None):
    """The inputs with :data:`PAD` dummy atoms inserted after atom ``after`` (default: after
    every atom; a stage call puts them after its local atoms), of type 0 at atom 0's position
    (or the origin), joined only to each other by two edges r_max/2 long; the indices of the
    atoms after them move up by :data:`PAD`."""
    n = pos.shape[0] if after is None else after
    at = pos[:1] if pos.shape[0] else pos.new_zeros((1, 3))
    pos = torch.cat([pos[:n], at.expand(PAD, 3), pos[n:]])
    types = torch.cat([types[:n], types.new_zeros(PAD), types[n:]])
    if after is not None:
        edge_index = edge_index + (edge_index >= n).to(edge_index.dtype) * PAD
    extra = torch.tensor([[n, n + 1], [n + 1, n]], dtype=edge_index.dtype,
                         device=edge_index.device)
    half = 0.5 * float(r_max)
    shifts = torch.tensor([[half, 0.0, 0.0], [-half, 0.0, 0.0]], dtype=edge_shift.dtype,
                          device=edge_shift.device)
    return pos, types, torch.cat([edge_index, extra], 1), torch.cat([edge_shift, shifts])


# --- tracing ---------------------------------------------------------------------------

@contextlib.contextmanager
def traceable():
    """Models loaded and traced inside are unfolded op by op: e3nn's code generation
    stays Python (its TorchScript would run with the sizes it first saw), and no dynamic
    size is unified with an equal static one (duck shaping: E == 128 features)."""
    import torch.fx.experimental._config as fx_config

    e3nn = None
    with contextlib.suppress(ImportError):
        import e3nn
    old_e3nn = e3nn.get_optimization_defaults() if e3nn is not None else None
    old_duck = fx_config.use_duck_shape
    try:
        if e3nn is not None:
            e3nn.set_optimization_defaults(jit_script_fx=False)
        fx_config.use_duck_shape = False
        yield
    finally:
        fx_config.use_duck_shape = old_duck
        if e3nn is not None:
            e3nn.set_optimization_defaults(**old_e3nn)


def _make_fx(module, inputs):
    """``module(*inputs)`` (tensors, or lists of them) as a symbolic aten graph."""
    from torch._decomp import core_aten_decompositions
    from torch.fx.experimental.proxy_tensor import make_fx
    from torch.utils._pytree import tree_map

    return make_fx(module, decomposition_table=dict(core_aten_decompositions()),
                   tracing_mode="symbolic", _allow_non_fake_inputs=True,
                   _error_on_data_dependent_ops=True)(*tree_map(torch.clone, tuple(inputs)))


def unfold(module: Unfolded, example: tuple, smaller: tuple, where) -> torch.fx.GraphModule:
    """``module`` as one aten graph; the graphs traced at two sizes must agree, else a size
    was fixed into it (one line naming where)."""
    try:
        graph = _make_fx(module, example)
        other = _make_fx(module, smaller)
    except Exception as exc:  # noqa: BLE001 - any op the tracer cannot take
        raise located(where, f"the model does not unfold into one graph "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}): "
                             "use the TorchScript artifact") from None
    if graph.code != other.code:
        op = _first_difference(graph, other)
        raise located(where, "the model fixes the atom or edge count into its graph (traced "
                             f"at two sizes, the graphs differ first at {op}): use the "
                             "TorchScript artifact")
    return graph


def _first_difference(graph: torch.fx.GraphModule, other: torch.fx.GraphModule) -> str:
    """The first aten op (not a size or stride query) where two traced graphs differ, as
    ``aten.name``: where a size became a constant."""
    import difflib
    import re

    a, b = graph.code.splitlines(), other.code.splitlines()
    for tag, i1, i2, _, _ in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        for line in a[i1:i2] or a[i1:i1 + 1]:
            op = re.search(r"torch\.ops\.(aten\.\w+)", line)
            if op and not op.group(1).startswith(("aten.size", "aten.stride", "aten.sym_")):
                return op.group(1)
    return "an unnamed node"


def _inputs(atoms, type_names, r_max):
    """Padded package inputs of ASE ``atoms`` (all local)."""
    from vesin import NeighborList

    from ..calculator import neighbour_list

    index = {s: k for k, s in enumerate(type_names)}
    edge_index, shift = neighbour_list(atoms, NeighborList(cutoff=r_max, full_list=True))
    pos = torch.from_numpy(atoms.positions.astype("float64"))
    types = torch.tensor([index[s] for s in atoms.get_chemical_symbols()], dtype=torch.long)
    return (*pad(pos, types, edge_index, shift, r_max),
            torch.tensor(len(atoms), dtype=torch.long))


def cpu_capability() -> str:
    return torch.backends.cpu.get_cpu_capability()


def compile_source(source, artifact_path, output, data=None, device: str = "cpu",
                   head: str | None = None) -> Path:
    """Compile ``source`` (a :class:`~egraff_lmp.deploy.families.Source`, loaded inside
    :func:`traceable`) into a package at ``output``, after parity with the TorchScript
    artifact at ``artifact_path``; returns its path. A multi-head model is compiled for
    one head, ``head`` (default: the artifact's default head): the head becomes a constant
    of the generated code."""
    import tempfile

    from torch.export import Dim

    from . import configurations

    if device != "cpu":
        raise EgraffError(f"compiling for {device}: this egraff-lmp compiles for the CPU only "
                          "so far")
    meta = _artifact.read_metadata(artifact_path)
    dtype = meta["dtype"]
    index = _artifact.head_index(meta, head, str(artifact_path))
    head = None if index is None else meta[KEY_HEADS][index]
    if index is not None:
        with torch.no_grad():
            getattr(source.energy_model, ATTR_HEAD).fill_(index)  # stages share it
    configs, where = configurations(meta["type_names"], meta["r_max"], data)
    module = Unfolded(source.energy_model, source.dtype).eval()
    example = _inputs(configs[0], meta["type_names"], meta["r_max"])
    smaller = _inputs(configs[0][:-3], meta["type_names"], meta["r_max"])
    t0 = time.perf_counter()
    with traceable(), _artifact.default_dtype(source.dtype):
        graph = unfold(module, example, smaller, artifact_path)
        n, e = Dim("N", min=PAD), Dim("E", min=PAD)
        try:
            program = torch.export.export(graph, example,
                                          dynamic_shapes=({0: n}, {0: n}, {1: e}, {0: e}, None))
        except Exception as exc:  # noqa: BLE001 - the exporter's refusals are many
            raise located(artifact_path, f"torch.export refused the model "
                                         f"({type(exc).__name__}: "
                                         f"{str(exc).splitlines()[0][:200]}): use the "
                                         "TorchScript artifact") from None
        programs = {MODEL: program}
        stages = meta.get(KEY_STAGES)
        if stages and source.stages is not None:
            from . import compiled_stages

            programs.update(compiled_stages.stage_programs(
                source.stages, source.dtype, int(stages[STAGES_LAYERS]), configs[0],
                meta["type_names"], meta["r_max"], artifact_path))
        else:
            stages = None
        compiled_meta = {**meta, KEY_STAGES: stages, KEY_COMPILED: {
            COMPILED_TORCH: torch.__version__, COMPILED_DEVICE: device,
            COMPILED_CPU: cpu_capability(), COMPILED_FROM_SHA256: _artifact.sha256(
                artifact_path), **({COMPILED_HEAD: head} if head else {})}}
        with tempfile.TemporaryDirectory() as tmp:
            draft = Path(tmp) / f"draft{SUFFIX}"
            _package(programs, compiled_meta, draft)
            seconds = time.perf_counter() - t0
            report = _parity(draft, artifact_path, configs, dtype, head)
            report["configurations"] = where
            compiled_meta[KEY_COMPILED][COMPILED_SECONDS] = round(seconds, 1)
            compiled_meta["validation"] = {**meta.get("validation", {}),
                                           "compiled_parity": report}
            _write_with_metadata(draft, compiled_meta, output)
    return Path(output)


def compile_jobs() -> int:
    """How many programs compile at once by default: the CPUs this process may use
    (``EGRAFF_LMP_COMPILE_JOBS`` overrides)."""
    import os

    given = os.environ.get("EGRAFF_LMP_COMPILE_JOBS")
    if given:
        try:
            return max(1, int(given))
        except ValueError:
            raise EgraffError(f"EGRAFF_LMP_COMPILE_JOBS={given}: not a number of "
                              "processes") from None
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)


def _compile_saved(path: str, options: dict) -> list[str]:
    """One saved ExportedProgram compiled by AOTInductor (in a worker process): the files
    of its package entry."""
    program = torch.export.load(path)
    args, kwargs = program.example_inputs
    return [str(f) for f in torch._inductor.aot_compile(program.module(check_guards=False),
                                                        args, kwargs, options=dict(options))]


def _package(programs: dict, meta: dict, path, jobs: int | None = None) -> None:
    """Compile the exported ``programs`` (name -> ExportedProgram) into one package at
    ``path``, each under its name, every one carrying ``meta``. With ``jobs`` > 1 (default
    :func:`compile_jobs`) and several programs, each is saved (``torch.export.save``) and
    compiled in a process of its own, ``jobs`` at a time (concurrent.futures): the C++
    generation and compilation of one program is single-threaded for most of its time."""
    import concurrent.futures
    import multiprocessing
    import tempfile

    from torch._inductor.package import package_aoti

    options = {"aot_inductor.package": True,
               "aot_inductor.metadata": {META_FILE: json.dumps(meta)}}
    jobs = min(compile_jobs() if jobs is None else jobs, len(programs))
    files = {}
    if jobs <= 1:
        for name, program in programs.items():
            args, kwargs = program.example_inputs
            files[name] = torch._inductor.aot_compile(program.module(check_guards=False),
                                                      args, kwargs, options=dict(options))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            saved = {}
            for name, program in programs.items():
                saved[name] = str(Path(tmp) / f"{name}.pt2")
                torch.export.save(program, saved[name])
            with concurrent.futures.ProcessPoolExecutor(
                    jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = {name: pool.submit(_compile_saved, p, options)
                           for name, p in saved.items()}
                files = {name: f.result() for name, f in futures.items()}
    package_aoti(str(path), files)


def _write_with_metadata(package, meta: dict, output) -> None:
    """Copy ``package`` to ``output`` (atomically) with ``meta`` as its metadata: the
    package's ``*_metadata.json``, which its loaders read (Python's ``get_metadata`` and
    libtorch's ``AOTIModelPackageLoader``)."""
    from ..files import atomic_path

    with zipfile.ZipFile(package) as src, atomic_path(output) as tmp, \
            zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if "/data/aotinductor/" in info.filename and info.filename.endswith(
                    "_metadata.json"):
                inner = json.loads(data)
                inner[META_FILE] = json.dumps(meta)
                data = json.dumps(inner).encode()
            dst.writestr(info, data)


def _parity(package, artifact_path, configs, dtype: str, head: str | None = None) -> dict:
    """Package vs TorchScript artifact on ``configs`` and on a 2x1x1 replica of the first
    (another atom count): forces (eV/Å), energy per atom, per-atom energies (eV); raises
    on a difference above deploy's tolerances."""
    from ..calculator import DeployedCalculator
    from . import checks

    configs = list(configs) + [configs[0].repeat((2, 1, 1))]
    report = checks.parity(DeployedCalculator(load(package)),
                           DeployedCalculator(artifact_path, head=head), configs)
    # in float32 both the package and the artifact round: each is held to deploy's
    # tolerance from the exact forces, so their difference to twice that (the shipped
    # Allegro on a compressed random cell: 1.3e-4 eV/Å at |F| 4.9 eV/Å, 2.7e-5 relative)
    f_tol = checks.force_tolerance(dtype, report["force_scale"]) * (2 if dtype == "float32"
                                                                    else 1)
    e_tol = checks.tolerance(dtype)
    bad = []
    if read_metadata(package).get(KEY_STAGES) and all(configs[0].pbc):
        # the compiled stages, emulated on two sub-domains, against the artifact's one call
        report["staging"] = checks.staging(load(package),
                                           DeployedCalculator(artifact_path, head=head),
                                           configs[0])
        bad += checks.failures({"staging": report["staging"]}, dtype, len(configs[0]))
    if report["forces"] > f_tol:
        bad.append(f"forces differ by {report['forces']:.3g} eV/Å (tolerance {f_tol:.3g})")
    if report["energy_per_atom"] > e_tol:
        bad.append(f"energies by {report['energy_per_atom']:.3g} eV/atom (tolerance "
                   f"{e_tol:.3g})")
    if bad:
        raise located(artifact_path, "the compiled package disagrees with the TorchScript "
                                     "artifact: " + "; ".join(bad) + "; package not written")
    return report


def compile_artifact(artifact_path, source_path=None, output=None, family=None, data=None,
                     device: str = "cpu", head: str | None = None) -> Path:
    """``egraff-lmp compile``: the package of an existing artifact, compiled from its
    trained model (``source_path``; default: the file the artifact names, beside it), for
    head ``head`` of a multi-head model."""
    from . import source_of

    artifact_path = Path(artifact_path)
    meta = _artifact.read_metadata(artifact_path)
    if KEY_COMPILED in meta:
        raise located(artifact_path, "already a compiled package")
    if source_path is None:
        source_path = artifact_path.parent / meta["source_file"]
        if not source_path.exists():
            raise located(artifact_path, f"its trained model {meta['source_file']} is not "
                                         "beside it: give --source MODEL")
    output = output or artifact_path.with_name(artifact_path.name.split(".")[0] + SUFFIX)
    _artifact.head_index(meta, head, str(artifact_path))  # before the slow part
    with traceable():
        source = source_of(meta, artifact_path, source_path, family)
    return compile_source(source, artifact_path, output, data, device, head)


def cache_key(artifact_path, device: str = "cpu", head: str | None = None) -> str:
    """What a cached package depends on: the artifact's content, torch, device, CPU (and
    the head of a multi-head model)."""
    import hashlib

    parts = (_artifact.sha256(artifact_path), torch.__version__, torch.device(device).type,
             cpu_capability()) + ((head,) if head else ())
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:20]


def cached(artifact_path, source_path=None, data=None, device: str = "cpu",
           head: str | None = None) -> Path:
    """The package of ``artifact_path`` from the cache (``$EGRAFF_LMP_CACHE/compiled``,
    default ``~/.cache/egraff-lmp``), compiled on first use. Concurrent first uses
    (``evaluate --jobs N``) compile once: the compile holds a file lock on its entry and
    the package is renamed into place whole; each compile is logged in ``compiles.log``
    beside the entries (time, key, seconds)."""
    from ..files import file_lock
    from ..lammps.plugin import cache_dir

    artifact_path = Path(artifact_path)
    entry = cache_dir() / "compiled" / cache_key(artifact_path, device, head)
    target = entry / (artifact_path.name.split(".")[0] + SUFFIX)
    with file_lock(entry.with_suffix(".lock")):
        if target.exists():
            return target
        t0 = time.perf_counter()
        compile_artifact(artifact_path, source_path, target, data=data, device=device,
                         head=head)
        with open(entry.parent / "compiles.log", "a") as log:
            log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {entry.name} "
                      f"{artifact_path.name} {time.perf_counter() - t0:.1f} s\n")
    return target


# --- reading and running -----------------------------------------------------------------

def is_package(path) -> bool:
    """Whether ``path`` is an AOTInductor package (read from its content)."""
    try:
        with zipfile.ZipFile(path) as z:
            return any("/data/aotinductor/" in n for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def read_metadata(path) -> dict:
    """A package's metadata, read from the zip without loading it."""
    try:
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if "/data/aotinductor/" in n
                     and n.endswith("wrapper_metadata.json")]
            inner = json.loads(z.read(names[0]))[META_FILE] if names else None
    except (zipfile.BadZipFile, OSError, EOFError, KeyError, json.JSONDecodeError) as exc:
        raise located(path, f"not a complete compiled package ({type(exc).__name__})") \
            from None
    if inner is None:
        raise located(path, "an AOTInductor package, but not egraff-lmp's (no "
                            f"{META_FILE} in its metadata)")
    meta = json.loads(inner)
    _check_runs_here(path, meta)
    return meta


def _check_runs_here(path, meta, device: str = "cpu"):
    c = meta[KEY_COMPILED]
    if c[COMPILED_TORCH] != torch.__version__:
        raise located(path, f"compiled with torch {c[COMPILED_TORCH]}, running torch "
                            f"{torch.__version__}: compile it again (egraff-lmp compile)")
    if c[COMPILED_DEVICE] != torch.device(device).type:
        raise located(path, f"compiled for {c[COMPILED_DEVICE]}, asked to run on {device}")
    have, need = cpu_capability(), c.get(COMPILED_CPU, "DEFAULT")
    rank = {k: i for i, k in enumerate(_CAPABILITIES)}
    if rank.get(have, 0) < rank.get(need, 0):
        raise located(path, f"compiled for a CPU with {need}, this one has {have}: compile it "
                            "again here")


class CompiledArtifact(_artifact.Artifact):
    """A loaded package: called as a TorchScript artifact is (the padding is added and
    removed here)."""

    @property
    def head(self) -> str | None:
        """The one head it was compiled for (None: a model without heads)."""
        return (self.metadata.get(KEY_COMPILED) or {}).get(COMPILED_HEAD) or (
            self.heads[0] if self.heads else None)

    def select_head(self, head: str | None = None) -> str | None:
        """A package runs the head it was compiled for: ``head`` must be that one (or
        None)."""
        if not self.heads:
            return _artifact.head_index(self.metadata, head, str(self.path))
        if head is not None and head != self.head:
            raise located(self.path, f"compiled for head {self.head} only: compile it again "
                                     f"with --head {head}")
        return self.head

    def edges(self, pos, types, edge_index, edge_shift, n_local: int):
        from ..errors import EgraffError

        raise EgraffError(f"{self.path}: per-atom virials need the TorchScript artifact; a "
                          "compiled package does not return edge gradients")

    def __call__(self, pos, types, edge_index, edge_shift, n_local: int,
                 compute_virial: bool = False):
        n = pos.shape[0]
        d = self.device
        padded = pad(pos.to(d), types.to(d), edge_index.to(d), edge_shift.to(d), self.r_max)
        energy, forces, virial = self.module(*padded, torch.tensor(n_local, device=d))
        out = energy[:n], forces[:n], virial
        return tuple(t.cpu() for t in out) if d.type != "cpu" else out

    def layers(self):
        """Its compiled stages as a layer backend (:mod:`egraff_lmp.deploy.stages`)."""
        from .compiled_stages import CompiledLayers

        stages = self.metadata.get(KEY_STAGES)
        if not stages:
            raise located(self.path, "compiled without stages: compile it again")
        return CompiledLayers(self.path, self.r_max, int(stages[STAGES_LAYERS]))


def load(path, device: str = "cpu") -> CompiledArtifact:
    meta = read_metadata(path)
    _check_runs_here(path, meta, device)
    where = _artifact.torch_device(device)
    try:
        module = torch._inductor.aoti_load_package(str(path))
    except Exception as exc:  # noqa: BLE001
        raise located(path, f"the compiled package could not be loaded "
                            f"({type(exc).__name__})") from None
    return CompiledArtifact(Path(path), module, meta, where)
