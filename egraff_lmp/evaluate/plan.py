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

import numpy as np

from ..errors import EgraffError
from ..files import atomic_path, write_json
from ..run.record import DUMP, RunSpec
from ..run.watch import Watch
from ..trajectory import minimum_image
from .config import Config, DatasetTask, Model


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


def timing(task: DatasetTask, steps: int) -> dict:
    """MD timestep (fs) and dump interval (steps) of a dataset task (see module doc)."""
    ds = task.dataset
    if ds.contiguous:
        m = max(1, round(ds.frame_spacing_fs / ds.timestep_fs))
        return {"timestep_fs": ds.frame_spacing_fs / m, "dump_every": m, "aligned": True}
    return {"timestep_fs": ds.timestep_fs, "dump_every": max(1, steps // 1000),
            "aligned": False}


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


def prepare_dataset(task: DatasetTask, cfg: Config, outdir: Path) -> dict:
    """Write the dataset's LAMMPS input and start data files; return what was chosen."""
    from ..io.lammps_write import write_lammps_data

    ds, proto = task.dataset, cfg.protocol
    ref = reference_trajectory(task)
    molecule = ref[0].cell is None
    t = timing(task, proto["steps"])
    span = proto["steps"] // t["dump_every"]
    starts, window, note = start_frames(ref.n_frames, proto["runs"], span, t["aligned"])
    planned = outdir / "starts" / task.label / "starts.json"
    if planned.exists():
        import json

        old = json.loads(planned.read_text()).get("starts")
        if old != starts:
            raise EgraffError(f"{outdir} was planned with start frames {old} for "
                              f"{task.label}, this version plans {starts}: give another -o")
    species = sorted(set(ref.symbols))
    velocities = ("the reference's own, central differences" if t["aligned"] else
                  f"Maxwell-Boltzmann at {ds.temperature:g} K, seed {proto['seed']} + k")
    fmt = dict(
        label=task.label, dump=DUMP, boundary="s s s" if molecule else "p p p",
        temperature=ds.temperature, timestep_fs=t["timestep_fs"],
        velocities=velocities, species=" ".join(species), timestep_ps=t["timestep_fs"] / 1000,
        dump_every=t["dump_every"],
        velocity_line="" if t["aligned"] else
        f"velocity        all create {ds.temperature:g} ${{seed}} mom yes rot yes "
        "dist gaussian")
    inp = outdir / "inputs" / f"{task.label}.in"
    tdamp = proto["tdamp_steps"] * t["timestep_fs"] / 1000
    with atomic_path(inp) as tmp:
        tmp.write_text(INPUT_TEMPLATE.format(
            ensemble="NVT", integrator=f"fix             nvt all nvt temp {ds.temperature:g} "
                                       f"{ds.temperature:g} {tdamp:.10g}", **fmt))
    if proto["nve_steps"]:
        with atomic_path(inp.with_name(f"{task.label}-nve.in")) as tmp:
            tmp.write_text(INPUT_TEMPLATE.format(
                ensemble="NVE (energy drift)", integrator="fix             nve all nve", **fmt))
    data_files = []
    for k, s in enumerate(starts):
        frame = boxed(ref[s]) if molecule else ref[s]
        v = reference_velocities(ref, s, ds.frame_spacing_fs) if t["aligned"] else None
        path = outdir / "starts" / task.label / f"start-{k}.data"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                write_lammps_data(tmp, frame, ref.symbols, species, velocities=v)
        data_files.append(path)
    info = {"input": inp, "starts": starts, "data_files": data_files, "species": species,
            "velocities": velocities, "n_reference_frames": ref.n_frames,
            "window": window, "notes": [note] if note else [], **t}
    write_json(outdir / "starts" / task.label / "starts.json",
               {k: (str(v) if isinstance(v, Path) else v) for k, v in info.items()
                if k != "data_files"})
    return info


def run_tasks(model: Model, task: DatasetTask, info: dict, cfg: Config,
              outdir: Path) -> list[RunTask]:
    """The K NVT runs and, with ``protocol.nve_steps``, one NVE run from the first start."""
    proto = cfg.protocol
    plan = [(k, s, data, "nvt", f"run-{k}", proto["steps"], info["input"])
            for k, (s, data) in enumerate(zip(info["starts"], info["data_files"]))]
    if proto["nve_steps"]:
        plan.append((0, info["starts"][0], info["data_files"][0], "nve", "run-nve",
                     proto["nve_steps"], info["input"].with_name(f"{task.label}-nve.in")))
    out = []
    for k, s, data, kind, name, steps, inp in plan:
        rundir = outdir / "runs" / model.name / task.label / name
        spec = RunSpec(
            input=str(inp), rundir=str(rundir),
            variables={"model": str(model.artifact or "calculator"), "start": str(data),
                       "steps": str(steps), "seed": str(proto["seed"] + k)},
            engine="callback" if model.calculator else proto["engine"], np=proto["np"],
            calculator=model.calculator,
            watch=Watch(max_force=proto["max_force"], temp_factor=proto["temp_factor"]),
            progress=False)
        path = outdir / "specs" / model.name / task.label / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        spec.save(path)
        out.append(RunTask(model.name, task.label, k, s, info["velocities"], spec, path, kind))
    return out
