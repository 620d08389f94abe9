"""``egraff-lmp run``: a LAMMPS input, one of the engines, one run directory.

The run directory holds ``log.lammps``, whatever dumps the input writes (by convention
``${rundir}/dump.lammpstrj``: the variable ``rundir`` is always defined), ``run.json``
(engine used and why, steps requested and done, ``failed_at_step`` and the reason, ms/step,
versions) and, when a reference trajectory is known (``--ref`` or the input's
``variable reference index PATH``), ``metrics.json`` (the ``compare`` output) and
``compare.png``.

The package's parts, each importing only those before it: ``input`` (an input's commands),
``watch``, ``guards``, ``record`` (RunSpec, RunStatus, RunRecord), ``progress``, ``engines``
(the LAMMPS engines: they translate the input's commands), ``ase_engine`` (the ASE engine:
it reads the input into a protocol), ``driver`` (LAMMPS command by command), ``ase_md``
(a protocol with ASE's integrators and observers), ``launch`` (the one launcher: in this
process, under mpiexec or in ASE) and this module (the engine chosen, the run directory,
resume, the comparison).
"""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

from ..errors import EgraffError, located
from ..files import write_json
from .ase_engine import AseEngine
from .engines import CallbackEngine, PluginEngine
from .input import logical_commands
from .launch import launch
from .record import DUMP, RunRecord, RunSpec, RunStatus
from .watch import Watch

__all__ = ["ENGINES", "RunRecord", "RunSpec", "RunStatus", "Watch", "choose_engine", "resume",
           "run"]

ENGINES = ("auto", "plugin", "callback", "ase")


def choose_engine(spec: RunSpec):
    """(engine object, reason) for the spec's engine, ranks, calculator, mode and device."""
    from ..deploy.artifact import torch_device
    from ..lammps.plugin import plugin_path

    engine, calculator, np_ = spec.engine, spec.calculator, spec.np
    pair_mode, device = spec.pair_mode, spec.device
    if device not in (None, "cpu"):
        torch_device(device)  # one clear line where this torch has no CUDA
    if pair_mode is not None and engine in ("ase", "callback"):
        raise EgraffError(f"--pair-mode is a mode of the LAMMPS plugin, not of the {engine} "
                          "engine")
    if engine == "ase":
        if np_ > 1:
            raise EgraffError("the ASE engine runs on one process: drop --np")
        return AseEngine(calculator, device or "cpu"), "asked for"
    if engine == "callback" or (engine == "auto" and calculator):
        why = "asked for" if engine == "callback" else "--calculator names an ASE calculator"
        if np_ > 1:
            raise EgraffError("the callback engine runs on one rank: drop --np or use "
                              "--engine plugin")
        return CallbackEngine(calculator, device or "cpu"), why
    if engine == "plugin":
        return PluginEngine(plugin_path(), pair_mode, device), "asked for"
    try:
        return (PluginEngine(plugin_path(), pair_mode, device),
                "the LAMMPS plugin is built for this lammps/torch")
    except EgraffError as exc:
        if np_ > 1 or pair_mode is not None:
            raise
        return (CallbackEngine(calculator, device or "cpu"),
                f"plugin unavailable ({exc}); callback instead")


def _versions() -> dict:
    import torch

    from .. import __version__
    from ..lammps.env import lammps_version

    return {"egraff_lmp": __version__, "lammps": lammps_version(), "torch": torch.__version__}


def reference_of(input_path) -> Path | None:
    """The input's ``variable reference index|string PATH`` (relative to the input)."""
    for _, cmd in logical_commands(input_path):
        w = cmd.split()
        if w[:2] == ["variable", "reference"] and len(w) >= 4 and w[2] in ("index", "string"):
            return (Path(input_path).parent / w[3]).resolve()
    return None


