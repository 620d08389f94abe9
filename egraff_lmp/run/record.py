"""What a run is asked to do (:class:`RunSpec`), what it did (:class:`RunStatus`) and the
run directory's record of both (:class:`RunRecord`).

Stages hand each other these types: ``egraff-lmp run`` and ``evaluate`` build a RunSpec, the
launcher (:func:`egraff_lmp.run.launch.launch`) runs it with an engine and returns a
RunStatus, the run directory's ``run.json`` is the RunRecord (the spec, the status, the
engine, times), and the executors of ``evaluate`` (concurrent.futures, Dask, a Slurm array)
ship specs (objects, or ``spec.json`` files run by ``python -m egraff_lmp.run SPEC``).

On disk all three are versioned JSON: ``spec.json`` ``{"format": "egraff-lmp-run-spec",
"version": 1, ...}``; a status on its own (what rank 0 hands the launcher under mpiexec)
``{"format": "egraff-lmp-run-status", "version": 1, ...}``; ``run.json`` ``{"format":
"egraff-lmp-run", "version": 2, "spec": {...}, ...}`` with the status' fields at its top level
(as every version had them). :meth:`RunRecord.load` also reads version 1 (``target_temperature``
for ``target_temperature_k``) and the unversioned ``run.json`` of earlier egraff-lmp (the
spec's fields were at the top level then). Units: ms, ps, K, eV (in the field names).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..errors import located
from ..files import write_json
from .watch import Watch

SPEC_FORMAT, RECORD_FORMAT, STATUS_FORMAT = ("egraff-lmp-run-spec", "egraff-lmp-run",
                                             "egraff-lmp-run-status")
VERSION = 1  #: of spec.json
STATUS_VERSION = 1  #: of a RunStatus on its own
RECORD_VERSION = 2  #: of run.json (2: the status' fields name their units)
#: run.json keys of record versions before 2 → the RunStatus field they became
LEGACY_STATUS_KEYS = {"target_temperature": "target_temperature_k"}
DUMP = "dump.lammpstrj"  #: the dump a run directory's comparison reads (``${rundir}/...``)


@dataclass
class RunSpec:
    """One simulation: the LAMMPS ``input`` (path), its run directory, LAMMPS variables
    (``-var NAME VALUE``), the engine (auto, plugin, callback, ase), MPI ranks, an ASE
    calculator ``module:factory`` (callback engine), device (cpu, cuda, cuda:N), the
    plugin's mode, the stability watch, restart files every N steps, a reference
    trajectory to compare with (default: the input's ``variable reference``)."""

    input: str
    rundir: str
    variables: dict[str, str] = field(default_factory=dict)
    engine: str = "auto"
    np: int = 1
    calculator: str | None = None
    device: str | None = None
    pair_mode: str | None = None
    watch: Watch = field(default_factory=Watch)
    restart_every: int = 0
    ref: str | None = None
    progress: bool = True

    def to_dict(self) -> dict:
        return {"format": SPEC_FORMAT, "version": VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict, where="run spec") -> RunSpec:
        if d.get("format", SPEC_FORMAT) != SPEC_FORMAT or d.get("version", VERSION) > VERSION:
            raise located(where, f"not a run spec this egraff-lmp reads (format "
                                 f"{d.get('format')}, version {d.get('version')})")
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        kw["watch"] = Watch(**(d.get("watch") or {}))
        kw["variables"] = {str(k): str(v) for k, v in (d.get("variables") or {}).items()}
        return cls(**kw)

    def save(self, path) -> Path:
        write_json(path, self.to_dict())
        return Path(path)

    @classmethod
    def load(cls, path) -> RunSpec:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()), path)
        except (OSError, json.JSONDecodeError, TypeError) as exc:
            raise located(path, f"not a readable run spec ({exc})") from None


@dataclass
class RunPart:
    """One ``run N`` command of the input: the steps it did, ms per step over those steps
    and ms of its setup (LAMMPS' ``run 0 pre yes``, ASE's first evaluation: one model
    evaluation and the outputs of the first step; None where not measured)."""

    steps: int
    ms_per_step: float | None = None
    setup_ms: float | None = None


