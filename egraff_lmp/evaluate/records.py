"""What the stages of an evaluation hand each other, as types with units in their field names.

``Protocol`` (the config's ``protocol:``) → ``DatasetPlan`` (per dataset: input, start frames,
timestep; ``starts/LABEL/starts.json``) → ``RunSpec``\\ s → ``RunRecord``\\ s →
``RunMetrics`` (one run against the reference; ``runs/.../evaluation.json``) →
``CellResult`` (model × dataset: ``StaticErrors``, the runs' means, ``Curves``, ``NveDrift``)
→ ``Evaluation`` (what ``metrics.json`` holds, with the ``ReferenceAnalysis`` of every
dataset and its ``ReferenceFloor``, the reference against itself).

Units: WF in % (``_percent``), JSD in nats (``_nats``), Å (``_a``), Å² (``_a2``), Å²/ps, fs,
ps, THz, K (``_k``), meV, eV, ms, s; EV and FV are dimensionless. Every record that is a file
of its own is versioned JSON, ``{"format": ..., "version": 2, ...}``; records nested in another
are written without the header, under the enclosing file's version. Version 1 is what
egraff-lmp wrote before these types (keys without units, ``metrics.json`` version 1, caches
without a header): :func:`Record.from_dict` reads it through :mod:`.legacy`.
"""

from __future__ import annotations

import functools
import json
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..errors import located
from ..files import write_json

VERSION = 2  #: of every evaluation record (1: before the records named their units)


def _plain(value):
    """A field's value as JSON data: records as their fields, paths as strings, numpy as lists
    and numbers (NaN and inf stay: ``write_json`` turns them into null)."""
    if isinstance(value, Record):
        return value.fields()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _convert(hint, value):
    """``value`` (JSON data) as the field type ``hint`` wants it: records from their fields,
    paths from strings, containers of them element by element; anything else as it is."""
    if value is None:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value) if len(inner) == 1 else value
    if isinstance(hint, type) and issubclass(hint, Record):
        return hint.from_fields(value)
    if hint is Path:
        return Path(value)
    if origin is list and args:
        return [_convert(args[0], v) for v in value]
    if origin is dict and len(args) == 2:
        return {k: _convert(args[1], v) for k, v in value.items()}
    return value


@functools.cache
def _hints(cls) -> dict:
    """Field name → type of the dataclass ``cls``."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


class Record:
    """Versioned ``to_dict``/``from_dict``, ``save``/``load`` for the dataclasses below."""

    FORMAT: ClassVar[str]
    VERSION: ClassVar[int] = VERSION

    def fields(self) -> dict:
        """The fields as plain JSON data, without the format header."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    def to_dict(self) -> dict:
        return {"format": self.FORMAT, "version": self.VERSION, **self.fields()}

    @classmethod
    def from_fields(cls, d: dict):
        """The record from its fields (as :meth:`fields` writes them); unknown keys are left
        out, missing ones take their defaults."""
        hints = _hints(cls)
        return cls(**{k: _convert(hints[k], v) for k, v in d.items() if k in hints})

    @classmethod
    def from_dict(cls, d, where=None):
        """Read :meth:`to_dict`'s output, or what an earlier egraff-lmp wrote (version 1:
        the same data under keys without units; a cache without a header is version 1)."""
        where = where or cls.FORMAT
        if not isinstance(d, dict):
            raise located(where, f"is not a {cls.FORMAT} record")
        fmt = d.get("format")
        if fmt is not None and fmt != cls.FORMAT:
            raise located(where, f"is a {fmt} record, not a {cls.FORMAT} one")
        version = d.get("version", 1) if fmt is not None else 1
        if not isinstance(version, int) or version > cls.VERSION:
            raise located(where, f"written by a newer egraff-lmp ({cls.FORMAT} version "
                                 f"{version}; this one reads up to {cls.VERSION})")
        body = {k: v for k, v in d.items() if k not in ("format", "version")}
        if version < cls.VERSION:
            from . import legacy

            body = legacy.upgrade(cls, body)
        return cls.from_fields(body)

    def save(self, path) -> Path:
        write_json(path, self.to_dict())
        return Path(path)

    @classmethod
    def load(cls, path):
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise located(path, f"not a readable {cls.FORMAT} record ({exc})") from None
        return cls.from_dict(d, path)


# -- the protocol ------------------------------------------------------------------------
#: config key (``protocol:`` in the YAML) → Protocol field, where the field names a unit
CONFIG_KEYS = {"rdf_dr": "rdf_dr_a", "rdf_rmax": "rdf_rmax_a",
               "max_force": "max_force_ev_per_a", "bond_cutoff": "bond_cutoff_a"}


