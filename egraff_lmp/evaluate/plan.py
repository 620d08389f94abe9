"""What an evaluation runs: per dataset one LAMMPS input and K start states, per model ×
dataset × k one run (a :class:`~egraff_lmp.run.RunSpec`) in its own run directory.

Start states: run k starts from reference frame s_k (evenly spaced so that, where the
reference is long enough, the whole run has reference frames to compare with). When the
reference is a trajectory with a known frame spacing Δ, the velocities are the reference's
own (central differences (x[s+1] − x[s−1]) / 2Δ, minimum image) and the timestep is Δ/m
with m = round(Δ / the dataset's timestep), so that the dump written every m steps lines
up with the reference frames. Otherwise the velocities are Maxwell–Boltzmann at the
dataset's temperature with seed ``protocol.seed + k``, and nothing is time-aligned.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import EgraffError
from ..files import atomic_path
from ..run.record import DUMP, RunSpec
from ..run.watch import Watch
from ..trajectory import minimum_image
from .config import DatasetTask, Model
from .evaldir import EvalDir
from .records import DatasetPlan, Protocol

#: a run's committee deviation (pair_style egraff ... devi_file), in its run directory
DEVI_FILE = "model_devi.out"


@dataclass
class RunTask:
    """One simulation: ``spec`` is what runs it, saved at ``spec_path`` for executors that
    run it elsewhere (``python -m egraff_lmp.run SPEC``)."""

    model: str
    dataset: str
    k: int
    start_frame: int
    velocities: str
    spec: RunSpec
    spec_path: Path
    kind: str = "nvt"  # or "nve": the energy-drift run

    @property
    def rundir(self) -> Path:
        return Path(self.spec.rundir)


def _joined(files, periodic: bool = True):
    from ..io import read_trajectory
    from ..trajectory import ConcatTrajectory, as_molecule

    parts = [read_trajectory(p) for p in files]
    traj = parts[0] if len(parts) == 1 else ConcatTrajectory(parts)
    return traj if periodic else as_molecule(traj)


def reference_trajectory(task: DatasetTask):
    """The reference of the simulations (the trajectory split, joined in order; a molecule
    stored in a box is read as a molecule)."""
    return _joined(task.trajectory_files, task.dataset.periodic)


def test_trajectory(task: DatasetTask):
    """The frames of the static errors."""
    return _joined(task.test_files, task.dataset.periodic)


class Timing(NamedTuple):
    timestep_fs: float
    dump_every_steps: int
    aligned: bool  # the dumped frames line up with the reference's


def timing(task: DatasetTask, steps: int) -> Timing:
    """MD timestep (fs) and dump interval (steps) of a dataset task (see module doc)."""
    ds = task.dataset
    if ds.contiguous:
        m = max(1, round(ds.frame_spacing_fs / ds.timestep_fs))
        return Timing(ds.frame_spacing_fs / m, m, True)
    return Timing(ds.timestep_fs, max(1, steps // 1000), False)


def start_frames(n_frames: int, runs: int, span: int, contiguous: bool):
    """(K start frames, the EV/FV window in frames after the start, a note).

    The window is the whole run (``span`` frames) when the reference has that many frames
    after every start; otherwise half the reference, so that every run is compared over
    the same number of frames (EV/FV grow towards their decorrelated values with time, so
    windows of different lengths would not be comparable)."""
    lo = 1 if contiguous else 0
    hi = n_frames - 2 if contiguous else n_frames - 1
    if hi < lo:
        raise EgraffError(f"the reference has {n_frames} frames: too few to start from")
    if not contiguous:
        return sorted({int(round(x)) for x in np.linspace(lo, hi, runs)}), 0, ""
    window, note = span, ""
    if hi - span < lo:
        window = max(1, (hi - lo) // 2)
        note = (f"the reference ({n_frames} frames) is shorter than a run ({span} frames "
                f"after its start): EV/FV compare the first {window} frames of every run")
    starts = sorted({int(round(x)) for x in np.linspace(lo, hi - window, runs)})
    return starts, window, note


def reference_velocities(traj, index: int, spacing_fs: float) -> np.ndarray:
    """Velocities (Å/fs) of frame ``index`` from the positions around it (minimum image):
    central differences (x[i+1] − x[i−1]) / 2Δ, or at the first/last frame the second-order
    one-sided ones (∓3x[i] ± 4x[i±1] ∓ x[i±2]) / 2Δ."""
    n = traj.n_frames
    if 0 < index < n - 1:
        prev, nxt = traj[index - 1], traj[index + 1]
        return minimum_image(nxt.positions - prev.positions, nxt.cell) / (2.0 * spacing_fs)
    sign = 1 if index == 0 else -1
    x0, x1, x2 = (traj[index + sign * k] for k in range(3))
    d1 = minimum_image(x1.positions - x0.positions, x0.cell)
    d2 = d1 + minimum_image(x2.positions - x1.positions, x0.cell)
    return sign * (4 * d1 - d2) / (2.0 * spacing_fs)


def boxed(frame, padding: float = 10.0):
    """A molecule's frame in an orthogonal box with ``padding`` Å of vacuum on every side
    (LAMMPS data files need a box; the input's shrink-wrapped boundaries then follow the
    atoms, and nothing is periodic)."""
    from dataclasses import replace

    lo = frame.positions.min(axis=0) - padding
    extent = frame.positions.max(axis=0) + padding - lo
    return replace(frame, positions=frame.positions - lo, cell=np.diag(extent))


INPUT_TEMPLATE = """\
# Written by egraff-lmp evaluate for dataset {label}: {ensemble} at {temperature:g} K,
# {timestep_fs:g} fs steps, starting from a reference frame ({velocities}).
variable model       index NONE
variable start       index NONE
variable steps       index 1000
variable seed        index 1

