"""Running an :class:`~egraff_lmp.run.ase_engine.AseProtocol` with ASE.

Every ``run N`` is one ASE dynamics (velocity Verlet, Nosé–Hoover chain or Langevin, made
afresh for each run), driven step by step through ``dyn.irun``; the thermo table and the
dumps are observers (``dyn.attach(write, interval=N)``). The dynamics' step counter starts at
the run's first step, so an observer every N steps writes at the multiples of N, as LAMMPS
does; LAMMPS' other outputs are written as it writes them: a thermo row at the first and the
last step of every run, a dump's frame at the first step of a run when that step is one of
its multiples and it has not written that step yet. The watch checks after every
``watch.every`` steps, as in LAMMPS. The dump is LAMMPS' text format and the thermo table
LAMMPS' (``log.lammps``), so that everything that reads a LAMMPS run reads this one.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from ase import units

from .ase_engine import THERMO, AseProtocol, DumpOutput, ThermoOutput, Thermostat, temperature
from .progress import Progress
from .record import RunPart, RunStatus

EV_PER_A3_IN_BAR = 1.602176634e6


def execute(protocol: AseProtocol, calc, rundir, watch, progress: bool = True,
            desc: str = "ase engine") -> RunStatus:
    """Run ``protocol`` with the ASE calculator ``calc``, writing ``RUNDIR/log.lammps`` and
    the protocol's dumps; returns what the run did."""
    atoms = protocol.structure
    status = RunStatus(target_temperature_k=protocol.target_temperature_k,
                       symbols=protocol.symbols, artifact=protocol.artifact,
                       timestep_ps=protocol.timestep_fs / 1000,
                       n_atoms=0 if atoms is None else len(atoms))
    if atoms is not None and calc is not None:
        atoms.calc = calc
    dumps = [_Dump(d, protocol.types) for d in protocol.dumps]
    bar = Progress(desc) if progress and protocol.runs else None
    seconds, step = 0.0, 0
    with open(Path(rundir) / "log.lammps", "w") as log:
        thermo = _Thermo(log, protocol.thermo)
        try:
            for steps in protocol.runs:
                if not status.runs:
                    _warn(protocol, status)
                status.steps_requested += steps
                if bar is not None:
                    bar.add(steps)
                done, dt, failed = _run(protocol, atoms, step, steps, thermo, dumps, watch,
                                        status, bar)
                seconds += dt
                step += done
                if failed:
                    break
        finally:
            if bar is not None:
                bar.close()
            status.finish(seconds)
    return status


def _warn(protocol, status):
    from .guards import timestep_warnings

    status.warnings = timestep_warnings(protocol.structure.get_chemical_symbols(),
                                        protocol.timestep_fs)
    for line in status.warnings:
        print(f"egraff-lmp: warning: {line}", file=sys.stderr)


def dynamics(thermostat: Thermostat, atoms, timestep_fs: float):
    """ASE's integrator for the thermostat (damping times in ps, LAMMPS' metal units)."""
    from ase.md.langevin import Langevin
    from ase.md.nose_hoover_chain import NoseHooverChainNVT
    from ase.md.verlet import VelocityVerlet

    dt = timestep_fs * units.fs
    if thermostat.style == "nve":
        return VelocityVerlet(atoms, dt)
    if thermostat.style == "nvt":
        return NoseHooverChainNVT(atoms, dt, temperature_K=thermostat.temperature_k,
                                  tdamp=thermostat.damp_ps * 1000 * units.fs)
    return Langevin(atoms, dt, temperature_K=thermostat.temperature_k,
                    friction=1.0 / (thermostat.damp_ps * 1000 * units.fs),
                    rng=np.random.default_rng(thermostat.seed))


def _run(protocol, atoms, start, steps, thermo, dumps, watch, status,
         bar) -> tuple[int, float, bool]:
    """One ``run STEPS`` from step ``start``: (steps done, seconds of the steps, stopped)."""
    every = protocol.thermo.every
    dyn = dynamics(protocol.thermostat, atoms, protocol.timestep_fs)
    dyn.nsteps = start
    if every:
        dyn.attach(thermo.row, every, dyn)
    active = [d for d in dumps if d.spec.first_step <= start]
    for d in active:
        dyn.attach(d.write, d.spec.every, dyn)
    thermo.header()
    t0 = time.perf_counter()
    steps_of = dyn.irun(steps)
    next(steps_of)  # at step 0, ASE evaluates the forces and calls the observers
    if start:  # a later run: its first step's outputs, as LAMMPS writes them
        if every:
            thermo.row(dyn)
        for d in active:
            if start % d.spec.every == 0:
                d.write(dyn)
    setup = time.perf_counter() - t0
    done, seconds, failed = 0, 0.0, False
    while done < steps:
        k = min(watch.every, steps - done)
        t0 = time.perf_counter()
        for _ in range(k):
            next(steps_of)
        done += k
        if done == steps and every and dyn.nsteps % every:
            thermo.row(dyn)  # LAMMPS' row at a run's last step
        dt = time.perf_counter() - t0
        seconds += dt
        status.steps_done += k
        if bar is not None:
            bar.update(k, dt)
        fmax = float(np.linalg.norm(atoms.get_forces(), axis=1).max())
        reason = watch.verdict(atoms.get_potential_energy(), temperature(atoms), fmax,
                               status.target_temperature_k)
        if reason:
            status.stop(dyn.nsteps, reason)
            failed = True
            break
    thermo.log.write(f"Loop time of {seconds:.6g} on 1 procs for {done} steps with "
                     f"{len(atoms)} atoms\n")
    thermo.log.flush()
    status.runs.append(RunPart(steps=done, ms_per_step=1000 * seconds / done if done else None,
                               setup_ms=1000 * setup))
    return done, seconds, failed