#: protocol fields added after the fingerprint's first version -> their defaults
_ADDED_SINCE = {"compiled": False, "devi_every": 10}


@dataclass
class Protocol(Record):
    """How every model × dataset is evaluated (the config's ``protocol:``; its keys are the
    field names, except the four that :data:`CONFIG_KEYS` gives without their unit)."""

    FORMAT: ClassVar[str] = "egraff-lmp-evaluation-protocol"

    runs: int = 5                   #: K NVT simulations per model and dataset
    steps: int = 1000               #: N MD steps each
    engine: str = "auto"            #: ``egraff-lmp run --engine``
    np: int = 1                     #: MPI ranks per run
    seed: int = 4928                #: the Maxwell-Boltzmann seed of run k is seed + k
    tdamp_steps: int = 100          #: Nose-Hoover damping, in timesteps
    static_frames: int = 0          #: test frames of the static errors (0: every one)
    rdf_dr_a: float = 0.05          #: RDF bin width
    rdf_rmax_a: float | None = None  #: RDF range (None: the largest both sides allow)
    max_force_ev_per_a: float = 50.0  #: stability watch: stop above this force
    temp_factor: float = 3.0        #: stability watch: stop above this factor × T
    decorrelation_fv: float = 0.5   #: FV(t) above this: the trajectories have decorrelated
    bond_cutoff_a: float | None = None  #: bond angles (None: first minimum of the ref. RDF)
    nve_steps: int = 0              #: > 0: one NVE run of this many steps per model × dataset
    compiled: bool = False          #: run every artifact as its compiled package (cached)
    devi_every: int = 10            #: steps between a committee's deviations

    @staticmethod
    def config_keys() -> dict[str, str]:
        """Every config key → its field."""
        back = {v: k for k, v in CONFIG_KEYS.items()}
        return {back.get(f.name, f.name): f.name for f in fields(Protocol)}

    def config_dict(self) -> dict:
        """The protocol under its config keys, values as given (what the fingerprint of an
        evaluation directory hashes, as every version did)."""
        # keys added since, at their defaults, are left out: directories of before resume
        return {key: getattr(self, name) for key, name in self.config_keys().items()
                if not (name in _ADDED_SINCE and getattr(self, name) == _ADDED_SINCE[name])}

    @classmethod
    def from_config(cls, given: dict, where) -> Protocol:
        """The protocol of a config's ``protocol:`` mapping (unknown keys are errors naming
        the nearest key; counts must be positive integers, ``nve_steps`` 0 or more)."""
        from .config import check_keys

        keys = cls.config_keys()
        check_keys("protocol", given, keys, where)
        p = cls(**{keys[k]: v for k, v in given.items()})
        if not isinstance(p.nve_steps, int) or p.nve_steps < 0:
            raise located(where, f"protocol.nve_steps must be 0 or a positive integer, got "
                                 f"{p.nve_steps!r}")
        if not isinstance(p.compiled, bool):
            raise located(where, f"protocol.compiled must be true or false, got "
                                 f"{p.compiled!r}")
        for key in ("runs", "steps", "np", "devi_every"):
            if not isinstance(getattr(p, key), int) or getattr(p, key) < 1:
                raise located(where, f"protocol.{key} must be a positive integer, got "
                                     f"{getattr(p, key)!r}")
        return p


# -- per dataset ---------------------------------------------------------------------------
@dataclass
class DatasetPlan(Record):
    """What an evaluation chose for one dataset (``plan.prepare_dataset``): the LAMMPS input
    (and the NVE run's, with ``protocol.nve_steps``), the K start frames of the reference and
    their data files, the species (sorted, as in ``pair_coeff``), how the velocities were
    made, the reference's frame count, the EV/FV window (frames after each start), notes, the
    MD timestep (fs), the dump interval (steps) and whether the runs are time-aligned with the
    reference. A plan read from a version-1
    ``metrics.json`` has only the timestep, dump interval, start frames and velocities."""

    FORMAT: ClassVar[str] = "egraff-lmp-dataset-plan"

    input: Path | None = None
    nve_input: Path | None = None
    start_frames: list[int] = field(default_factory=list)
    data_files: list[Path] = field(default_factory=list)
    species: list[str] = field(default_factory=list)
    velocities: str = ""
    n_reference_frames: int | None = None
    window_frames: int | None = None
    notes: list[str] = field(default_factory=list)
    timestep_fs: float | None = None
    dump_every_steps: int | None = None
    aligned: bool | None = None

    @property
    def dt_frame_fs(self) -> float:
        """Time between two dumped frames (fs)."""
        return self.timestep_fs * self.dump_every_steps