def energy_drift(log, timestep_ps, n_atoms=0, units: str = "metal") -> dict | None:
    """Drift of the total energy over all thermo output of ``log`` (the chunks of a run
    are joined by step): least-squares slope of TotEng against time, in eV/ps and
    meV/atom/ps, and the largest |TotEng − TotEng(0)| (eV). Meaningful for NVE; reported
    whatever the ensemble (``None`` without TotEng). ``units``: the log's unit style."""
    import numpy as np

    from ..io.lammps_log import read_thermo
    from ..units import unit_style

    by_step = {}
    for r in read_thermo(log):
        if "TotEng" in r:
            by_step.update(zip(r["Step"], r["TotEng"]))
    if len(by_step) < 2 or not timestep_ps:
        return None
    steps = np.array(sorted(by_step))
    etot = unit_style(units).to_ev(np.array([by_step[k] for k in steps]))
    t = (steps - steps[0]) * timestep_ps
    if t[-1] <= 0 or not np.all(np.isfinite(etot)):
        return None
    slope = float(np.polyfit(t, etot, 1)[0])
    out = {"ev_per_ps": slope, "max_abs_dev_ev": float(np.abs(etot - etot[0]).max()),
           "span_ps": float(t[-1]), "thermo_points": int(len(t))}
    if n_atoms:
        out["mev_per_atom_per_ps"] = 1000 * slope / n_atoms
    return out


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def run(spec: RunSpec) -> RunRecord:
    """Execute ``spec`` in its run directory (made if needed; one that holds a run is
    refused); returns the record, also written to ``RUNDIR/run.json``. A run stopped by the
    watch or by LAMMPS raises :class:`EgraffError` after its record is written."""
    input_path = Path(spec.input)
    if not input_path.is_file():
        raise located(input_path, "no such LAMMPS input file")
    if spec.engine not in ENGINES:
        raise EgraffError(f"unknown engine '{spec.engine}' (known: {', '.join(ENGINES)})")
    if spec.np < 1:
        raise EgraffError(f"--np must be at least 1, got {spec.np}")
    spec.input = str(input_path.resolve())
    rundir = Path(spec.rundir or Path("runs") / f"{input_path.stem}-"
                  f"{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}").resolve()
    spec.rundir = str(rundir)
    if (rundir / "run.json").exists():
        raise located(rundir, "already holds a run (run.json): give another -o")
    rundir.mkdir(parents=True, exist_ok=True)
    logical_commands(input_path)  # input errors before anything starts
    eng, why = choose_engine(spec)
    record = RunRecord(spec=spec, engine=eng.name, engine_reason=why, versions=_versions(),
                       started_at=_now())
    record.save()  # a killed run stays resumable
    return _execute(record, eng, None)


def resume(rundir, progress=True) -> RunRecord:
    """Continue the run in ``rundir`` from its last restart file (``--resume``); reads the
    run.json of this and of earlier egraff-lmp versions."""
    rundir = Path(rundir).resolve()
    if not (rundir / "run.json").is_file():
        raise located(rundir, "is not a run directory (no run.json): nothing to resume")
    record = RunRecord.load(rundir)
    if not Path(record.spec.input).is_file():
        raise located(record.spec.input, "the run's input file is gone: cannot resume")
    if record.status == "ok":
        raise located(rundir, "holds a finished run: nothing to resume")
    restarts = sorted((int(p.name.split(".")[-1]), p) for p in rundir.glob("restart.*")
                      if p.name.split(".")[-1].isdigit())
    if not restarts:
        raise located(rundir, "holds no restart file (run with --restart-every N to have them)")
    step, restart_file = restarts[-1]
    _truncate_dump(rundir / DUMP, step)
    record.spec.rundir, record.spec.progress = str(rundir), progress
    if record.spec.engine == "auto":  # resume with the engine the run had
        record.spec.engine = record.engine if record.engine in ("callback", "ase") \
            else "plugin"
    eng, why = choose_engine(record.spec)
    record.engine, record.engine_reason = eng.name, why
    record.resumed_from_step, record.resumed_at = step, _now()
    record.result.failed_at_step = record.result.failure = record.error = None
    record.status = "running"
    record.save()
    return _execute(record, eng, (str(restart_file), step))


def _execute(record: RunRecord, eng, resume_from) -> RunRecord:
    try:
        result = launch(record.spec, eng, resume_from)
    except EgraffError as exc:
        record.status, record.error = "error", str(exc)
        record.save()
        raise
    if resume_from is not None:
        result.steps_done += int(resume_from[1])
    record.result = result
    record.energy_drift = energy_drift(record.rundir / "log.lammps", result.timestep_ps,
                                       result.n_atoms or 0, result.units)
    record.finished_at = _now()
    record.status = "failed" if result.failed_at_step is not None else "ok"
    record.save()
    if record.status == "failed":
        raise EgraffError(f"{record.spec.input}: run stopped at step {result.failed_at_step}: "
                          f"{result.failure}; everything written so far is kept in "
                          f"{record.rundir}")
    ref = Path(record.spec.ref) if record.spec.ref else reference_of(record.spec.input)
    if ref is not None:
        record.metrics = _compare(record, ref)
    return record


def _truncate_dump(path: Path, before_step: int) -> None:
    """Keep only the frames of a LAMMPS text dump with step < ``before_step`` (atomic)."""
    from ..files import atomic_path

    if not path.exists():
        return
    with atomic_path(path) as tmp, open(path) as src, open(tmp, "w") as out:
        pending = None
        for line in src:
            if pending is not None:
                if int(line) >= before_step:
                    break
                out.write(pending + line)
                pending = None
            elif line.startswith("ITEM: TIMESTEP"):
                pending = line
            else:
                out.write(line)


def _compare(record: RunRecord, ref: Path):
    from ..compare import compare
    from ..io import read_trajectory
    from ..plot import plot_comparison

    if not record.dump.exists():
        print(f"egraff-lmp: note: no {record.dump}: nothing to compare with {ref}",
              file=sys.stderr)
        return None
    traj = read_trajectory(record.dump, types=record.result.symbols,
                           log=record.rundir / "log.lammps", units=record.result.units)
    out = compare(traj, read_trajectory(ref))
    write_json(record.rundir / "metrics.json", out.to_dict())
    plot_comparison(out, record.rundir / "compare.png", label="simulation")
    return out
