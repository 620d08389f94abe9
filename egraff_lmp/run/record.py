"""What a run is asked to do (:class:`RunSpec`) and what it did (:class:`RunRecord`).

Stages hand each other these types: ``egraff-lmp run`` and ``evaluate`` build a RunSpec,
an engine executes it (``Engine.execute(spec)``), the run directory's ``run.json`` is the
RunRecord, and the executors of ``evaluate`` (concurrent.futures, Dask, a Slurm array)
ship specs (objects, or ``spec.json`` files run by ``python -m egraff_lmp.run SPEC``).

On disk both are versioned JSON: ``spec.json`` ``{"format": "egraff-lmp-run-spec",
"version": 1, ...}`` and ``run.json`` ``{"format": "egraff-lmp-run", "version": 1, "spec":
{...}, ...}``; :meth:`RunRecord.load` also reads the unversioned ``run.json`` of earlier
egraff-lmp (the spec's fields were at the top level then). Units: ms, ps, K, eV.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..errors import located
from ..files import write_json
from .watch import Watch

SPEC_FORMAT, RECORD_FORMAT, VERSION = "egraff-lmp-run-spec", "egraff-lmp-run", 1
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
class RunRecord:
    """A run directory's ``run.json``: the spec, the engine used and why, status
    (running, ok, failed: stopped by the watch or LAMMPS, error: did not run), steps
    requested/done, where and why it stopped, ms per step (LAMMPS' setup apart: ``runs``
    holds each ``run`` command's steps, ms/step and setup_ms), the target temperature (K),
    the elements of the LAMMPS types, the artifact, timestep (ps), atoms, the plugin's
    mode, physical warnings, TotEng drift (eV/ps, meV/atom/ps), versions and times."""

    spec: RunSpec
    engine: str = "?"
    engine_reason: str = ""
    status: str = "running"
    steps_requested: int = 0
    steps_done: int = 0
    failed_at_step: int | None = None
    failure: str | None = None
    error: str | None = None
    ms_per_step: float | None = None
    runs: list[dict] = field(default_factory=list)
    target_temperature: float | None = None
    symbols: list[str] | None = None
    artifact: str | None = None
    timestep_ps: float | None = None
    n_atoms: int | None = None
    pair_mode: str | None = None
    warnings: list[str] = field(default_factory=list)
    energy_drift: dict | None = None
    versions: dict = field(default_factory=dict)
    started_at: str | None = None
    finished_at: str | None = None
    resumed_from_step: int | None = None
    resumed_at: str | None = None
    metrics: object | None = field(default=None, compare=False)  # Comparison (metrics.json)

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

    def absorb(self, status: dict) -> None:
        """Take what an engine reports (its keys are this type's fields)."""
        names = {f.name for f in fields(self)} - {"spec", "metrics"}
        for key, value in status.items():
            if key in names:
                setattr(self, key, value)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("metrics")
        d["spec"] = self.spec.to_dict()
        return {"format": RECORD_FORMAT, "version": VERSION, **d}

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
            if d.get("version", 0) > VERSION:
                raise located(path, f"written by a newer egraff-lmp (run.json version "
                                    f"{d['version']})")
            spec = RunSpec.from_dict(d["spec"], path)
        elif "format" not in d and "input" in d and "rundir" in d:  # before versions
            spec = RunSpec.from_dict({
                "input": d["input"], "rundir": d["rundir"], "variables": d.get("variables"),
                "engine": d.get("engine") if d.get("engine") in ("callback", "ase")
                else "plugin", "np": d.get("np", 1), "calculator": d.get("calculator"),
                "device": d.get("device"), "pair_mode": d.get("pair_mode_requested"),
                "watch": d.get("watch"), "restart_every": d.get("restart_every", 0),
                "ref": d.get("ref")}, path)
        else:
            raise located(path, "is not a run.json written by egraff-lmp run")
        rec = cls(spec=spec)
        rec.absorb(d)
        return rec
