"""The one launcher: a :class:`~egraff_lmp.run.record.RunSpec` and the engine chosen for it
→ a :class:`~egraff_lmp.run.record.RunStatus`.

- an engine hosted by LAMMPS on one rank: the LAMMPS driver in this process;
- on ``spec.np`` ranks: :mod:`egraff_lmp.run.rank` under mpich's mpiexec, one process per
  rank (``python -m egraff_lmp.run.rank JOB.json``), each running the driver; rank 0 writes
  its status (versioned JSON) for the launcher to read;
- the ASE engine: its protocol (the input read once) run by :mod:`egraff_lmp.run.ase_md`.

Engines only translate the input; nothing here knows how they do it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import EgraffError
from .record import RunSpec, RunStatus


def launch(spec: RunSpec, engine, resume_from=None) -> RunStatus:
    """Run ``spec`` with ``engine``; ``resume_from`` = (restart file, its step) continues a
    run from a restart file (LAMMPS engines)."""
    if engine.host == "ase":
        status = _in_ase(spec, engine, resume_from)
    elif spec.np > 1:
        status = _under_mpiexec(spec, engine, resume_from)
    else:
        status = in_process(spec, engine, resume_from)
    status.compiled = compiled_of(status.artifact)
    return status


def compiled_of(artifact) -> dict | None:
    """What a compiled package that ran was compiled for and how long compiling took (its
    metadata's ``compiled``); None for a TorchScript artifact or a calculator."""
    from ..deploy import compiled

    if artifact is None or not compiled.is_package(artifact):
        return None
    try:
        return dict(compiled.read_metadata(artifact)[compiled.KEY_COMPILED])
    except EgraffError:
        return None


def in_process(spec: RunSpec, engine, resume_from, tty: bool | None = None) -> RunStatus:
    from .driver import execute

    return execute(spec.input, spec.rundir, spec.variables, engine, spec.watch,
                   progress=spec.progress, restart_every=spec.restart_every,
                   resume=resume_from, tty=tty)


def _in_ase(spec: RunSpec, engine, resume_from) -> RunStatus:
    from . import ase_md

    if spec.restart_every or resume_from is not None:
        raise EgraffError("restart files and --resume need LAMMPS: use the plugin or "
                          "callback engine")
    protocol = engine.protocol(spec.input, spec.rundir, spec.variables)
    calc = engine.calculator(protocol) if protocol.symbols is not None else None
    return ase_md.execute(protocol, calc, spec.rundir, spec.watch, progress=spec.progress,
                          desc=f"{engine.name} engine")


def _under_mpiexec(spec: RunSpec, engine, resume_from) -> RunStatus:
    """The plugin engine on ``spec.np`` ranks (the only engine that runs on several)."""
    import subprocess
    import tempfile

    from ..lammps.env import library_env, mpiexec
    from .progress import is_terminal

    with tempfile.TemporaryDirectory() as tmp:
        job = Path(tmp) / "job.json"
        status_file = Path(tmp) / "status.json"
        # rank 0's stderr is mpiexec's pipe: whether a terminal is behind it is said here
        job.write_text(json.dumps({"spec": spec.to_dict(), "plugin": engine.plugin_path,
                                   "resume": resume_from, "status_file": str(status_file),
                                   "tty": is_terminal(sys.stderr)}))
        cmd = [mpiexec(), "-n", str(spec.np), sys.executable, "-m", "egraff_lmp.run.rank",
               str(job)]
        r = subprocess.run(cmd, env=library_env(), stdout=subprocess.PIPE,
                           stderr=None if spec.progress else subprocess.PIPE, text=True)
        if not status_file.exists():
            raise EgraffError(f"{spec.np} MPI ranks ended without a result "
                              f"(exit {r.returncode})")
        out = json.loads(status_file.read_text())
    if "error" in out:
        raise EgraffError(out["error"])
    return RunStatus.from_dict(out, "the status of MPI rank 0")