@dataclass
class ModelEntry(Record):
    """A model column as ``metrics.json`` records it: its artifact (or one per dataset), what
    it was trained on, an ASE calculator ``module:factory`` instead, family, training (s),
    its committee and head (or one per dataset)."""

    FORMAT: ClassVar[str] = "egraff-lmp-evaluation-model"

    artifact: str | None = None
    artifacts: dict[str, str] = field(default_factory=dict)
    trained_on: str | None = None
    trained_on_per_dataset: dict[str, str] = field(default_factory=dict)
    calculator: str | None = None
    family: str | None = None
    training_time_s: float | None = None
    committee: list[str] = field(default_factory=list)
    head: str | None = None  #: the head of a multi-head artifact
    head_per_dataset: dict[str, str] = field(default_factory=dict)


@dataclass
class DatasetEntry(Record):
    """A dataset as ``metrics.json`` records it: registry name, species, temperature (K),
    reference frame spacing (fs), role, provenance, which settings were estimated from the
    data and where each comes from, the files, and the :class:`DatasetPlan`."""

    FORMAT: ClassVar[str] = "egraff-lmp-evaluation-dataset"

    name: str
    species: list[str] = field(default_factory=list)
    temperature_k: float | None = None
    frame_spacing_fs: float | None = None
    role: str = ""
    provenance: str = ""
    estimated: list[str] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)
    test_files: list[str] = field(default_factory=list)
    trajectory_files: list[str] = field(default_factory=list)
    plan: DatasetPlan = field(default_factory=DatasetPlan)


# -- one model on one dataset --------------------------------------------------------------
@dataclass
class StaticErrors(Record):
    """The model on the test frames (Table 1; ``static/MODEL/DATASET.json``): frames and atoms,
    energy MAE (meV, meV/atom), force MAE (meV/Å), EV, EV on energies from fitted per-species
    references and FV of the model on the frames themselves, notes."""

    FORMAT: ClassVar[str] = "egraff-lmp-static-errors"

    frames: int | None = None
    n_atoms: int | None = None
    e_mae_mev: float | None = None
    e_mae_mev_per_atom: float | None = None
    f_mae_mev_per_a: float | None = None
    ev: float | None = None
    fv: float | None = None
    ev_referenced: float | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class RunMetrics(Record):
    """One finished run against the reference (cached as the run directory's
    ``evaluation.json``): which run, what the run did, the RDF comparison (WF %, JSD nats,
    per element pair), EV/FV over the comparison window with their series, the FV
    decorrelation time (fs), MSD (lag times fs, Å²) and diffusivity (Å²/ps), VDOS (THz,
    1/THz) and its JSD against the reference's over ``vdos_jsd_frames`` frames, the
    bond-angle distribution (1/degree) and its JSD."""

    FORMAT: ClassVar[str] = "egraff-lmp-run-metrics"
    #: the series (lists and mappings): kept in the run's cache, left out of metrics.json
    SERIES: ClassVar[tuple[str, ...]] = (
        "wf_pairs_percent", "jsd_pairs_nats", "ev_t", "fv_t", "ev_referenced_t", "notes",
        "r_a", "rdf", "msd_t_fs", "msd_a2", "diffusivity_a2_per_ps", "vdos_freq_thz",
        "vdos_per_thz", "adf_per_degree", "devi_t_fs", "max_devi_f_ev_per_a")

    model: str
    dataset: str
    k: int
    start_frame: int
    velocities: str = ""
    status: str = "?"
    steps_done: int = 0
    failed_at_step: int | None = None
    failure: str | None = None
    ms_per_step: float | None = None
    engine: str | None = None
    timestep_fs: float | None = None
    wf_percent: float | None = None
    wf_sqrt_percent: float | None = None
    jsd_nats: float | None = None
    wf_pairs_percent: dict[str, float] | None = None
    jsd_pairs_nats: dict[str, float | None] | None = None
    ev: float | None = None
    ev_std: float | None = None
    fv: float | None = None
    fv_std: float | None = None
    ev_t: list | None = None
    fv_t: list | None = None
    ev_referenced: float | None = None
    ev_referenced_std: float | None = None
    ev_referenced_t: list | None = None
    n_frames_compared: int | None = None
    notes: list[str] = field(default_factory=list)
    r_a: list | None = None
    rdf: dict | None = None
    t_decorrelation_fs: float | None = None
    msd_t_fs: list | None = None
    msd_a2: list | None = None
    diffusivity_a2_per_ps: dict[str, float] | None = None
    msd_internal: bool | None = None
    vdos_freq_thz: list | None = None
    vdos_per_thz: list | None = None
    vdos_extent_thz: float | None = None
    vdos_jsd_nats: float | None = None
    vdos_jsd_frames: int | None = None
    adf_per_degree: list | None = None
    adf_jsd_nats: float | None = None
    devi_t_fs: list | None = None            #: committee deviation samples (fs from the start)
    max_devi_f_ev_per_a: list | None = None  #: ... their max_devi_f (eV/Å)

    def summary(self) -> dict:
        """The scalar fields (one row of ``metrics.json``'s ``runs``)."""
        return {k: v for k, v in self.fields().items() if k not in self.SERIES}


