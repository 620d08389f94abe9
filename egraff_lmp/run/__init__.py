"""``egraff-lmp run``: a LAMMPS input, one of the engines, one run directory.

The run directory holds ``log.lammps``, whatever dumps the input writes (by convention
``${rundir}/dump.lammpstrj``: the variable ``rundir`` is always defined), ``run.json``
(engine used and why, steps requested and done, ``failed_at_step`` and the reason, ms/step,
versions) and, when a reference trajectory is known (``--ref`` or the input's
``variable reference index PATH``), ``metrics.json`` (the ``compare`` output) and
``compare.png``.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from ..errors import EgraffError, located
from ..files import write_json
from .driver import Watch, execute

__all__ = ["Watch", "run", "resume", "ENGINES", "choose_engine"]
from .ase_engine import AseEngine, execute_ase
from .engines import CallbackEngine, PluginEngine
from .input import logical_commands

ENGINES = ("auto", "plugin", "callback", "ase")


def choose_engine(engine: str, calculator: str | None, np_: int, pair_mode: str | None = None,
                  device: str | None = None):
    """(engine object, reason) for ``--engine``; ``pair_mode`` forces the plugin's mode,
    ``device`` (cpu, cuda, cuda:N) where the model runs."""
    from ..deploy.artifact import torch_device
    from ..lammps.plugin import plugin_path

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


def energy_drift(log, timestep_ps, n_atoms=0) -> dict | None:
    """Drift of the total energy over all thermo output of ``log`` (the chunks of a run
    are joined by step): least-squares slope of TotEng against time, in eV/ps and
    meV/atom/ps, and the largest |TotEng − TotEng(0)| (eV). Meaningful for NVE; reported
    whatever the ensemble (``None`` without TotEng)."""
    import numpy as np

    from ..io.lammps_log import read_thermo

    by_step = {}
    for r in read_thermo(log):
        if "TotEng" in r:
            by_step.update(zip(r["Step"], r["TotEng"]))
    if len(by_step) < 2 or not timestep_ps:
        return None
    steps = np.array(sorted(by_step))
    etot = np.array([by_step[k] for k in steps])
    t = (steps - steps[0]) * timestep_ps
    if t[-1] <= 0 or not np.all(np.isfinite(etot)):
        return None
    slope = float(np.polyfit(t, etot, 1)[0])
    out = {"ev_per_ps": slope, "max_abs_dev_ev": float(np.abs(etot - etot[0]).max()),
           "span_ps": float(t[-1]), "thermo_points": int(len(t))}
    if n_atoms:
        out["mev_per_atom_per_ps"] = 1000 * slope / n_atoms
    return out


def run(input_path, rundir=None, variables=None, engine="auto", np_=1, ref=None,
        calculator=None, watch: Watch | None = None, progress=True,
        restart_every: int = 0, pair_mode: str | None = None,
        device: str | None = None) -> dict:
    input_path = Path(input_path)
    if not input_path.is_file():
        raise located(input_path, "no such LAMMPS input file")
    if engine not in ENGINES:
        raise EgraffError(f"unknown engine '{engine}' (known: {', '.join(ENGINES)})")
    if np_ < 1:
        raise EgraffError(f"--np must be at least 1, got {np_}")
    watch = watch or Watch()
    variables = dict(variables or {})
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    rundir = Path(rundir or Path("runs") / f"{input_path.stem}-{stamp}").resolve()
    if (rundir / "run.json").exists():
        raise located(rundir, "already holds a run (run.json): give another -o")
    rundir.mkdir(parents=True, exist_ok=True)
    logical_commands(input_path)  # input errors before anything starts
    eng, why = choose_engine(engine, calculator, np_, pair_mode, device)
    record = {"input": str(input_path.resolve()), "rundir": str(rundir), "engine": eng.name,
              "engine_reason": why, "np": np_, "variables": variables,
              "pair_mode_requested": pair_mode, "device": device or "cpu",
              "calculator": calculator, "restart_every": restart_every,
              "watch": asdict(watch), "ref": str(ref) if ref else None,
              "versions": _versions(),
              "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(
                  timespec="seconds"), "status": "running"}
    write_json(rundir / "run.json", record)  # a killed run stays resumable
    return _execute(record, eng, watch, progress, None)


def resume(rundir, progress=True) -> dict:
    """Continue the run in ``rundir`` from its last restart file (``--resume``)."""
    rundir = Path(rundir).resolve()
    rec_file = rundir / "run.json"
    if not rec_file.is_file():
        raise located(rundir, "is not a run directory (no run.json): nothing to resume")
    try:
        record = json.loads(rec_file.read_text())
        if not Path(record["input"]).is_file():
            raise located(record["input"], "the run's input file is gone: cannot resume")
    except (json.JSONDecodeError, KeyError, TypeError):
        raise located(rec_file, "is not a run.json written by egraff-lmp run") from None
    if record.get("status") == "ok":
        raise located(rundir, "holds a finished run: nothing to resume")
    restarts = sorted((int(p.name.split(".")[-1]), p) for p in rundir.glob("restart.*")
                      if p.name.split(".")[-1].isdigit())
    if not restarts:
        raise located(rundir, "holds no restart file (run with --restart-every N to have them)")
    step, restart_file = restarts[-1]
    _truncate_dump(rundir / "dump.lammpstrj", step)
    watch = Watch(**record.get("watch", {}))
    engine = record.get("engine") if record.get("engine") in ("callback", "ase") else "plugin"
    eng, why = choose_engine(engine, record.get("calculator"), record.get("np", 1),
                             record.get("pair_mode_requested"), record.get("device"))
    record.update(rundir=str(rundir), engine=eng.name, engine_reason=why,
                  resumed_from_step=step,
                  resumed_at=datetime.datetime.now(datetime.timezone.utc).isoformat(
                      timespec="seconds"))
    for key in ("failed_at_step", "failure", "error"):
        record.pop(key, None)
    record["status"] = "running"
    write_json(rec_file, record)
    return _execute(record, eng, watch, progress, (str(restart_file), step))


def _execute(record, eng, watch, progress, resume_from) -> dict:
    input_path, rundir = Path(record["input"]), Path(record["rundir"])
    args = (input_path, rundir, record["variables"], eng, watch)
    try:
        if eng.name == "ase":
            status = execute_ase(*args, progress=progress,
                                 restart_every=record.get("restart_every", 0),
                                 resume=resume_from)
        elif record["np"] > 1:
            status = _run_mpi(*args, record["np"], progress, record.get("restart_every", 0),
                              resume_from)
        else:
            status = execute(*args, progress=progress,
                             restart_every=record.get("restart_every", 0), resume=resume_from)
    except EgraffError as exc:
        record.update(status="error", error=str(exc))
        write_json(rundir / "run.json", record)
        raise
    if resume_from is not None:
        status["steps_done"] += int(resume_from[1])
    record.update(status)
    record.pop("rank", None)
    record["energy_drift"] = energy_drift(rundir / "log.lammps", record.get("timestep_ps"),
                                          record.get("n_atoms", 0))
    record["finished_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds")
    record["status"] = "failed" if record["failed_at_step"] is not None else "ok"
    write_json(rundir / "run.json", record)
    if record["status"] == "failed":
        raise EgraffError(f"{input_path}: run stopped at step {record['failed_at_step']}: "
                          f"{record['failure']}; everything written so far is kept in "
                          f"{rundir}")
    ref = Path(record["ref"]) if record.get("ref") else reference_of(input_path)
    if ref is not None:
        record["metrics"] = _compare(rundir, record, ref)
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


def _run_mpi(input_path, rundir, variables, eng, watch, np_, progress, restart_every=0,
             resume_from=None) -> dict:
    from ..lammps.env import library_env, mpiexec

    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "spec.json"
        status_file = Path(tmp) / "status.json"
        spec.write_text(json.dumps({"input": str(input_path.resolve()), "rundir": str(rundir),
                                    "variables": variables, "plugin": eng.plugin_path,
                                    "pair_mode": eng.pair_mode, "device": eng.device,
                                    "watch": asdict(watch), "progress": progress,
                                    "restart_every": restart_every, "resume": resume_from,
                                    "status_file": str(status_file)}))
        cmd = [mpiexec(), "-n", str(np_), sys.executable, "-m", "egraff_lmp.run.driver",
               str(spec)]
        r = subprocess.run(cmd, env=library_env(), stdout=subprocess.PIPE,
                           stderr=None if progress else subprocess.PIPE, text=True)
        if not status_file.exists():
            raise EgraffError(f"{np_} MPI ranks ended without a result (exit {r.returncode})")
        status = json.loads(status_file.read_text())
    if "error" in status:
        raise EgraffError(status["error"])
    return status


def _compare(rundir: Path, record: dict, ref: Path) -> dict | None:
    from ..compare import compare
    from ..io import read_trajectory
    from ..plot import plot_comparison

    dump = rundir / "dump.lammpstrj"
    if not dump.exists():
        print(f"egraff-lmp: note: no {dump}: nothing to compare with {ref}", file=sys.stderr)
        return None
    traj = read_trajectory(dump, types=record.get("symbols"), log=rundir / "log.lammps")
    out = compare(traj, read_trajectory(ref))
    write_json(rundir / "metrics.json", out)
    plot_comparison(out, rundir / "compare.png", label="simulation")
    return out
