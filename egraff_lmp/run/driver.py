"""Executing a LAMMPS input command by command, with a stability watch and progress.

Every plain ``run N`` is split into chunks of ``Watch.every`` steps
(``run k start S stop E pre no post no`` after the first, LAMMPS' own way of continuing a
run, so thermostats and ramps behave as in one run). After each chunk the watch checks, on
global quantities every rank agrees on: a non-finite potential energy, lost atoms, the
temperature above ``temp_factor`` × the target (from ``fix nvt/npt/langevin`` or
``velocity create``) or above ``max_temp``, the largest force above ``max_force`` and, with a
committee (``pair_style egraff A0 A1 ... devi_every N``), its last force deviation above
``max_devi_f``. A
failure stops the run there (within ``every`` steps), closes LAMMPS so that every dump and
the log keep what they hold, and is reported with its step and reason.

The driver knows LAMMPS, not the engines: the engine given transforms the commands, the
launcher (:mod:`egraff_lmp.run.launch`) calls :func:`execute` here or on every rank under
mpiexec.
"""

from __future__ import annotations

import os
import re
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from ..errors import EgraffError, located
from .input import logical_commands, run_steps
from .progress import Progress
from .record import RunPart, RunStatus
from .watch import Watch, target_temperature

LMP_STYLE_GLOBAL = LMP_TYPE_SCALAR = 0


def lammps_message(exc: Exception) -> str:
    """LAMMPS' own error line, without the source location."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return re.sub(r"\s*\(src/[^)]*\)\s*$", "", text).replace("ERROR: ", "")


@contextmanager
def _cwd(path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


#: commands that build or change the initial state, which a restart file already holds
SKIP_ON_RESUME = {"velocity", "replicate", "displace_atoms", "set", "delete_atoms"}


def _resume_commands(commands, input_path, restart_file):
    """The input's commands for a resume from ``restart_file``: read_restart instead of
    read_data, no re-creation of the initial state, dumps appended."""
    out, seen_data = [], False
    for n, cmd in commands:
        word = cmd.split()[0]
        if word in ("create_box", "create_atoms", "read_dump", "reset_timestep"):
            raise located(input_path, f"line {n}: '{word}' inputs cannot be resumed "
                                      "(resume needs an input that starts from read_data)")
        if word == "read_data" and not seen_data:
            seen_data = True
            out.append((n, f"read_restart {restart_file}"))
        elif word in SKIP_ON_RESUME:
            continue
        elif word == "dump":
            out.append((n, cmd))
            out.append((n, f"dump_modify {cmd.split()[1]} append yes"))
        else:
            out.append((n, cmd))
    if not seen_data:
        raise located(input_path, "has no read_data: it cannot be resumed from a restart file")
    return out


def execute(input_path, rundir, variables: dict, engine, watch: Watch,
            progress: bool = True, restart_every: int = 0, resume=None,
            tty: bool | None = None) -> RunStatus:
    """Run ``input_path`` in LAMMPS in this process (one rank of several under mpiexec)
    with ``engine`` (a :class:`~egraff_lmp.run.engines.LammpsEngine`); returns what the run
    did.

    ``restart_every`` > 0 writes ``RUNDIR/restart.<step>`` every that many steps;
    ``resume`` = (restart file, its step) continues a run from there: runs that had ended
    before that step are skipped, the one it falls in runs its remaining steps. ``tty``:
    whether the progress goes to a terminal (default: whether stderr is one)."""
    from ..lammps.env import start_lammps

    input_path, rundir = Path(input_path).resolve(), Path(rundir).resolve()
    commands = logical_commands(input_path)
    resume_step = None
    if resume is not None:
        commands = _resume_commands(commands, input_path, resume[0])
        resume_step = int(resume[1])
    log = ["-log", str(rundir / "log.lammps")] + (["append"] if resume else [])
    args = ["-nocite", "-screen", "none", "-log", "none", "-var", "rundir", str(rundir)]
    for k, v in variables.items():
        args += ["-var", k, str(v)]
    status = RunStatus()
    lmp = start_lammps(args)
    lmp.command("log " + " ".join(f'"{w}"' if " " in w else w for w in log[1:]))
    rank = lmp.extract_setting("world_rank")
    bar = None
    seconds = 0.0
    planned = 0  # the step each run starts at (a resume: as planned from the input)
    restart_set = warned = False
    try:
        with _cwd(input_path.parent):
            engine.start(lmp)
            for n, cmd in commands:
                steps = run_steps(lmp.expand(cmd)) if cmd.split()[0] == "run" else None
                if steps is None:
                    if cmd.split()[0] == "run":
                        raise located(input_path, f"line {n}: only plain 'run N' is "
                                                  f"supported, not '{cmd}'")
                    _command(lmp, engine, cmd, n, input_path, status)
                    continue
                engine.before_run(lmp)
                if not warned:
                    status.warnings = _warn(engine.physical_warnings(lmp), rank)
                    warned = True
                if resume_step is None:  # LAMMPS' own step: reset_timestep moves it
                    planned = int(lmp.extract_global("ntimestep"))
                start, planned = planned, planned + steps
                if resume_step is not None:
                    if planned <= resume_step:
                        continue  # this run had ended before the restart
                    steps = planned - max(start, resume_step)
                if restart_every and not restart_set:
                    lmp.command(f"restart {restart_every} {rundir}/restart.*")
                    restart_set = True
                status.steps_requested += steps
                if progress and rank == 0:
                    if bar is None:
                        bar = Progress(f"{engine.name} engine", tty=tty)
                    bar.add(steps)
                done_before = status.steps_done
                dt, setup, failed = _run(lmp, steps, watch, status, bar, start, planned)
                seconds += dt
                k = status.steps_done - done_before
                status.runs.append(RunPart(steps=k, ms_per_step=1000 * dt / k if k else None,
                                           setup_ms=1000 * setup))
                if failed:
                    break
    finally:
        if bar is not None:
            bar.close()
        status.symbols, status.artifact = engine.symbols, engine.artifact
        if status.runs:
            status.pair_mode = engine.mode(lmp)
        units = _units(lmp)
        status.units = units.name
        status.timestep_ps = units.to_fs(lmp.extract_global("dt")) / 1000
        status.n_atoms = int(lmp.get_natoms())
        status.finish(seconds)
        lmp.close()  # flushes and closes dumps and the log: a failed run keeps its data
    return status


def _warn(lines: list[str], rank: int) -> list[str]:
    if rank == 0:
        for line in lines:
            print(f"egraff-lmp: warning: {line}", file=sys.stderr)
    return lines


def _command(lmp, engine, cmd, n, input_path, status):
    words = lmp.expand(cmd).split() if "$" in cmd else cmd.split()
    target = target_temperature(words)
    if target is not None:
        status.target_temperature_k = target
    for c in engine.transform(lmp, cmd):
        try:
            lmp.command(c)
        except EgraffError:
            raise
        except Exception as exc:  # LAMMPS raises a plain Exception with its message
            raise located(input_path, f"line {n}: LAMMPS error: {lammps_message(exc)} "
                                      f"(in: {cmd})") from None


def _install_watch(lmp):
    if not lmp.has_id("compute", "egraff_fmax"):
        lmp.commands_list(["variable egraff_fn atom sqrt(fx*fx+fy*fy+fz*fz)",
                           "compute egraff_fmax all reduce max v_egraff_fn"])


def _units(lmp):
    """The run's unit style (metal for lj, which the engines refuse before a run)."""
    from ..units import METAL, STYLES

    return STYLES.get(lmp.extract_global("units"), METAL)