@dataclass
class Curves(Record):
    """Curves of a model × dataset, means over its runs: the RDFs (r in Å), EV(t) and FV(t)
    (frames ``dt_frame_fs`` apart), MSD (lag fs, Å²), VDOS (THz, 1/THz), bond angles
    (1/degree, at the reference's ``angles_deg``)."""

    FORMAT: ClassVar[str] = "egraff-lmp-evaluation-curves"

    r_a: list | None = None
    rdf: dict = field(default_factory=dict)
    ev_t: list | None = None
    fv_t: list | None = None
    dt_frame_fs: float | None = None
    msd_t_fs: list | None = None
    msd_a2: list | None = None
    vdos_freq_thz: list | None = None
    vdos_per_thz: list | None = None
    adf_per_degree: list | None = None


@dataclass
class NveDrift(Record):
    """The NVE run's total-energy drift (meV/atom/ps) and largest deviation (eV)."""

    FORMAT: ClassVar[str] = "egraff-lmp-nve-drift"

    drift_mev_per_atom_per_ps: float | None = None
    max_abs_dev_ev: float | None = None
    steps_done: int = 0
    status: str = "?"

    @property
    def abs_drift_mev_per_atom_per_ps(self) -> float | None:
        d = self.drift_mev_per_atom_per_ps
        return abs(d) if d is not None else None


@dataclass
class CellResult(Record):
    """One model on one dataset, one cell of every table: the static errors; over its runs
    the means (± std) of WF, JSD, EV, FV, the decorrelation time, the bond-angle and VDOS
    JSDs and the diffusivities; stability (stable runs, mean time to failure in ps), ms per
    step, training time (s), engines, the VDOS extent (THz), the mean curves, the NVE drift,
    and every note (the static errors', the plan's, the stopped runs')."""

    FORMAT: ClassVar[str] = "egraff-lmp-cell-result"

    static: StaticErrors = field(default_factory=StaticErrors)
    runs: int = 0
    steps: int = 0
    timestep_fs: float | None = None
    temperature_k: float | None = None
    wf_percent: float | None = None
    wf_std_percent: float | None = None
    jsd_nats: float | None = None
    jsd_std_nats: float | None = None
    wf_pairs_percent: dict[str, float | None] = field(default_factory=dict)
    jsd_pairs_nats: dict[str, float | None] = field(default_factory=dict)
    ev: float | None = None
    ev_std: float | None = None
    ev_referenced: float | None = None
    ev_referenced_std: float | None = None
    fv: float | None = None
    fv_std: float | None = None
    t_decorrelation_fs: float | None = None
    adf_jsd_nats: float | None = None
    vdos_jsd_nats: float | None = None
    stable_runs: int = 0
    time_to_failure_ps: float | None = None
    ms_per_step: float | None = None
    training_time_s: float | None = None
    diffusivity_a2_per_ps: dict[str, float | None] = field(default_factory=dict)
    engines: list[str] = field(default_factory=list)
    vdos_extent_thz: float | None = None
    curves: Curves = field(default_factory=Curves)
    nve: NveDrift | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def inference_s_per_1000_steps(self) -> float | None:
        """x ms per step is x s per 1000 steps (Table 4)."""
        return self.ms_per_step


# -- the reference -------------------------------------------------------------------------
@dataclass
class ReferenceFloor(Record):
    """The reference against itself: what sampling alone gives under WF, JSD, EV and FV
    (``how``: which two stretches of ``frames`` frames; a simulation has
    ``simulation_frames``), and the bond-angle and VDOS JSDs and the second stretch's
    diffusivity (Å²/ps)."""

    FORMAT: ClassVar[str] = "egraff-lmp-reference-floor"

    how: str = ""
    frames: int = 0
    simulation_frames: int | None = None
    wf_percent: float | None = None
    jsd_nats: float | None = None
    ev: float | None = None
    ev_referenced: float | None = None
    fv: float | None = None
    wf_pairs_percent: dict[str, float] | None = None
    adf_jsd_nats: float | None = None
    vdos_jsd_nats: float | None = None
    diffusivity_a2_per_ps: dict[str, float] | None = None


