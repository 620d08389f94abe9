"""The engines behind ``egraff-lmp run``: how an input's forces are made, nothing more.

An engine translates the input; the launcher (:mod:`egraff_lmp.run.launch`) runs it.

- ``plugin``: LAMMPS loads egraff-lmp's ``pair_style egraff`` plugin; the input's
  ``pair_style egraff ARTIFACT`` runs as written, on any number of MPI ranks.
- ``callback``: LAMMPS integrates; ``pair_style egraff ARTIFACT`` becomes ``pair_style zero``
  and ``fix external pf/callback`` asks an ASE calculator for energy, forces and virial every
  step (``DeployedCalculator(ARTIFACT)``, or any calculator from ``--calculator
  module:factory``). One rank.
- ``ase`` (:mod:`egraff_lmp.run.ase_engine`): no LAMMPS; the input is read once into a
  protocol that ASE's integrators run.

The LAMMPS engines (:class:`LammpsEngine`) transform the input's commands (``transform``),
add what goes before them (``start``) and prepare what a ``run`` needs (``before_run``); the
LAMMPS driver executes the result. Every engine reports the elements of the LAMMPS types
(``symbols``) and the artifact it found in the input.
"""

from __future__ import annotations

import os

import numpy as np

from ..deploy.schema import EXTRACT_MODE, MODE_NAMES, mode_name
from ..errors import EgraffError


class Engine:
    """What every engine has: its name, what runs the translated input (``host``: "lammps",
    the LAMMPS driver, or "ase") and what it learnt from the input."""

    name = "?"
    host = "lammps"

    def __init__(self):
        self.symbols: list[str] | None = None  # element of each LAMMPS type (pair_coeff)
        self.artifact: str | None = None
        self.head: str | None = None  # pair_style egraff ... head NAME (multi-head models)


class LammpsEngine(Engine):
    """An engine whose input LAMMPS executes, command by command (the driver)."""

    def start(self, lmp):
        """Commands before the input's first one."""

    hybrid = False  # pair_style egraff inside hybrid or hybrid/overlay

    def transform(self, lmp, cmd: str) -> list[str]:
        words = cmd.split()
        style = egraff_style(words)
        if style is not None:
            # absolute (commands run in the input's directory), as LAMMPS opens it
            self.artifact = os.path.abspath(lmp.expand(style[0]))
            self.hybrid = words[1] != "egraff"
            head = head_of(style)
            self.head = None if head is None else lmp.expand(head)
        if words[:3] == ["pair_coeff", "*", "*"]:
            if not self.hybrid:
                self.symbols = [lmp.expand(w) for w in words[3:]]
            elif words[3:4] == ["egraff"]:
                self.symbols = [lmp.expand(w) for w in words[4:]]
        return [cmd]

    def before_run(self, lmp):
        pass

    def mode(self, lmp) -> str | None:
        """The pair style's mode at the last run (the plugin's; None for others)."""
        return None

    def physical_warnings(self, lmp) -> list[str]:
        """Masses against pair_coeff's elements and the timestep's bound (guards)."""
        from .guards import mass_warnings, timestep_warnings

        if not self.symbols:
            return []
        from ..units import METAL, STYLES

        u = STYLES.get(lmp.extract_global("units"), METAL)
        ntypes = lmp.extract_setting("ntypes")
        mass = lmp.numpy.extract_atom("mass")
        masses = ([u.to_amu(float(mass[t])) for t in range(1, ntypes + 1)]
                  if mass is not None else [])
        return (mass_warnings(self.symbols, masses)
                + timestep_warnings(self.symbols, u.to_fs(lmp.extract_global("dt"))))


def egraff_style(words: list[str]) -> list[str] | None:
    """The arguments of ``pair_style egraff ARTIFACT ...``, also as a sub-style of
    ``pair_style hybrid``/``hybrid/overlay``/``hybrid/scaled`` (up to the next sub-style
    name is not known here: the artifact is the first word after ``egraff``)."""
    if words[:1] != ["pair_style"] or len(words) < 3:
        return None
    if words[1] == "egraff":
        return words[2:]
    if words[1].startswith("hybrid") and "egraff" in words[2:]:
        k = words.index("egraff", 2)
        return words[k + 1:] if k + 1 < len(words) else None
    return None


def head_of(style: list[str]) -> str | None:
    """The ``head NAME`` keyword of ``pair_style egraff``'s arguments ``style`` (None:
    absent)."""
    if "head" not in style[1:]:
        return None
    k = style.index("head", 1)
    if k + 1 >= len(style):
        raise EgraffError("pair_style egraff: head needs a NAME (head NAME)")
    return style[k + 1]


#: the plugin's modes (the schema's, as the C++ enum has them)
PAIR_MODES = MODE_NAMES


