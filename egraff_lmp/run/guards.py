"""Physical checks of a LAMMPS set-up that runs but is probably not what was meant.

- masses: the mass of each LAMMPS type (amu) against the standard atomic weight of the
  element ``pair_coeff`` gives it (a swapped type order runs silently otherwise);
- timestep: above 1 fs × sqrt(m_lightest / 1 amu) (1 fs with hydrogen, ~4 fs for GeTe)
  the fastest vibrations are integrated with too few steps per period.

Each returns warning lines (empty when all is well); ``egraff-lmp run`` prints them once and
records them in run.json, and the LAMMPS plugin writes the same into LAMMPS' log.
"""

from __future__ import annotations

import math

#: relative difference (|m - m_element| / m_element) above which a mass is flagged
MASS_TOLERANCE = 0.01


def mass_warnings(symbols, masses) -> list[str]:
    """``symbols[t-1]`` is the element of LAMMPS type t, ``masses[t-1]`` its mass (amu)."""
    from ase.data import atomic_masses, atomic_numbers

    out = []
    for t, (sym, m) in enumerate(zip(symbols, masses), start=1):
        if sym not in atomic_numbers or m is None or not m > 0:
            continue
        ref = float(atomic_masses[atomic_numbers[sym]])
        if abs(m - ref) > MASS_TOLERANCE * ref:
            out.append(f"type {t} has mass {m:.4g} amu but pair_coeff makes it {sym} "
                       f"({ref:.4g} amu): is the type order of the data file and pair_coeff "
                       "the same?")
    return out


def timestep_bound_fs(symbols) -> tuple[float, str] | None:
    """(1 fs × sqrt(m/1 amu) of the lightest element, that element), None if unknown."""
    from ase.data import atomic_masses, atomic_numbers

    known = [(float(atomic_masses[atomic_numbers[s]]), s) for s in set(symbols)
             if s in atomic_numbers]
    if not known:
        return None
    m, sym = min(known)
    return math.sqrt(m), sym


def timestep_warnings(symbols, dt_fs: float) -> list[str]:
    bound = timestep_bound_fs(symbols)
    if bound is None or not dt_fs > bound[0]:
        return []
    return [f"timestep {dt_fs:.4g} fs is above {bound[0]:.3g} fs = 1 fs x sqrt(m/amu) of the "
            f"lightest element, {bound[1]}: its vibrations get too few steps per period"]
