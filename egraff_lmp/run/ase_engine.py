"""``--engine ase``: the input's essentials run with ASE integrators, no LAMMPS at all.

Understood (units metal): ``variable NAME index|string|equal VALUE`` (``-var`` overrides
index variables, as in LAMMPS), ``${NAME}``, ``units metal``, ``atom_style atomic``,
``boundary``, ``read_data`` (with Masses and optional Velocities), ``replicate``,
``pair_style egraff ARTIFACT``, ``pair_coeff * * ELEMENTS``, ``velocity all create T SEED``
(``mom``/``rot``/``dist`` keywords), ``timestep`` (ps), ``fix ID all nve``,
``fix ID all nvt temp T T DAMP`` (ASE's Nosé–Hoover chain), ``fix ID all langevin T T DAMP
SEED`` (ASE's Langevin; its partner ``fix nve`` is implied), ``thermo N``, ``thermo_style
custom`` with step/temp/pe/ke/etotal/press, ``dump ID all custom N FILE`` with id, type,
element, x, y, z, fx, fy, fz, vx, vy, vz, ``dump_modify`` sort/element/format, and ``run N``.
Commands without physical effect here (``atom_modify``, ``neighbor``, ``neigh_modify``,
``thermo_modify``, ``plugin``) are accepted; anything else is named in one clear error.
It writes the same LAMMPS-format dump and thermo table (``log.lammps``) as LAMMPS would.
The temperature counts 3N − 3 degrees of freedom, as LAMMPS' default ``compute temp``.
"""

from __future__ import annotations

import math
import re
import sys
import time
from pathlib import Path

import numpy as np
from ase import units

from ..errors import EgraffError, located
from .input import logical_commands, run_steps
from .watch import target_temperature

EV_PER_A3_IN_BAR = 1.602176634e6
THERMO = {"step": "Step", "temp": "Temp", "pe": "PotEng", "ke": "KinEng",
          "etotal": "TotEng", "press": "Press"}
NO_EFFECT = {"atom_style", "atom_modify", "neighbor", "neigh_modify", "plugin", "boundary"}
DUMP_COLUMNS = {"id", "type", "element", "x", "y", "z", "fx", "fy", "fz", "vx", "vy", "vz"}


class AseEngine:
    name = "ase"

    def __init__(self, calculator_spec=None, device: str = "cpu"):
        self.calculator_spec = calculator_spec
        self.device = device
        self.symbols = None
        self.artifact = None

    def execute(self, spec, resume_from=None) -> dict:
        """Run ``spec`` with ASE's integrators (no LAMMPS)."""
        return execute_ase(spec.input, spec.rundir, spec.variables, self, spec.watch,
                           progress=spec.progress, restart_every=spec.restart_every,
                           resume=resume_from)


class _Dump:
    def __init__(self, every, path, columns):
        self.every, self.path, self.columns = every, Path(path), columns
        self.elements = None
        self.fmt = "%.8g"
        self.path.unlink(missing_ok=True)

    def write(self, step, atoms, types, forces):
        from ase.calculators.lammps import Prism

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
        lines.append("ITEM: ATOMS " + " ".join(self.columns) + "\n")
        for i in range(len(atoms)):
            row = []
            for c in self.columns:
                if c == "id":
                    row.append(str(i + 1))
                elif c == "type":
                    row.append(str(types[i]))
                elif c == "element":
                    row.append(syms[i])
                else:
                    row.append(self.fmt % cols[c][i])
            lines.append(" ".join(row) + "\n")
        with open(self.path, "a") as out:
            out.write("".join(lines))


def execute_ase(input_path, rundir, variables: dict, engine: AseEngine, watch,
                progress: bool = True, restart_every: int = 0, resume=None) -> dict:
    """Run ``input_path`` with ASE; returns the same status as the LAMMPS driver."""
    if restart_every or resume is not None:
        raise EgraffError("restart files and --resume need LAMMPS: use the plugin or "
                          "callback engine")
    input_path, rundir = Path(input_path).resolve(), Path(rundir).resolve()
    run = _AseRun(input_path, rundir, dict(variables), engine, watch, progress)
    return run.execute()