class _Thermo:
    """The thermo table of ``log.lammps`` (LAMMPS' columns and widths)."""

    def __init__(self, log, spec: ThermoOutput):
        self.log, self.spec = log, spec

    def header(self):
        self.log.write("   " + "   ".join(THERMO[c] for c in self.spec.columns) + "\n")

    def row(self, dyn):
        atoms, step, fmt = dyn.atoms, dyn.nsteps, self.spec.float_format
        ke = atoms.get_kinetic_energy()
        pe = atoms.get_potential_energy()
        values = {"step": step, "temp": temperature(atoms), "pe": pe, "ke": ke,
                  "etotal": pe + ke}
        if "press" in self.spec.columns:
            s = atoms.get_stress(include_ideal_gas=True, voigt=False)
            values["press"] = -np.trace(s) / 3 * EV_PER_A3_IN_BAR
        self.log.write(" ".join((fmt % values[c]).rjust(14) if c != "step"
                                else f"{step:>10d}" for c in self.spec.columns) + "\n")


class _Dump:
    """A LAMMPS text dump (``ITEM:`` blocks), one frame a call, never two of one step."""

    def __init__(self, spec: DumpOutput, types):
        self.spec, self.types = spec, types
        self.last_step = None
        Path(spec.path).unlink(missing_ok=True)

    def write(self, dyn):
        from ase.calculators.lammps import Prism

        atoms, step = dyn.atoms, dyn.nsteps
        if step == self.last_step:
            return
        self.last_step = step
        forces = atoms.get_forces()
        prism = Prism(atoms.cell[:])
        x = prism.vector_to_lammps(atoms.positions, wrap=False)
        f = prism.vector_to_lammps(forces)
        v = prism.vector_to_lammps(atoms.get_velocities()) * 1000.0 / units.fs  # Å/ps
        xhi, yhi, zhi, xy, xz, yz = prism.get_lammps_prism()
        cols = {"x": x[:, 0], "y": x[:, 1], "z": x[:, 2], "fx": f[:, 0], "fy": f[:, 1],
                "fz": f[:, 2], "vx": v[:, 0], "vy": v[:, 1], "vz": v[:, 2]}
        syms = atoms.get_chemical_symbols()
        lines = [f"ITEM: TIMESTEP\n{step}\nITEM: NUMBER OF ATOMS\n{len(atoms)}\n"]
        if abs(xy) + abs(xz) + abs(yz) > 0:
            lo = [min(0, xy, xz, xy + xz), min(0, yz)]
            hi = [max(0, xy, xz, xy + xz), max(0, yz)]
            lines.append("ITEM: BOX BOUNDS xy xz yz pp pp pp\n"
                         f"{lo[0]:.16e} {xhi + hi[0]:.16e} {xy:.16e}\n"
                         f"{lo[1]:.16e} {yhi + hi[1]:.16e} {xz:.16e}\n"
                         f"0 {zhi:.16e} {yz:.16e}\n")
        else:
            lines.append(f"ITEM: BOX BOUNDS pp pp pp\n0 {xhi:.16e}\n0 {yhi:.16e}\n"
                         f"0 {zhi:.16e}\n")
        lines.append("ITEM: ATOMS " + " ".join(self.spec.columns) + "\n")
        fmt = self.spec.float_format
        for i in range(len(atoms)):
            row = []
            for c in self.spec.columns:
                if c == "id":
                    row.append(str(i + 1))
                elif c == "type":
                    row.append(str(self.types[i]))
                elif c == "element":
                    row.append(syms[i])
                else:
                    row.append(fmt % cols[c][i])
            lines.append(" ".join(row) + "\n")
        with open(self.spec.path, "a") as out:
            out.write("".join(lines))
