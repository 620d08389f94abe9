"""LAMMPS unit styles and the model's units (eV, Å, fs, amu; LAMMPS ``units metal``).

egraff-lmp's models speak eV and Å. A LAMMPS input may use any physical unit style; the
plugin converts with LAMMPS' own constants (``force->angstrom``, ``force->boltz``,
``force->femtosecond``) and so does everything here that reads what such a run writes:

- a length of 1 Å is :attr:`UnitStyle.angstrom` distance units of the style;
- an energy of 1 eV is ``boltz / boltz(metal)`` energy units (Boltzmann's constant in the
  style's energy per K over LAMMPS' metal value, 8.617343e-5 eV/K): temperatures agree;
- a time of 1 fs is :attr:`UnitStyle.femtosecond` time units;
- a mass of 1 amu is :attr:`UnitStyle.amu` mass units (CODATA; LAMMPS has no constant).

``lj`` has no physical units and is refused. The table is LAMMPS' own values
(``tests/test_units.py`` checks it against the ``lammps`` module).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import EgraffError

#: LAMMPS' Boltzmann constant in units metal, eV/K
BOLTZ_METAL = 8.617343e-5
_AMU_KG = 1.66053906660e-27


@dataclass(frozen=True)
class UnitStyle:
    """One LAMMPS unit style: how many of its units make 1 Å, 1 fs, 1 amu; its boltz."""

    name: str
    angstrom: float  #: distance units per Å
    boltz: float  #: energy units per K
    femtosecond: float  #: time units per fs
    amu: float  #: mass units per amu

    @property
    def ev(self) -> float:
        """Energy units per eV."""
        return self.boltz / BOLTZ_METAL

    @property
    def ev_per_angstrom(self) -> float:
        """Force units per eV/Å."""
        return self.ev / self.angstrom

    def to_angstrom(self, length):
        return length / self.angstrom

    def to_ev(self, energy):
        return energy / self.ev

    def to_ev_per_angstrom(self, force):
        return force / self.ev_per_angstrom

    def to_fs(self, time):
        return time / self.femtosecond

    def to_amu(self, mass):
        return mass / self.amu


STYLES = {s.name: s for s in (
    UnitStyle("metal", 1.0, BOLTZ_METAL, 1.0e-3, 1.0),
    UnitStyle("real", 1.0, 0.0019872067, 1.0, 1.0),
    UnitStyle("si", 1.0e-10, 1.3806504e-23, 1.0e-15, _AMU_KG),
    UnitStyle("cgs", 1.0e-8, 1.3806504e-16, 1.0e-15, _AMU_KG * 1e3),
    UnitStyle("electron", 1.88972612, 3.16681534e-6, 1.0, 1.0),
    UnitStyle("micro", 1.0e-4, 1.3806504e-8, 1.0e-9, _AMU_KG * 1e15),
    UnitStyle("nano", 0.1, 0.013806504, 1.0e-6, _AMU_KG * 1e21),
)}
METAL = STYLES["metal"]


def unit_style(name: str | None) -> UnitStyle:
    """The style called ``name`` (None: metal); one error line for lj or an unknown name."""
    if name is None:
        return METAL
    if name == "lj":
        raise EgraffError("units lj has no physical units, and the models speak eV and Å: "
                          f"use units metal, real or another physical style ({', '.join(STYLES)})")
    if name not in STYLES:
        raise EgraffError(f"unknown LAMMPS unit style '{name}' (known: {', '.join(STYLES)})")
    return STYLES[name]