def _check(lmp, watch, status, natoms0) -> str | None:
    # thermo's own computes: they exist whatever thermo_style the input chose; the watch
    # speaks eV and eV/Å
    u = _units(lmp)
    pe = u.to_ev(lmp.extract_compute("thermo_pe", LMP_STYLE_GLOBAL, LMP_TYPE_SCALAR))
    temp = lmp.extract_compute("thermo_temp", LMP_STYLE_GLOBAL, LMP_TYPE_SCALAR)
    fmax = u.to_ev_per_angstrom(lmp.extract_compute("egraff_fmax", LMP_STYLE_GLOBAL,
                                                    LMP_TYPE_SCALAR))
    devi = None
    if watch.max_devi_f is not None:
        devi = _committee_deviation(lmp)
        if devi is None:
            raise EgraffError("--max-devi-f needs a committee: pair_style egraff A0 A1 ... "
                              "devi_every N")
        devi = u.to_ev_per_angstrom(devi)
    return watch.verdict(pe, temp, fmax, status.target_temperature_k,
                         lost=natoms0 - lmp.get_natoms(), natoms=natoms0, devi_f=devi)


def _committee_deviation(lmp) -> float | None:
    """The committee's last max_devi_f (the style's force unit; None: no committee)."""
    from ..deploy.schema import EXTRACT_DEVI

    try:
        return lmp.extract_pair(EXTRACT_DEVI)
    except Exception:  # no pair style, or a LAMMPS without extract_pair
        return None


def _stop(lmp, status: RunStatus, reason: str) -> bool:
    status.stop(lmp.get_thermo("step"), reason)
    return True


def _lammps(lmp, command: str, status) -> bool:
    """Run one LAMMPS command; False, with the failure recorded, if LAMMPS raised."""
    try:
        lmp.command(command)
        return True
    except Exception as exc:  # LAMMPS raises a plain Exception with its message
        _stop(lmp, status, f"LAMMPS error: {lammps_message(exc)}")
        return False


def _run(lmp, steps, watch, status, bar, start, stop) -> tuple[float, float, bool]:
    """One ``run STEPS``: LAMMPS' setup (``run 0 ... pre yes``: neighbour lists and the
    forces of the start, one model evaluation) timed apart from the steps, which go in
    chunks of ``watch.every`` (``pre no``: no second setup), each followed by the watch's
    check (``run 0``: one check after the setup). Returns (seconds of the steps, seconds of
    the setup, stopped)."""
    natoms0 = lmp.get_natoms()
    _install_watch(lmp)
    bounds = f"start {int(start)} stop {int(stop)}"
    t0 = time.perf_counter()
    ok = _lammps(lmp, f"run 0 {bounds} pre yes post no", status)
    setup = time.perf_counter() - t0
    if not ok:
        return 0.0, setup, True
    done, seconds = 0, 0.0
    while True:
        if done or steps == 0:
            reason = _check(lmp, watch, status, natoms0)
            if reason:
                return seconds, setup, _stop(lmp, status, reason)
        if done >= steps:
            return seconds, setup, False
        k = min(watch.every, steps - done)
        t0 = time.perf_counter()
        before = int(lmp.extract_global("ntimestep"))
        if not _lammps(lmp, f"run {k} {bounds} pre no post no", status):
            return seconds, setup, True
        dt = time.perf_counter() - t0
        moved = int(lmp.extract_global("ntimestep")) - before
        seconds += dt
        done += moved
        status.steps_done += moved
        if bar is not None:
            bar.update(moved, dt)
        if moved < k:  # LAMMPS ended the run itself: fix halt, or a timer timeout
            return seconds, setup, _stop(lmp, status, "halted by LAMMPS after "
                                         f"{moved} of {k} steps (fix halt or timer timeout; "
                                         "its message is in log.lammps)")