class _AseRun:
    def __init__(self, input_path, rundir, overrides, engine, watch, progress):
        self.input, self.rundir, self.engine = input_path, rundir, engine
        self.watch, self.progress = watch, progress
        self.vars = {"rundir": str(rundir), **overrides}
        self.overrides = set(overrides)
        self.atoms = self.types = self.calc = None
        self.dt_fs = 1.0
        self.integrator = None  # ("nve",) | ("nvt", T, damp) | ("langevin", T, damp, seed)
        self.thermo_every, self.thermo_cols = 0, ["step", "temp", "pe", "ke", "etotal", "press"]
        self.thermo_fmt = "%.10g"
        self.dumps: dict[str, _Dump] = {}
        self.step = 0
        self.log = open(rundir / "log.lammps", "w")
        self.status = {"steps_requested": 0, "steps_done": 0, "runs": [],
                       "failed_at_step": None, "failure": None, "ms_per_step": None,
                       "target_temperature": None, "watch": None, "symbols": None,
                       "artifact": None}

    def expand(self, text, n):
        def sub(m):
            name = m.group(1)
            if name not in self.vars:
                raise located(self.input, f"line {n}: variable {name} is not defined")
            return str(self.vars[name])

        out = re.sub(r"\$\{(\w+)\}", sub, text)
        if "$" in out:
            raise located(self.input, f"line {n}: only ${{NAME}} variables are supported by "
                                      "the ASE engine")
        return out

    def execute(self) -> dict:
        from dataclasses import asdict

        self.status["watch"] = asdict(self.watch)
        seconds = 0.0
        try:
            for n, raw in logical_commands(self.input):
                words = raw.split()
                if words[0] == "variable":
                    self.variable(words, n)
                    continue
                cmd = self.expand(raw, n)
                steps = run_steps(cmd) if words[0] == "run" else None
                if words[0] == "run":
                    if steps is None:
                        raise located(self.input, f"line {n}: only plain 'run N' is "
                                                  "supported")
                    dt, failed = self.run(steps, n)
                    seconds += dt
                    if failed:
                        break
                else:
                    self.command(cmd.split(), n)
        finally:
            self.log.close()
            if self.status["steps_done"]:
                self.status["ms_per_step"] = 1000 * seconds / self.status["steps_done"]
            self.status["symbols"], self.status["artifact"] = self.engine.symbols, \
                self.engine.artifact
            self.status["timestep_ps"] = self.dt_fs / 1000
            self.status["n_atoms"] = 0 if self.atoms is None else len(self.atoms)
        return self.status

    def variable(self, w, n):
        if len(w) < 4 or w[2] not in ("index", "string", "equal"):
            raise located(self.input, f"line {n}: the ASE engine supports 'variable NAME "
                                      "index|string|equal VALUE' only")
        if w[2] == "index" and w[1] in self.overrides:
            return
        value = self.expand(" ".join(w[3:]), n).strip('"')
        if w[2] == "equal":
            try:
                value = float(value)
            except ValueError:
                raise located(self.input, f"line {n}: equal-style formulas are not "
                                          "supported by the ASE engine") from None
        self.vars[w[1]] = value

    def command(self, w, n):  # noqa: C901 - one branch per LAMMPS command, on purpose
        word = w[0]
        where = f"line {n}"
        if word in NO_EFFECT:
            return
        if word == "units":
            if w[1:] != ["metal"]:
                raise located(self.input, f"{where}: the ASE engine runs units metal only")
        elif word == "read_data":
            import ase.io

            path = (self.input.parent / w[1])
            try:
                self.atoms = ase.io.read(path, format="lammps-data", atom_style="atomic",
                                         units="metal")
            except Exception as exc:
                raise located(path, f"not a readable LAMMPS data file ({exc})") from None
            self.types = self.atoms.get_array("type").copy()
        elif word == "replicate":
            reps = [int(x) for x in w[1:4]]
            self.atoms = self.atoms.repeat(reps)
            self.types = np.tile(self.types, int(np.prod(reps)))
        elif word == "pair_style":
            if w[1] != "egraff":
                raise located(self.input, f"{where}: the ASE engine runs pair_style egraff "
                                          "(or --calculator) only")
            self.engine.artifact = str((self.input.parent / w[2]).resolve()) \
                if not Path(w[2]).is_absolute() else w[2]
        elif word == "pair_coeff":
            self.engine.symbols = w[3:]
            self.atoms.set_chemical_symbols([w[3 + t - 1] for t in self.types])
            self.attach_calculator()
        elif word == "mass":
            pass  # masses follow the elements set by pair_coeff (amu)
        elif word == "velocity":
            self.velocity(w, n)
        elif word == "timestep":
            self.dt_fs = float(w[1]) * 1000.0
        elif word == "fix":
            self.fix(w, n)
        elif word == "thermo":
            self.thermo_every = int(w[1])
        elif word == "thermo_modify":
            if w[1:3] == ["format", "float"] and len(w) == 4:
                self.thermo_fmt = w[3]
            elif w[1:2] != ["format"]:
                raise located(self.input, f"{where}: thermo_modify {' '.join(w[1:])} is "
                                          "not supported by the ASE engine")
        elif word == "thermo_style":
            cols = w[2:]
            bad = [c for c in cols if c not in THERMO]
            if w[1] != "custom" or bad:
                raise located(self.input, f"{where}: the ASE engine's thermo knows "
                                          f"{', '.join(THERMO)} only (not {', '.join(bad)})")
            self.thermo_cols = cols
        elif word == "dump":
            # dump ID group custom N FILE columns...
            cols = w[6:]
            bad = [c for c in cols if c not in DUMP_COLUMNS]
            if len(w) < 7 or w[3] != "custom" or bad:
                raise located(self.input, f"{where}: the ASE engine dumps custom columns "
                                          f"{' '.join(sorted(DUMP_COLUMNS))} only")
            self.dumps[w[1]] = _Dump(int(w[4]), self.input.parent / w[5], cols)
        elif word == "dump_modify":
            self.dump_modify(w, n)
        else:
            raise located(self.input, f"{where}: '{word}' is not supported by the ASE "
                                      "engine (use the plugin or callback engine)")

    def attach_calculator(self):
        from ..calculator import resolve_calculator

        self.calc = resolve_calculator(self.engine.artifact, self.engine.calculator_spec,
                                       self.engine.device)
        self.atoms.calc = self.calc

    def velocity(self, w, n):
        from ase.md.velocitydistribution import (
            MaxwellBoltzmannDistribution,
            Stationary,
            ZeroRotation,
        )

        if w[2] != "create":
            raise located(self.input, f"line {n}: the ASE engine supports 'velocity all "
                                      "create T SEED' only")
        temp, seed = float(w[3]), int(w[4])
        keys = dict(zip(w[5::2], w[6::2]))
        self.status["target_temperature"] = target_temperature(w)
        MaxwellBoltzmannDistribution(self.atoms, temperature_K=temp,
                                     rng=np.random.default_rng(seed))
        if keys.get("mom", "yes") == "yes":
            Stationary(self.atoms)
        if keys.get("rot", "no") == "yes":
            import warnings

            with warnings.catch_warnings():  # LAMMPS zeroes it in periodic cells too
                warnings.simplefilter("ignore")
                ZeroRotation(self.atoms)
        # scale to T exactly with LAMMPS' 3N - 3 degrees of freedom
        t_now = self.temperature()
        if t_now > 0:
            self.atoms.set_velocities(self.atoms.get_velocities() * math.sqrt(temp / t_now))

    def fix(self, w, n):
        style = w[3]
        if style == "nve":
            if self.integrator is None:
                self.integrator = ("nve",)
        elif style == "nvt" and "temp" in w:
            k = w.index("temp")
            self.integrator = ("nvt", float(w[k + 2]), float(w[k + 3]))
            self.status["target_temperature"] = target_temperature(w)
        elif style == "langevin":
            self.integrator = ("langevin", float(w[5]), float(w[6]), int(w[7]))
            self.status["target_temperature"] = target_temperature(w)
        else:
            raise located(self.input, f"line {n}: fix {style} is not supported by the ASE "
                                      "engine (nve, nvt temp, langevin)")

    def dump_modify(self, w, n):
        dump = self.dumps.get(w[1])
        if dump is None:
            raise located(self.input, f"line {n}: no dump {w[1]}")
        k = 2
        while k < len(w):
            key = w[k]
            if key == "sort":
                k += 2
            elif key == "element":
                k += 1 + int(self.types.max())
            elif key == "format" and w[k + 1] == "float":
                dump.fmt = w[k + 2]
                k += 3
            else:
                raise located(self.input, f"line {n}: dump_modify {key} is not supported by "
                                          "the ASE engine")

    # -- integration ----------------------------------------------------------------------
    def temperature(self):
        dof = 3 * len(self.atoms) - 3
        return 2 * self.atoms.get_kinetic_energy() / (dof * units.kB)

    def dynamics(self):
        from ase.md.langevin import Langevin
        from ase.md.nose_hoover_chain import NoseHooverChainNVT
        from ase.md.verlet import VelocityVerlet

        dt = self.dt_fs * units.fs
        kind = self.integrator or ("nve",)
        if kind[0] == "nve":
            return VelocityVerlet(self.atoms, dt)
        if kind[0] == "nvt":
            return NoseHooverChainNVT(self.atoms, dt, temperature_K=kind[1],
                                      tdamp=kind[2] * 1000 * units.fs)
        return Langevin(self.atoms, dt, temperature_K=kind[1],
                        friction=1.0 / (kind[2] * 1000 * units.fs),
                        rng=np.random.default_rng(kind[3]))

    def thermo_row(self):
        ke = self.atoms.get_kinetic_energy()
        pe = self.atoms.get_potential_energy()
        values = {"step": self.step, "temp": self.temperature(), "pe": pe, "ke": ke,
                  "etotal": pe + ke}
        if "press" in self.thermo_cols:
            s = self.atoms.get_stress(include_ideal_gas=True, voigt=False)
            values["press"] = -np.trace(s) / 3 * EV_PER_A3_IN_BAR
        return " ".join((self.thermo_fmt % values[c]).rjust(14) if c != "step"
                        else f"{self.step:>10d}" for c in self.thermo_cols)

    def output(self, force=False):
        if self.thermo_every and (force or self.step % self.thermo_every == 0):
            self.log.write(self.thermo_row() + "\n")
        forces = None
        for dump in self.dumps.values():
            if self.step % dump.every == 0:
                forces = self.atoms.get_forces() if forces is None else forces
                dump.write(self.step, self.atoms, self.types, forces)

    def run(self, steps, n):
        if self.atoms is None or self.calc is None:
            raise located(self.input, f"line {n}: run before read_data and pair_coeff")
        dyn = self.dynamics()
        if "warnings" not in self.status:
            from .guards import timestep_warnings

            self.status["warnings"] = timestep_warnings(self.atoms.get_chemical_symbols(),
                                                        self.dt_fs)
            for line in self.status["warnings"]:
                print(f"egraff-lmp: warning: {line}", file=sys.stderr)
        self.status["steps_requested"] += steps
        self.log.write("   " + "   ".join(THERMO[c] for c in self.thermo_cols) + "\n")
        self.output(force=True)
        done, seconds, failed = 0, 0.0, False
        while done < steps:
            k = min(self.watch.every, steps - done)
            t0 = time.perf_counter()
            for _ in range(k):
                dyn.run(1)
                self.step += 1
                self.output(force=(done + 1 == steps))
                done += 1
            seconds += time.perf_counter() - t0
            self.status["steps_done"] += k
            reason = self.check()
            if reason:
                self.status["failed_at_step"], self.status["failure"] = self.step, reason
                failed = True
                break
        self.log.write(f"Loop time of {seconds:.6g} on 1 procs for {done} steps with "
                       f"{len(self.atoms)} atoms\n")
        self.log.flush()
        self.status["runs"].append({"steps": done,
                                    "ms_per_step": 1000 * seconds / done if done else None})
        return seconds, failed

    def check(self):
        fmax = float(np.linalg.norm(self.atoms.get_forces(), axis=1).max())
        return self.watch.verdict(self.atoms.get_potential_energy(), self.temperature(), fmax,
                                  self.status["target_temperature"])
