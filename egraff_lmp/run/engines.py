"""The engines behind ``egraff-lmp run``: they differ only in how forces reach LAMMPS.

- ``plugin``: LAMMPS loads egraff-lmp's ``pair_style egraff`` plugin; the input's
  ``pair_style egraff ARTIFACT`` runs as written, on any number of MPI ranks.
- ``callback``: LAMMPS integrates; ``pair_style egraff ARTIFACT`` becomes ``pair_style zero``
  and ``fix external pf/callback`` asks an ASE calculator for energy, forces and virial every
  step (``DeployedCalculator(ARTIFACT)``, or any calculator from ``--calculator
  module:factory``). One rank.

Each engine transforms input commands (``transform``) and prepares what a ``run`` needs
(``before_run``).
"""

from __future__ import annotations

import importlib

import numpy as np

from ..errors import EgraffError


class Engine:
    name = "?"

    def __init__(self):
        self.symbols: list[str] | None = None  # element of each LAMMPS type (pair_coeff)
        self.artifact: str | None = None

    def start(self, lmp):
        """Commands before the input's first one."""

    def transform(self, lmp, cmd: str) -> list[str]:
        words = cmd.split()
        if words[:2] == ["pair_style", "egraff"] and len(words) >= 3:
            self.artifact = lmp.expand(words[2])
        if words[:3] == ["pair_coeff", "*", "*"]:
            self.symbols = [lmp.expand(w) for w in words[3:]]
        return [cmd]

    def before_run(self, lmp):
        pass


PAIR_MODES = ("auto", "images", "ghosts", "staged")


class PluginEngine(Engine):
    """``pair_mode`` (auto, images, ghosts, staged) forces the plugin's mode on every
    ``pair_style egraff`` of the input (``mode`` keyword; see deploy/plugin/pair_egraff.h)."""

    name = "plugin"

    def __init__(self, plugin_path, pair_mode: str | None = None):
        super().__init__()
        self.plugin_path = str(plugin_path)
        if pair_mode is not None and pair_mode not in PAIR_MODES:
            raise EgraffError(f"unknown pair mode '{pair_mode}' (known: {', '.join(PAIR_MODES)})")
        self.pair_mode = pair_mode

    def start(self, lmp):
        lmp.command(f"plugin load {self.plugin_path}")

    def transform(self, lmp, cmd: str) -> list[str]:
        out = super().transform(lmp, cmd)
        words = cmd.split()
        if self.pair_mode and words[:2] == ["pair_style", "egraff"] and len(words) >= 3:
            rest = words[3:]
            if "mode" in rest:
                k = rest.index("mode")
                del rest[k:k + 2]
            return [" ".join(words[:3] + rest + ["mode", self.pair_mode])]
        return out

    def mode(self, lmp) -> str | None:
        """The mode the plugin chose at the last run (None: no pair_style egraff)."""
        try:
            value = lmp.extract_pair("egraff_mode")
        except Exception:  # older LAMMPS without extract_pair, or no pair style
            return None
        return PAIR_MODES[int(value)] if value is not None else None


def calculator_from_factory(spec: str):
    """``module:factory`` → the ASE calculator ``factory()`` returns."""
    if ":" not in spec:
        raise EgraffError(f"--calculator {spec}: expected module:factory")
    mod, func = spec.split(":", 1)
    try:
        factory = getattr(importlib.import_module(mod), func)
    except (ImportError, AttributeError) as exc:
        raise EgraffError(f"--calculator {spec}: {exc}") from None
    return factory()


class CallbackEngine(Engine):
    name = "callback"

    def __init__(self, calculator_spec: str | None = None):
        super().__init__()
        self.calculator_spec = calculator_spec
        self.calc = None
        self._installed = False

    def transform(self, lmp, cmd):
        super().transform(lmp, cmd)
        words = cmd.split()
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
        if self.symbols is None:
            raise EgraffError("the input has no 'pair_coeff * * ELEMENTS' line: the callback "
                              "engine needs the element of each LAMMPS type")
        if self.calculator_spec:
            self.calc = calculator_from_factory(self.calculator_spec)
        elif self.artifact:
            from ..calculator import DeployedCalculator

            self.calc = DeployedCalculator(self.artifact)
        else:
            raise EgraffError("no 'pair_style egraff ARTIFACT' in the input and no "
                              "--calculator: nothing gives the forces")
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