class PluginEngine(LammpsEngine):
    """``pair_mode`` (auto, images, ghosts, staged) and ``device`` (cpu, cuda, cuda:N) set
    the plugin's ``mode`` and ``device`` keywords on the input's ``pair_style egraff``
    (see deploy/plugin/pair_egraff.h)."""

    name = "plugin"

    def __init__(self, plugin_path, pair_mode: str | None = None, device: str | None = None):
        super().__init__()
        self.plugin_path = str(plugin_path)
        if pair_mode is not None and pair_mode not in PAIR_MODES:
            raise EgraffError(f"unknown pair mode '{pair_mode}' (known: {', '.join(PAIR_MODES)})")
        self.pair_mode = pair_mode
        self.device = device

    def start(self, lmp):
        lmp.command(f"plugin load {self.plugin_path}")

    def transform(self, lmp, cmd: str) -> list[str]:
        out = super().transform(lmp, cmd)
        words = cmd.split()
        keywords = {k: v for k, v in (("mode", self.pair_mode), ("device", self.device)) if v}
        if not keywords or egraff_style(words) is None:
            return out
        if self.hybrid:
            raise EgraffError(f"--pair-mode/--device with pair_style {words[1]}: write 'mode' "
                              "and 'device' on the input's pair_style line instead")
        rest = words[3:]
        for key, value in keywords.items():
            if key in rest:
                k = rest.index(key)
                del rest[k:k + 2]
            rest += [key, value]
        return [" ".join(words[:3] + rest)]

    def mode(self, lmp) -> str | None:
        """The mode the plugin chose at the last run (None: no pair_style egraff)."""
        try:
            value = lmp.extract_pair(EXTRACT_MODE)
        except Exception:  # older LAMMPS without extract_pair, or no pair style
            return None
        return mode_name(value) if value is not None else None


class CallbackEngine(LammpsEngine):
    name = "callback"

    def __init__(self, calculator_spec: str | None = None, device: str = "cpu"):
        super().__init__()
        self.calculator_spec = calculator_spec
        self.device = device
        self.calc = None
        self._installed = False

    def transform(self, lmp, cmd):
        super().transform(lmp, cmd)
        words = cmd.split()
        if self.hybrid and egraff_style(words) is not None:
            raise EgraffError("the callback engine cannot run pair_style egraff inside "
                              f"{words[1]}: it replaces egraff by fix external, which hybrid "
                              "cannot hold; use --engine plugin")
        if words[:2] == ["pair_style", "egraff"]:
            return ["pair_style zero 1.0"]
        if words[:3] == ["pair_coeff", "*", "*"] and self.artifact is not None:
            return ["pair_coeff * *"]
        return [cmd]

    def before_run(self, lmp):
        if self._installed:
            return
        if lmp.extract_setting("world_size") > 1:
            raise EgraffError("the callback engine runs on one MPI rank; use --engine plugin "
                              "for --np > 1")
        units = lmp.extract_global("units")
        if units != "metal":
            raise EgraffError(f"units {units}: the callback engine runs units metal only "
                              "(pair_style egraff converts any physical unit style: use "
                              "--engine plugin)")
        if self.symbols is None:
            raise EgraffError("the input has no 'pair_coeff * * ELEMENTS' line: the callback "
                              "engine needs the element of each LAMMPS type")
        if not (self.calculator_spec or self.artifact):
            raise EgraffError("no 'pair_style egraff ARTIFACT' in the input and no "
                              "--calculator: nothing gives the forces")
        from ..calculator import resolve_calculator

        self.calc = resolve_calculator(self.artifact, self.calculator_spec, self.device,
                                       self.head)
        lmp.commands_list(["fix egraff_cb all external pf/callback 1 1",
                           "fix_modify egraff_cb energy yes virial yes"])
        lmp.set_fix_external_callback("egraff_cb", self._callback, lmp)
        self._installed = True

    def _callback(self, lmp, step, nlocal, tag, x, f):
        from ase import Atoms

        boxlo, boxhi, xy, yz, xz, periodicity, _ = lmp.extract_box()
        cell = np.array([[boxhi[0] - boxlo[0], 0, 0], [xy, boxhi[1] - boxlo[1], 0],
                         [xz, yz, boxhi[2] - boxlo[2]]])
        types = lmp.numpy.extract_atom("type")[:nlocal]
        atoms = Atoms(symbols=[self.symbols[t - 1] for t in types], positions=x[:nlocal],
                      cell=cell, pbc=[bool(p) for p in periodicity])
        atoms.calc = self.calc
        f[:nlocal] = atoms.get_forces()
        energy = atoms.get_potential_energy()
        lmp.fix_external_set_energy_global("egraff_cb", float(energy))
        if all(atoms.pbc):
            s = atoms.get_stress(voigt=True) * -atoms.get_volume()  # virial W = -σV (eV)
            # LAMMPS order: xx yy zz xy xz yz; ASE Voigt: xx yy zz yz xz xy
            lmp.fix_external_set_virial_global("egraff_cb", [s[0], s[1], s[2], s[5], s[4],
                                                            s[3]])