units           metal
atom_style      atomic
boundary        {boundary}
read_data       ${{start}}

pair_style      egraff ${{model}}
pair_coeff      * * {species}
{velocity_line}
timestep        {timestep_ps:.10g}
{integrator}

thermo_style    custom step temp pe ke etotal press
thermo_modify   format float %.10g
thermo          {dump_every}
dump            traj all custom {dump_every} ${{rundir}}/{dump} &
                id type element x y z fx fy fz
dump_modify     traj sort id element {species} format float %.8g

run             ${{steps}}
"""


def prepare_dataset(task: DatasetTask, protocol: Protocol, evaldir: EvalDir) -> DatasetPlan:
    """Write the dataset's LAMMPS input and start data files; return what was chosen."""
    from ..io.lammps_write import write_lammps_data

    ds = task.dataset
    ref = reference_trajectory(task)
    molecule = ref[0].cell is None
    t = timing(task, protocol.steps)
    span = protocol.steps // t.dump_every_steps
    starts, window, note = start_frames(ref.n_frames, protocol.runs, span, t.aligned)
    planned = evaldir.plan(task.label)
    if planned.exists():
        old = DatasetPlan.load(planned).start_frames
        if old != starts:
            raise EgraffError(f"{evaldir.root} was planned with start frames {old} for "
                              f"{task.label}, this version plans {starts}: give another -o")
    species = sorted(set(ref.symbols))
    velocities = ("the reference's own, central differences" if t.aligned else
                  f"Maxwell-Boltzmann at {ds.temperature:g} K, seed {protocol.seed} + k")
    fmt = dict(
        label=task.label, dump=DUMP, boundary="s s s" if molecule else "p p p",
        temperature=ds.temperature, timestep_fs=t.timestep_fs,
        velocities=velocities, species=" ".join(species), timestep_ps=t.timestep_fs / 1000,
        dump_every=t.dump_every_steps,
        velocity_line="" if t.aligned else
        f"velocity        all create {ds.temperature:g} ${{seed}} mom yes rot yes "
        "dist gaussian")
    plan = DatasetPlan(input=evaldir.input(task.label),
                       nve_input=evaldir.input(task.label, nve=True) if protocol.nve_steps
                       else None, start_frames=starts, species=species,
                       velocities=velocities, n_reference_frames=ref.n_frames,
                       window_frames=window, notes=[note] if note else [],
                       timestep_fs=t.timestep_fs, dump_every_steps=t.dump_every_steps,
                       aligned=t.aligned)
    tdamp = protocol.tdamp_steps * t.timestep_fs / 1000
    with atomic_path(plan.input) as tmp:
        tmp.write_text(INPUT_TEMPLATE.format(
            ensemble="NVT", integrator=f"fix             nvt all nvt temp {ds.temperature:g} "
                                       f"{ds.temperature:g} {tdamp:.10g}", **fmt))
    if protocol.nve_steps:
        with atomic_path(plan.nve_input) as tmp:
            tmp.write_text(INPUT_TEMPLATE.format(
                ensemble="NVE (energy drift)", integrator="fix             nve all nve", **fmt))
    for k, s in enumerate(starts):
        frame = boxed(ref[s]) if molecule else ref[s]
        v = reference_velocities(ref, s, ds.frame_spacing_fs) if t.aligned else None
        path = evaldir.start_data(task.label, k)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                write_lammps_data(tmp, frame, ref.symbols, species, velocities=v)
        plan.data_files.append(path)
    plan.save(planned)
    return plan


def run_tasks(model: Model, task: DatasetTask, plan: DatasetPlan, protocol: Protocol,
              evaldir: EvalDir) -> list[RunTask]:
    """The K NVT runs and, with ``protocol.nve_steps``, one NVE run from the first start."""
    runs = [(k, s, data, "nvt", f"run-{k}", protocol.steps, plan.input)
            for k, (s, data) in enumerate(zip(plan.start_frames, plan.data_files))]
    if protocol.nve_steps:
        runs.append((0, plan.start_frames[0], plan.data_files[0], "nve", "run-nve",
                     protocol.nve_steps, plan.nve_input))
    out = []
    for k, s, data, kind, name, steps, inp in runs:
        rundir = evaldir.rundir(model.name, task.label, name)
        pair = str(model.artifact or "calculator")
        if model.committee:  # the rest of pair_style egraff's line: the committee
            pair = " ".join([pair, *map(str, model.committee), "devi_every",
                             str(protocol.devi_every), "devi_file",
                             str(Path(rundir).resolve() / DEVI_FILE)])
        if model.head:  # the head of a multi-head artifact (the committee's too)
            pair = f"{pair} head {model.head}"
        spec = RunSpec(
            input=str(inp), rundir=str(rundir),
            variables={"model": pair, "start": str(data),
                       "steps": str(steps), "seed": str(protocol.seed + k)},
            engine="callback" if model.calculator else protocol.engine, np=protocol.np,
            calculator=model.calculator,
            watch=Watch(max_force=protocol.max_force_ev_per_a,
                        temp_factor=protocol.temp_factor),
            progress=False)
        path = evaldir.spec(model.name, task.label, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        spec.save(path)
        out.append(RunTask(model.name, task.label, k, s, plan.velocities, spec, path, kind))
    return out
