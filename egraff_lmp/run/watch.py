"""The stability watch of a run, for every engine: its limits and its verdict.

After every ``every`` steps the engine measures the potential energy (eV), the
temperature (K), the largest force (eV/Å) and the atoms lost, and asks :meth:`Watch.verdict`
whether to stop; the target temperature comes from the input (:func:`target_temperature`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Watch:
    every: int = 10  # steps between checks
    max_force: float = 50.0  # eV/Å
    temp_factor: float = 3.0  # × target temperature
    max_temp: float | None = None  # K; overrides the factor when given
    max_devi_f: float | None = None  # eV/Å: a committee's max_devi_f (pair_style egraff A0 A1)

    def verdict(self, pe: float, temp: float, fmax: float, target: float | None,
                lost: int = 0, natoms: int = 0, devi_f: float | None = None) -> str | None:
        """Why the run must stop now, or None: a non-finite energy, lost atoms, a
        temperature above ``max_temp`` (or ``temp_factor`` × ``target``), a force above
        ``max_force``, a committee's last force deviation ``devi_f`` above
        ``max_devi_f``."""
        if not math.isfinite(pe):
            return f"non-finite potential energy ({pe})"
        if lost:
            return f"lost atoms ({lost} of {natoms})"
        limit = self.max_temp
        if limit is None and target:
            limit = self.temp_factor * target
        if limit is not None and not temp <= limit:
            return f"temperature {temp:.4g} K above the limit {limit:.4g} K"
        if not fmax <= self.max_force:
            return f"largest force {fmax:.4g} eV/Å above the limit {self.max_force:g} eV/Å"
        if self.max_devi_f is not None and devi_f is not None and \
                not devi_f <= self.max_devi_f:
            return (f"committee force deviation {devi_f:.4g} eV/Å above the limit "
                    f"{self.max_devi_f:g} eV/Å")
        return None


def target_temperature(words: list[str]) -> float | None:
    """The temperature (K) a command sets out to hold: ``fix ... nvt|npt temp T0 T1``,
    ``fix ... langevin T0 T1 ...``, ``velocity ... create T SEED``; None otherwise."""
    try:
        if words[0] == "fix" and any(w in ("nvt", "npt", "nvt/sllod") for w in words[3:4]):
            k = words.index("temp")
            return float(words[k + 2])
        if words[0] == "fix" and words[3:4] == ["langevin"]:
            return float(words[5])
        if words[0] == "velocity" and "create" in words:
            return float(words[words.index("create") + 1])
    except (ValueError, IndexError):
        return None
    return None