@dataclass
class ReferenceAnalysis(Record):
    """A dataset's reference analysed once (``reference/LABEL.json``): frames and atoms, the
    RDFs (r in Å; g(r), or p(r) in 1/Å for a molecule, per ``rdf_normalisation``), the bond
    cutoff (Å; per element pair for a molecule) and its rule, the bond-angle distribution
    (degrees, 1/degree); for a trajectory MSD (fs, Å²), diffusivity (Å²/ps) and VDOS (THz,
    1/THz, resolution and extent); the reference against itself (``itself``)."""

    FORMAT: ClassVar[str] = "egraff-lmp-reference-analysis"

    label: str = ""
    n_frames: int = 0
    n_atoms: int = 0
    r_a: list | None = None
    rdf: dict = field(default_factory=dict)
    rdf_normalisation: str = ""
    molecule: bool = False
    has_energy: bool = False
    bond_cutoff_a: float | dict[str, float] | None = None
    bond_rule: str = ""
    angles_deg: list | None = None
    adf_per_degree: list | None = None
    msd_t_fs: list | None = None
    msd_a2: list | None = None
    diffusivity_a2_per_ps: dict[str, float] | None = None
    msd_internal: bool | None = None
    vdos_freq_thz: list | None = None
    vdos_per_thz: list | None = None
    vdos_resolution_thz: float | None = None
    vdos_extent_thz: float | None = None
    itself: ReferenceFloor = field(default_factory=ReferenceFloor)


# -- the committee deviation (egraff_lmp.evaluate.deviation) ----------------------------
@dataclass
class DeviationRun(Record):
    """One run's committee deviation: the largest max_devi_f (eV/Å) along it and, for a
    failed run, at its failure (fs), the largest in the last ``window_fs`` fs before it, when
    it first crossed the threshold (fs) and how far ahead of the failure that was (fs)."""

    FORMAT: ClassVar[str] = "egraff-lmp-deviation-run"

    model: str = ""
    k: int = 0
    stable: bool = True
    samples: int = 0
    max_ev_per_a: float | None = None
    failed_at_fs: float | None = None
    last_window_max_ev_per_a: float | None = None
    flagged_at_fs: float | None = None
    lead_fs: float | None = None
    last_window_percentile: float | None = None  #: where that lies among the stable samples
    t_fs: list = field(default_factory=list)                  #: the samples' times
    max_devi_f_ev_per_a: list = field(default_factory=list)   #: ... and max_devi_f


@dataclass
class CommitteeWarning(Record):
    """A dataset's answer: the threshold (eV/Å; the ``percentile`` of the stable runs'
    samples, ``stable_samples`` of them from ``stable_runs`` runs; None: no stable run) and
    every run's :class:`DeviationRun`."""

    FORMAT: ClassVar[str] = "egraff-lmp-committee-warning"

    percentile: float = 95.0
    window_fs: float = 50.0
    threshold_ev_per_a: float | None = None
    stable_runs: int = 0
    stable_samples: int = 0
    runs: list[DeviationRun] = field(default_factory=list)

    @property
    def failed(self) -> list[DeviationRun]:
        return [r for r in self.runs if not r.stable]


# -- the whole evaluation ------------------------------------------------------------------
@dataclass
class Evaluation(Record):
    """What ``metrics.json`` holds: title, config, protocol, the models and datasets, a
    :class:`CellResult` per model (in the config's order) and dataset, each dataset's
    :class:`ReferenceAnalysis`, every run's scalar :class:`RunMetrics` (their series stay in
    the runs' own caches) and the runs that ended in an error."""

    FORMAT: ClassVar[str] = "egraff-lmp-evaluation"

    title: str = ""
    config: str = ""
    protocol: Protocol = field(default_factory=Protocol)
    models: dict[str, ModelEntry] = field(default_factory=dict)
    datasets: dict[str, DatasetEntry] = field(default_factory=dict)
    results: dict[str, dict[str, CellResult]] = field(default_factory=dict)
    reference: dict[str, ReferenceAnalysis] = field(default_factory=dict)
    runs: list[RunMetrics] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    committee: dict[str, CommitteeWarning] = field(default_factory=dict)

    def fields(self) -> dict:
        out = super().fields()
        out["runs"] = [r.summary() for r in self.runs]
        return out

    def cell(self, model: str, dataset: str) -> CellResult | None:
        """The result of ``model`` on ``dataset`` (None: no run of it finished)."""
        return self.results.get(model, {}).get(dataset)
