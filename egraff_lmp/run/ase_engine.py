"""``--engine ase``: the input's essentials, read once into a protocol that ASE runs.

:class:`AseEngine` translates the input into an :class:`AseProtocol` (the structure, the
timestep, the thermostat, the thermo and dump outputs with their intervals, the runs);
:mod:`egraff_lmp.run.ase_md` runs it with ASE's integrators and observers. No LAMMPS at all.

Understood (units metal): ``variable NAME index|string|equal VALUE`` (``-var`` overrides
index variables, as in LAMMPS), ``${NAME}``, ``units metal``, ``atom_style atomic``,
``boundary``, ``read_data`` (with Masses and optional Velocities), ``replicate``,
``pair_style egraff ARTIFACT``, ``pair_coeff * * ELEMENTS``, ``velocity all create T SEED``
(``mom``/``rot``/``dist`` keywords), ``timestep`` (ps), ``fix ID all nve``,
``fix ID all nvt temp T T DAMP`` (ASE's Nosé–Hoover chain), ``fix ID all langevin T T DAMP
SEED`` (ASE's Langevin; its partner ``fix nve`` is implied), ``thermo N``, ``thermo_style
custom`` with step/temp/pe/ke/etotal/press, ``dump ID all custom N FILE`` with id, type,
element, x, y, z, fx, fy, fz, vx, vy, vz, ``dump_modify`` sort/element/format, and ``run N``
(several: after the first, only further runs and new dumps). Commands without physical
effect here (``atom_modify``, ``neighbor``, ``neigh_modify``, ``thermo_modify``, ``plugin``)
are accepted; anything else is named in one clear error.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import units

from ..errors import located
from .engines import Engine, head_of
from .input import logical_commands, run_steps
from .watch import target_temperature

THERMO = {"step": "Step", "temp": "Temp", "pe": "PotEng", "ke": "KinEng",
          "etotal": "TotEng", "press": "Press"}
NO_EFFECT = {"atom_style", "atom_modify", "neighbor", "neigh_modify", "plugin", "boundary"}
DUMP_COLUMNS = {"id", "type", "element", "x", "y", "z", "fx", "fy", "fz", "vx", "vy", "vz"}
#: what an input may still say after its first run (the protocol is set by then)
AFTER_A_RUN = NO_EFFECT | {"run", "variable", "dump", "dump_modify", "mass"}


@dataclass
class Thermostat:
    """``nve`` (velocity Verlet), ``nvt`` (Nosé–Hoover chain) or ``langevin``, holding
    ``temperature_k`` with damping time ``damp_ps`` (and the Langevin noise's ``seed``)."""

    style: str = "nve"
    temperature_k: float | None = None
    damp_ps: float | None = None
    seed: int | None = None


@dataclass
class ThermoOutput:
    """The thermo table in ``log.lammps``: a row every ``every`` steps (0: none)."""

    every: int = 0
    columns: list[str] = field(default_factory=lambda: ["step", "temp", "pe", "ke",
                                                        "etotal", "press"])
    float_format: str = "%.10g"


@dataclass
class DumpOutput:
    """A LAMMPS text dump of ``columns`` every ``every`` steps, from the run that starts at
    ``first_step`` (the dump was defined before it)."""

    id: str
    every: int
    path: Path
    columns: list[str]
    float_format: str = "%.8g"
    first_step: int = 0


@dataclass
class AseProtocol:
    """What the ASE engine runs: the structure (ASE atoms with elements, masses and
    velocities; ``types`` the LAMMPS type of each atom), the timestep (fs), the thermostat,
    the outputs, the steps of each ``run``, the temperature the watch holds the run to (K),
    the element of each LAMMPS type and the artifact."""

    structure: object  # ase.Atoms
    types: np.ndarray
    timestep_fs: float = 1.0
    thermostat: Thermostat = field(default_factory=Thermostat)
    thermo: ThermoOutput = field(default_factory=ThermoOutput)
    dumps: list[DumpOutput] = field(default_factory=list)
    runs: list[int] = field(default_factory=list)
    target_temperature_k: float | None = None
    symbols: list[str] | None = None
    artifact: str | None = None
    head: str | None = None  # pair_style egraff ARTIFACT head NAME (multi-head models)


class AseEngine(Engine):
    """Reads the input into an :class:`AseProtocol` (:meth:`protocol`); the forces come from
    ``DeployedCalculator(ARTIFACT)`` or ``--calculator module:factory``."""

    name = "ase"
    host = "ase"

    def __init__(self, calculator_spec=None, device: str = "cpu"):
        super().__init__()
        self.calculator_spec = calculator_spec
        self.device = device

    def protocol(self, input_path, rundir, variables: dict) -> AseProtocol:
        proto = _Reader(Path(input_path).resolve(), Path(rundir).resolve(),
                        dict(variables)).read()
        self.symbols, self.artifact, self.head = proto.symbols, proto.artifact, proto.head
        return proto

    def calculator(self, protocol: AseProtocol):
        from ..calculator import resolve_calculator

        return resolve_calculator(protocol.artifact, self.calculator_spec, self.device,
                                  protocol.head)


def temperature(atoms) -> float:
    """K, with LAMMPS' default 3N − 3 degrees of freedom."""
    dof = 3 * len(atoms) - 3
    return 2 * atoms.get_kinetic_energy() / (dof * units.kB)


class _Reader:
    """The input, command by command, into a protocol (nothing runs here)."""

    def __init__(self, input_path, rundir, overrides):
        self.input = input_path
        self.vars = {"rundir": str(rundir), **overrides}
        self.overrides = set(overrides)
        self.atoms = self.types = None
        self.symbols = self.artifact = self.head = None
        self.paired = False  # pair_coeff seen: the atoms have their elements
        self.timestep_fs = 1.0
        self.thermostat: Thermostat | None = None
        self.thermo = ThermoOutput()
        self.dumps: dict[str, DumpOutput] = {}
        self.runs: list[int] = []
        self.target = None

    def read(self) -> AseProtocol:
        runs = self.runs
        for n, raw in logical_commands(self.input):
            words = raw.split()
            if words[0] == "variable":
                self.variable(words, n)
                continue
            cmd = self.expand(raw, n)
            w = cmd.split()
            if runs and w[0] not in AFTER_A_RUN:
                raise located(self.input, f"line {n}: '{w[0]}' after a run: the ASE engine "
                                          "runs one protocol, set before the first run (use "
                                          "the plugin or callback engine)")
            if w[0] == "run":
                steps = run_steps(cmd)
                if steps is None:
                    raise located(self.input, f"line {n}: only plain 'run N' is supported")
                if self.atoms is None or not self.paired:
                    raise located(self.input, f"line {n}: run before read_data and "
                                              "pair_coeff")
                runs.append(steps)
            else:
                self.command(w, n)
        return AseProtocol(
            structure=self.atoms, types=self.types, timestep_fs=self.timestep_fs,
            thermostat=self.thermostat or Thermostat(), thermo=self.thermo,
            dumps=list(self.dumps.values()), runs=runs, target_temperature_k=self.target,
            symbols=self.symbols, artifact=self.artifact, head=self.head)

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
            self.need_atoms(word, n)
            reps = [int(x) for x in w[1:4]]
            self.atoms = self.atoms.repeat(reps)
            self.types = np.tile(self.types, int(np.prod(reps)))
        elif word == "pair_style":
            if w[1] != "egraff":
                raise located(self.input, f"{where}: the ASE engine runs pair_style egraff "
                                          "(or --calculator) only")
            self.artifact = str((self.input.parent / w[2]).resolve()) \
                if not Path(w[2]).is_absolute() else w[2]
            self.head = head_of(w[2:])
        elif word == "pair_coeff":
            self.need_atoms(word, n)
            self.symbols = w[3:]
            self.atoms.set_chemical_symbols([w[3 + t - 1] for t in self.types])
            self.paired = True
        elif word == "mass":
            pass  # masses follow the elements set by pair_coeff (amu)
        elif word == "velocity":
            self.velocity(w, n)
        elif word == "timestep":
            self.timestep_fs = float(w[1]) * 1000.0
        elif word == "fix":
            self.fix(w, n)
        elif word == "thermo":
            self.thermo.every = int(w[1])
        elif word == "thermo_modify":
            if w[1:3] == ["format", "float"] and len(w) == 4:
                self.thermo.float_format = w[3]
            elif w[1:2] != ["format"]:
                raise located(self.input, f"{where}: thermo_modify {' '.join(w[1:])} is "
                                          "not supported by the ASE engine")
        elif word == "thermo_style":
            cols = w[2:]
            bad = [c for c in cols if c not in THERMO]
            if w[1] != "custom" or bad:
                raise located(self.input, f"{where}: the ASE engine's thermo knows "
                                          f"{', '.join(THERMO)} only (not {', '.join(bad)})")
            self.thermo.columns = cols
        elif word == "dump":
            # dump ID group custom N FILE columns...
            cols = w[6:]
            bad = [c for c in cols if c not in DUMP_COLUMNS]
            if len(w) < 7 or w[3] != "custom" or bad:
                raise located(self.input, f"{where}: the ASE engine dumps custom columns "
                                          f"{' '.join(sorted(DUMP_COLUMNS))} only")
            self.dumps[w[1]] = DumpOutput(w[1], int(w[4]), self.input.parent / w[5], cols,
                                          first_step=sum(self.runs))
        elif word == "dump_modify":
            self.dump_modify(w, n)
        else:
            raise located(self.input, f"{where}: '{word}' is not supported by the ASE "
                                      "engine (use the plugin or callback engine)")

    def need_atoms(self, word, n):
        if self.atoms is None:
            raise located(self.input, f"line {n}: {word} before read_data")

    def velocity(self, w, n):
        from ase.md.velocitydistribution import (
            MaxwellBoltzmannDistribution,
            Stationary,
            ZeroRotation,
        )

        if w[2] != "create":
            raise located(self.input, f"line {n}: the ASE engine supports 'velocity all "
                                      "create T SEED' only")
        self.need_atoms("velocity", n)
        temp, seed = float(w[3]), int(w[4])
        keys = dict(zip(w[5::2], w[6::2]))
        self.target = target_temperature(w)
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
        t_now = temperature(self.atoms)
        if t_now > 0:
            self.atoms.set_velocities(self.atoms.get_velocities() * math.sqrt(temp / t_now))

    def fix(self, w, n):
        style = w[3]
        if style == "nve":
            if self.thermostat is None:
                self.thermostat = Thermostat("nve")
        elif style == "nvt" and "temp" in w:
            k = w.index("temp")
            self.thermostat = Thermostat("nvt", float(w[k + 2]), float(w[k + 3]))
            self.target = target_temperature(w)
        elif style == "langevin":
            self.thermostat = Thermostat("langevin", float(w[5]), float(w[6]), int(w[7]))
            self.target = target_temperature(w)
        else:
            raise located(self.input, f"line {n}: fix {style} is not supported by the ASE "
                                      "engine (nve, nvt temp, langevin)")

    def dump_modify(self, w, n):
        dump = self.dumps.get(w[1])
        if dump is None:
            raise located(self.input, f"line {n}: no dump {w[1]}")
        if dump.first_step < sum(self.runs):
            raise located(self.input, f"line {n}: dump_modify of dump {w[1]} after it has "
                                      "written: the ASE engine sets a dump before it runs")
        k = 2
        while k < len(w):
            key = w[k]
            if key == "sort":
                k += 2
            elif key == "element":
                self.need_atoms("dump_modify element", n)
                k += 1 + int(self.types.max())
            elif key == "format" and w[k + 1] == "float":
                dump.float_format = w[k + 2]
                k += 3
            else:
                raise located(self.input, f"line {n}: dump_modify {key} is not supported by "
                                          "the ASE engine")