@dataclass
class RunStatus:
    """What the launcher reports of a run, whatever the engine: steps requested and done,
    each ``run`` command (:class:`RunPart`), where and why the watch or LAMMPS stopped it,
    ms per step over all steps (setups apart), the target temperature (K) the watch holds it
    to, the element of each LAMMPS type, the artifact, timestep (ps, whatever the unit
    style), atoms, the plugin's
    mode, the physical warnings, and for a compiled package what it was compiled for and
    how long compiling took (``compiled``: torch_version, device_type, cpu_flags,
    compile_s, artifact_sha256)."""

    steps_requested: int = 0
    steps_done: int = 0
    failed_at_step: int | None = None
    failure: str | None = None
    ms_per_step: float | None = None
    runs: list[RunPart] = field(default_factory=list)
    target_temperature_k: float | None = None
    symbols: list[str] | None = None
    artifact: str | None = None
    timestep_ps: float | None = None
    n_atoms: int | None = None
    pair_mode: str | None = None
    warnings: list[str] = field(default_factory=list)
    compiled: dict | None = None
    units: str = "metal"  #: LAMMPS unit style of the run: its dump and log are written in it

    def stop(self, step: int, reason: str) -> None:
        self.failed_at_step, self.failure = int(step), reason

    def finish(self, seconds: float) -> None:
        """ms per step over all the steps done, which took ``seconds``."""
        if self.steps_done:
            self.ms_per_step = 1000 * seconds / self.steps_done

    def fields(self) -> dict:
        """The fields as plain JSON values (run.json holds them at its top level)."""
        return asdict(self)

    def to_dict(self) -> dict:
        return {"format": STATUS_FORMAT, "version": STATUS_VERSION, **self.fields()}

    @classmethod
    def from_dict(cls, d: dict, where="run status") -> RunStatus:
        if d.get("format", STATUS_FORMAT) != STATUS_FORMAT or \
                d.get("version", STATUS_VERSION) > STATUS_VERSION:
            raise located(where, f"not a run status this egraff-lmp reads (format "
                                 f"{d.get('format')}, version {d.get('version')})")
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        kw["runs"] = [RunPart(**{k: v for k, v in r.items() if k in RUN_PART_FIELDS})
                      for r in d.get("runs") or []]
        kw["warnings"] = list(d.get("warnings") or [])
        return cls(**kw)


RUN_PART_FIELDS = {f.name for f in fields(RunPart)}


@dataclass
class RunRecord:
    """A run directory's ``run.json``: the spec, the engine used and why, the state
    (running, ok, failed: stopped by the watch or LAMMPS, error: did not run, with the
    error), what the run did (``result``, a :class:`RunStatus`), TotEng drift (eV/ps,
    meV/atom/ps), versions and times. The status' fields read through the record as well
    (``rec.steps_done`` is ``rec.result.steps_done``)."""

    spec: RunSpec
    engine: str = "?"
    engine_reason: str = ""
    status: str = "running"
    error: str | None = None
    result: RunStatus = field(default_factory=RunStatus)
    energy_drift: dict | None = None
    versions: dict = field(default_factory=dict)
    started_at: str | None = None
    finished_at: str | None = None
    resumed_from_step: int | None = None
    resumed_at: str | None = None
    metrics: object | None = field(default=None, compare=False)  # Comparison (metrics.json)

    def __getattr__(self, name):
        # only reached for names that are not the record's own: the status' fields
        if name in STATUS_FIELDS and "result" in self.__dict__:
            return getattr(self.result, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def rundir(self) -> Path:
        return Path(self.spec.rundir)

    @property
    def dump(self) -> Path:
        return self.rundir / DUMP

    @property
    def finished(self) -> bool:
        """Ran to its end or was stopped (and so is kept by a resumed evaluation)."""
        return self.status in ("ok", "failed")

    def to_dict(self) -> dict:
        own = {f.name: getattr(self, f.name) for f in fields(self)
               if f.name not in ("spec", "result", "metrics")}
        head = {k: own.pop(k) for k in ("engine", "engine_reason", "status", "error")}
        return {"format": RECORD_FORMAT, "version": RECORD_VERSION,
                "spec": self.spec.to_dict(), **head, **self.result.fields(), **own}

    def save(self) -> None:
        write_json(self.rundir / "run.json", self.to_dict())

    @classmethod
    def load(cls, rundir) -> RunRecord:
        path = Path(rundir) / "run.json"
        try:
            d = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            raise located(path, "no readable run.json: not a run directory") from None
        if not isinstance(d, dict) or not d:
            raise located(path, "is not a run.json written by egraff-lmp run")
        if d.get("format") == RECORD_FORMAT:
            version = d.get("version", 0)
            if version > RECORD_VERSION:
                raise located(path, f"written by a newer egraff-lmp (run.json version "
                                    f"{version})")
            spec = RunSpec.from_dict(d["spec"], path)
        elif "format" not in d and "input" in d and "rundir" in d:  # before versions
            version = 0
            spec = RunSpec.from_dict({
                "input": d["input"], "rundir": d["rundir"], "variables": d.get("variables"),
                "engine": d.get("engine") if d.get("engine") in ("callback", "ase")
                else "plugin", "np": d.get("np", 1), "calculator": d.get("calculator"),
                "device": d.get("device"), "pair_mode": d.get("pair_mode_requested"),
                "watch": d.get("watch"), "restart_every": d.get("restart_every", 0),
                "ref": d.get("ref")}, path)
        else:
            raise located(path, "is not a run.json written by egraff-lmp run")
        if version < 2:
            d = {LEGACY_STATUS_KEYS.get(k, k): v for k, v in d.items()}
        result = RunStatus.from_dict({k: v for k, v in d.items() if k in STATUS_FIELDS}, path)
        own = {f.name for f in fields(cls)} - {"spec", "result", "metrics"}
        return cls(spec=spec, result=result, **{k: v for k, v in d.items() if k in own})


STATUS_FIELDS = frozenset(f.name for f in fields(RunStatus))
